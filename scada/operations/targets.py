"""What a job acts on: its ``targets`` resolved to rooms or meters.

``targets`` is one of ``{"rooms": [...]}``, ``{"meters": [...]}``, or a selection by place and
state: ``{"floor": ID}``, ``{"building": ID}``, ``{"state": "off"}``, ``{"alarm_level": 2}``,
``{"account": "prepared"}``, combined as needed (``{"floor": "B1-F3", "state": "arrears"}``:
every room in arrears on that floor). States are the room states of the HMI's room grid
(``offline``, ``off``, ``alarm``, ``low``, ``no_account``, ``ok``, ``unknown``, worked out
from the same tags by the same rules) plus ``arrears`` (an open account with a negative
balance); ``alarm_level: N`` selects rooms at balance level N or above.

Filters are evaluated when the job runs (a scheduled "floor 3 in arrears" reminder reaches
the rooms in arrears at that moment); lists of rooms and meters are checked when the job is
created. A kind that acts on meters takes a room's active tenant meters that it can act on; a
kind that acts on rooms takes a meter's room.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scada.site.assets import AssetSnapshot, MeterInfo
from tags import Quality, TagDB
from tags.names import meter_tag, room_tag

__all__ = ["ROOM_STATES", "Selection", "Target", "TargetError", "TargetsIn", "check_listed", "resolve_targets", "room_state"]

ROOM_STATES = ("offline", "off", "alarm", "low", "no_account", "ok", "unknown", "arrears")
_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class TargetError(ValueError):
    """A target that does not exist; ``field`` names it (``targets.rooms[2]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TargetsIn(BaseModel):
    """The ``targets`` of a job."""

    model_config = ConfigDict(extra="forbid")
    rooms: list[Annotated[str, Field(pattern=_ID)]] | None = Field(default=None, max_length=20000)
    meters: list[Annotated[str, Field(pattern=_ID)]] | None = Field(default=None, max_length=20000)
    floor: str | None = Field(default=None, pattern=_ID)
    building: str | None = Field(default=None, pattern=_ID)
    state: Literal["offline", "off", "alarm", "low", "no_account", "ok", "unknown", "arrears"] | None = None
    alarm_level: int | None = Field(default=None, ge=1, le=3)
    account: Literal["prepared"] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> TargetsIn:
        lists = [n for n in ("rooms", "meters") if getattr(self, n) is not None]
        filters = [n for n in ("floor", "building", "state", "alarm_level", "account") if getattr(self, n) is not None]
        if len(lists) > 1 or (lists and filters):
            raise ValueError("give rooms, or meters, or a selection (floor, building, state, alarm_level, account)")
        if not lists and not filters:
            raise ValueError("name the rooms, the meters, or a selection (floor, building, state, alarm_level, account)")
        for name in lists:
            ids = getattr(self, name)
            if not ids:
                raise ValueError(f"{name}: an empty list")
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: a target is listed twice")
        return self

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    type: Literal["room", "meter"]
    link: str | None = None  # meters: the link their commands are paced on


def room_state(snapshot: AssetSnapshot, tagdb: TagDB, room_id: str) -> str:
    """The room's state as the HMI's room grid shows it (``hmi.live``: the same tags, the same
    order: offline, off, alarm, low, no_account, unknown, ok)."""
    def value(name: str) -> Any:
        tv = tagdb.get(name)
        return tv.value if tv is not None else None

    comm_ok = comm_bad = 0
    meter_alarms = 0
    relay_fault = False
    for m in snapshot.meters_of_room(room_id):
        comm = tagdb.get(meter_tag(m.id, "comm_ok"))
        if comm is not None and comm.value is not None:
            if comm.value is True and comm.quality is Quality.GOOD:
                comm_ok += 1
            else:
                comm_bad += 1
        if value(meter_tag(m.id, "relay_fault")) is True:
            relay_fault = True
        alarms = value(meter_tag(m.id, "active_alarms"))
        if isinstance(alarms, int) and not isinstance(alarms, bool):
            meter_alarms += alarms
    supply = value(room_tag(room_id, "supply_state"))
    level = value(room_tag(room_id, "alarm_level"))
    account = value(room_tag(room_id, "account_state"))
    balance = value(room_tag(room_id, "balance"))
    if comm_bad:
        return "offline"
    if supply in ("off", "cutting"):
        return "off"
    if meter_alarms > 0 or relay_fault:
        return "alarm"
    if isinstance(level, int) and level >= 1:
        return "low"
    if account in ("none", "closed"):
        return "no_account"
    if not comm_ok and supply is None and balance is None:
        return "unknown"
    return "ok"


@dataclass(frozen=True)
class Selection:
    """What the selection filters need to know beyond the registry and the tags."""

    arrears: Callable[[str], bool] = lambda _room: False  # the room's open account is below zero
    alarm_level: Callable[[str], int | None] = lambda _room: None  # the room's balance level
    prepared: Callable[[], set[str]] = set  # rooms with a prepared account


def _selected_rooms(targets: TargetsIn, snapshot: AssetSnapshot, tagdb: TagDB, sel: Selection) -> list[str]:
    rooms = sorted(snapshot.rooms.values(), key=lambda r: (r.building_id, r.floor_id, r.id))
    if targets.building is not None:
        if targets.building not in snapshot.buildings:
            raise TargetError("targets.building", f"unknown building {targets.building!r}")
        rooms = [r for r in rooms if r.building_id == targets.building]
    if targets.floor is not None:
        floor = snapshot.floors.get(targets.floor)
        if floor is None:
            raise TargetError("targets.floor", f"unknown floor {targets.floor!r}")
        if targets.building is not None and floor.building_id != targets.building:
            raise TargetError("targets.floor", f"floor {targets.floor!r} is not in building {targets.building!r}")
        rooms = [r for r in rooms if r.floor_id == targets.floor]
    ids = [r.id for r in rooms]
    if targets.account == "prepared":
        prepared = sel.prepared()
        ids = [r for r in ids if r in prepared]
    if targets.alarm_level is not None:
        wanted = targets.alarm_level
        ids = [r for r in ids if (lv := sel.alarm_level(r)) is not None and lv >= wanted]
    if targets.state == "arrears":
        ids = [r for r in ids if sel.arrears(r)]
    elif targets.state is not None:
        ids = [r for r in ids if room_state(snapshot, tagdb, r) == targets.state]
    return ids


def check_listed(targets: TargetsIn, snapshot: AssetSnapshot) -> None:
    """Raise :class:`TargetError` for a listed room or meter that does not exist."""
    for i, room in enumerate(targets.rooms or ()):
        if room not in snapshot.rooms:
            raise TargetError(f"targets.rooms[{i}]", f"unknown room {room!r}")
    for i, meter in enumerate(targets.meters or ()):
        if meter not in snapshot.meters:
            raise TargetError(f"targets.meters[{i}]", f"unknown meter {meter!r}")
    for name in ("building", "floor"):
        value = getattr(targets, name)
        if value is not None and value not in getattr(snapshot, name + "s"):
            raise TargetError(f"targets.{name}", f"unknown {name} {value!r}")


def resolve_targets(
    targets: TargetsIn,
    target_type: Literal["room", "meter"],
    snapshot: AssetSnapshot,
    tagdb: TagDB,
    *,
    selection: Selection | None = None,
    meter_ok: Callable[[MeterInfo], bool] = lambda _m: True,
    link_of: Callable[[MeterInfo], str | None] = lambda m: m.link,
) -> list[Target]:
    """The job's targets now, in a stable order (building, floor, room; meters by id)."""
    check_listed(targets, snapshot)
    sel = selection or Selection()
    if targets.rooms is not None:
        rooms: Iterable[str] = targets.rooms
    elif targets.meters is not None:
        rooms = []
    else:
        rooms = _selected_rooms(targets, snapshot, tagdb, sel)
    if target_type == "room":
        if targets.meters is not None:
            seen: dict[str, None] = {}
            for i, meter_id in enumerate(targets.meters):
                m = snapshot.meters[meter_id]
                if m.room_id is None:
                    raise TargetError(f"targets.meters[{i}]", f"meter {meter_id} belongs to no room")
                seen.setdefault(m.room_id)
            rooms = list(seen)
        return [Target(r, "room") for r in rooms]
    meters: list[MeterInfo] = []
    if targets.meters is not None:
        meters = [snapshot.meters[m] for m in targets.meters]
    else:
        for room in rooms:
            meters += sorted((m for m in snapshot.meters_of_room(room) if m.role == "tenant"), key=lambda m: m.id)
    if targets.meters is not None:  # listed meters all become items: one it cannot act on says why
        return [Target(m.id, "meter", link_of(m)) for m in meters]
    return [Target(m.id, "meter", link_of(m)) for m in meters if m.active and meter_ok(m)]
