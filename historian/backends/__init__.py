"""Historian backends: SQLite and InfluxDB behind one interface (:mod:`.base`)."""
