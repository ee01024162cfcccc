"""Modbus TCP / RTU: device profiles, codec, poller, confirmed writes and a site simulator."""
