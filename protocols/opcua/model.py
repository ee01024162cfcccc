"""The plain data the address space is built from: the site's hierarchy and each owner's points.

The runtime (``scada.opcua.component``) fills these from the asset registry and the tag database; this
package never reads either. Ids are the registry's ids; browse names are the registry's names
(rooms ``R101``, meters by id) and PascalCase point names (``energy_total`` → ``EnergyTotal``).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Literal

from tags import DataType

__all__ = [
    "BuildingSpec",
    "LinkSpec",
    "SeriesKind",
    "FloorSpec",
    "MeterSpec",
    "PointSpec",
    "RoomSpec",
    "SiteSpec",
    "browse_name",
]

MeterKind = Literal["electricity", "water"]

_ACRONYMS = {"ok": "Ok", "id": "Id"}


@functools.cache
def browse_name(point: str) -> str:
    """``energy_total`` → ``EnergyTotal``, ``comm_ok`` → ``CommOk``, ``power_factor`` → ``PowerFactor``."""
    parts = [p for p in point.split("_") if p]
    if not parts:
        raise ValueError(f"invalid point name {point!r}")
    return "".join(_ACRONYMS.get(p, p[:1].upper() + p[1:]) for p in parts)


class SeriesKind(str, enum.Enum):
    """What a historized variable's history holds (it decides Delta, Minimum and Maximum)."""

    INCREMENTS = "increments"  # consumption per stored interval (registers): Delta adds them up
    INTERVALS = "intervals"  # an average per stored interval, with its minimum and maximum (analogs)
    SAMPLES = "samples"  # logged samples (raw logging): Delta is last minus first


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One variable: fed by the tag ``tag`` (its NodeId is ``ns=<ns>;s=<tag>``)."""

    tag: str
    point: str  # snake_case point name, the last part of the tag name
    data_type: DataType
    unit: str = ""
    description: str = ""
    derived: bool = False  # computed by the server (uncertain until fed), not read from a device
    history: SeriesKind | None = None  # historized: HistoryRead serves this kind of series

    @property
    def browse_name(self) -> str:
        return browse_name(self.point)


@dataclass(frozen=True, slots=True)
class MeterSpec:
    id: str
    kind: MeterKind
    building_id: str
    room_id: str | None  # None: a common-area meter, under its building
    description: str = ""
    points: tuple[PointSpec, ...] = ()
    switchable: bool = False  # has a relay or valve: gets the SetRelay method


@dataclass(frozen=True, slots=True)
class RoomSpec:
    id: str
    floor_id: str
    name: str
    description: str = ""
    points: tuple[PointSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A link (gateway or bus) of the poller: ``Site/Links/<name>``, the source of its alarms."""

    name: str
    description: str = ""
    points: tuple[PointSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class FloorSpec:
    id: str
    building_id: str
    name: str
    level: int = 0


@dataclass(frozen=True, slots=True)
class BuildingSpec:
    id: str
    name: str


@dataclass(frozen=True)
class SiteSpec:
    """The whole site. Dicts keyed by id; iteration order is the browse order."""

    name: str
    buildings: dict[str, BuildingSpec] = field(default_factory=dict)
    floors: dict[str, FloorSpec] = field(default_factory=dict)
    rooms: dict[str, RoomSpec] = field(default_factory=dict)
    meters: dict[str, MeterSpec] = field(default_factory=dict)
    links: dict[str, LinkSpec] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first dangling reference."""
        for f in self.floors.values():
            if f.building_id not in self.buildings:
                raise ValueError(f"floor {f.id!r}: unknown building {f.building_id!r}")
        for r in self.rooms.values():
            if r.floor_id not in self.floors:
                raise ValueError(f"room {r.id!r}: unknown floor {r.floor_id!r}")
        for m in self.meters.values():
            if m.room_id is not None and m.room_id not in self.rooms:
                raise ValueError(f"meter {m.id!r}: unknown room {m.room_id!r}")
            if m.room_id is None and m.building_id not in self.buildings:
                raise ValueError(f"meter {m.id!r}: unknown building {m.building_id!r}")
