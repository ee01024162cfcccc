"""Wire protocols: Modbus (poller, codec, simulator) and OPC UA. No business rules here."""
