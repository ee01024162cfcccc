"""The OPC UA server in the application: the address space of the site, methods for relay control
and recharges, and ``scada opcua`` (certificates)."""
