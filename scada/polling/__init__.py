"""Meter polling: the Modbus poller as a component, following the asset registry."""
