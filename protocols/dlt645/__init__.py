"""DL/T 645-2007, the Chinese electricity meter protocol: frame codec, device profiles (data
identifiers as data), the connection of a link (a TCP transparent gateway or a serial port), the
poller's driver, and a simulator that speaks it."""
