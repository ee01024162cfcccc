"""Interval history in the application: the historian component, queries by meter, room, floor or
building, the ``[historian]`` section, and ``scada history``."""
