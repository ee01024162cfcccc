"""The points we know by name: their data type, unit and description.

Used to declare the members of the meter and room ObjectTypes, and as defaults for a tag whose
metadata leaves the unit or description empty. A meter's actual points are the tags its producer
registered; points not listed here are published too, with their tag's own metadata.
"""

from __future__ import annotations

from typing import NamedTuple

from tags import DataType

__all__ = [
    "ELECTRICITY_POINTS",
    "KnownPoint",
    "LINK_POINTS",
    "METER_POINTS",
    "ROOM_POINTS",
    "ROOM_REQUIRED",
    "WATER_POINTS",
    "known_point",
]


class KnownPoint(NamedTuple):
    data_type: DataType
    unit: str
    description: str


_F, _B, _I, _S = DataType.FLOAT, DataType.BOOL, DataType.INT, DataType.STRING

ELECTRICITY_POINTS: dict[str, KnownPoint] = {
    "energy_total": KnownPoint(_F, "kWh", "Active energy, total register"),
    "energy_sharp": KnownPoint(_F, "kWh", "Active energy, sharp (critical peak) tariff register"),
    "energy_peak": KnownPoint(_F, "kWh", "Active energy, peak tariff register"),
    "energy_flat": KnownPoint(_F, "kWh", "Active energy, flat (shoulder) tariff register"),
    "energy_valley": KnownPoint(_F, "kWh", "Active energy, valley (off-peak) tariff register"),
    "power": KnownPoint(_F, "kW", "Active power"),
    "voltage": KnownPoint(_F, "V", "Voltage"),
    "current": KnownPoint(_F, "A", "Current"),
    "power_factor": KnownPoint(_F, "", "Power factor"),
    "relay_closed": KnownPoint(_B, "", "Relay closed: supply on"),
}

WATER_POINTS: dict[str, KnownPoint] = {
    "volume_total": KnownPoint(_F, "m3", "Volume, total register"),
    "flow": KnownPoint(_F, "m3/h", "Flow rate"),
    "valve_open": KnownPoint(_B, "", "Valve open: supply on"),
}

# every meter, whatever its kind (published by the poller, the command path, the alarm engine)
METER_POINTS: dict[str, KnownPoint] = {
    "comm_ok": KnownPoint(_B, "", "The meter answers its polls"),
    "relay_fault": KnownPoint(_B, "", "The last relay or valve command was not followed"),
    "review_hold": KnownPoint(_B, "", "Billing is held for a register review"),
    "active_alarms": KnownPoint(_I, "", "Number of active alarms on the meter"),
}

ROOM_POINTS: dict[str, KnownPoint] = {
    "balance": KnownPoint(_F, "", "Account balance in currency units (for display; the ledger is authoritative)"),
    "supply_state": KnownPoint(_S, "", "Supply state: on, cutting, off or restoring"),
    "alarm_level": KnownPoint(_I, "", "Low-balance alarm level: 0 none, 1 low, 2 very low, 3 exhausted"),
    "account_state": KnownPoint(_S, "", "Account state: none, open or closed"),
    "active_alarms": KnownPoint(_I, "", "Number of active alarms in the room"),
    "alarm_priority": KnownPoint(_I, "", "Highest priority of the room's active alarms, 0 none"),
}

LINK_POINTS: dict[str, KnownPoint] = {
    "comm_ok": KnownPoint(_B, "", "The link (gateway, bus) is connected"),
}

# the room points every room object carries, fed or not
ROOM_REQUIRED = ("balance", "supply_state", "alarm_level", "account_state")

_METER_ANY = {**ELECTRICITY_POINTS, **WATER_POINTS, **METER_POINTS}


def known_point(owner: str, point: str) -> KnownPoint | None:
    """``owner`` is ``"meter"``, ``"room"`` or ``"link"``."""
    table = ROOM_POINTS if owner == "room" else LINK_POINTS if owner == "link" else _METER_ANY
    return table.get(point)
