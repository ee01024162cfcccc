"""Meter topology: the meter tree, manual readings, virtual meters, losses and apportionment."""
