"""Live room summaries: the asset registry joined with room tags and meter tags, kept current
from one TagDB subscription, with server-side filtering and paging fast enough for 10,000 rooms.

One task (:meth:`LiveRooms.run`) reads the change stream in batches, recomputes the summary of
each room touched, caches its JSON, keeps per-floor counts of room states, and hands one
:class:`LiveUpdate` per batch to its listeners (the WebSocket feed). Listeners are plain
callables that must not block: the feed only marks its clients dirty.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from scada.site.assets import (
    AssetRegistry,
    AssetSnapshot,
    MeterInfo,
    RegistryDiff,
    RoomInfo,
)
from tags import Quality, TagDB, TagValue, names
from tags.names import meter_tag, room_tag
from tags.subscription import Subscription

__all__ = [
    "CATEGORIES",
    "FilterError",
    "LiveRooms",
    "LiveUpdate",
    "RoomFilter",
    "RoomPage",
    "tag_json",
]

log = logging.getLogger(__name__)

ROOM_POINTS = ("balance", "alarm_level", "supply_state", "account_state", "active_alarms", "alarm_priority")  # order matters: _recompute
_QUALITY_NAMES = {q: q.name.lower() for q in Quality}
# meter points that change what a room's tile shows
TILE_POINTS = frozenset({"comm_ok", "power", "relay_fault", "active_alarms"})
# room states, worst first: a room is in the first that applies
CATEGORIES = ("offline", "off", "alarm", "low", "no_account", "ok", "unknown")
Category = Literal["offline", "off", "alarm", "low", "no_account", "ok", "unknown"]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def tag_json(value: TagValue, unit: str = "") -> dict[str, Any]:
    return {
        "value": _finite(value.value),
        "quality": value.quality.name.lower(),
        "reason": value.reason.value,
        "detail": value.detail,
        "unit": unit,
        "source_ts": value.source_ts.isoformat(),
        "server_ts": value.server_ts.isoformat(),
    }


_NATURAL = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p.lower() for p in _NATURAL.split(text))


@dataclass(frozen=True)
class RoomFilter:
    building: str | None = None
    floor: str | None = None
    state: Category | None = None
    q: str | None = None  # part of the room's name or id, any case

    def scope(self) -> tuple[str | None, str | None]:
        return self.building, self.floor


@dataclass(frozen=True)
class RoomPage:
    rooms: list[dict[str, Any]]
    total: int
    page: int
    page_size: int
    counts: dict[str, int]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rooms]


@dataclass(frozen=True)
class LiveUpdate:
    """What one batch of tag changes touched."""

    rooms: frozenset[str]  # rooms whose summary changed
    category_changed: frozenset[str]  # rooms that moved to another state
    tags: dict[str, list[str]] = field(default_factory=dict)  # room → meter tag names changed
    rebuilt: bool = False  # the registry changed: views must resync


class _Room:
    __slots__ = ("info", "building_name", "floor_name", "floor_level", "meters", "room_tags", "meter_tags", "summary", "encoded", "category", "sort_key")

    def __init__(self, info: RoomInfo, snap: AssetSnapshot, meters: list[MeterInfo]) -> None:
        floor = snap.floors.get(info.floor_id)
        building = snap.buildings.get(info.building_id)
        self.info = info
        self.building_name = building.name if building else info.building_id
        self.floor_name = floor.name if floor else info.floor_id
        self.floor_level = floor.level if floor else 0
        self.meters: list[MeterInfo] = sorted(meters, key=lambda m: (m.kind, m.id))
        self.room_tags = tuple(room_tag(info.id, p) for p in ROOM_POINTS)
        # per meter: is it electricity, and its comm_ok, power, relay_fault, active_alarms tags
        self.meter_tags = [
            (m.kind == "electricity", *(meter_tag(m.id, p) for p in ("comm_ok", "power", "relay_fault", "active_alarms")))
            for m in self.meters
        ]
        self.summary: dict[str, Any] = {}
        self.encoded: str | None = None
        self.category: str = "unknown"
        self.sort_key = (info.building_id, self.floor_level, _natural(info.name), info.id)


Listener = Callable[[LiveUpdate], None]


class LiveRooms:
    def __init__(self, assets: AssetRegistry, tagdb: TagDB, *, minor_units: int = 2) -> None:
        self.assets = assets
        self.tagdb = tagdb
        self.minor_units = minor_units
        self._rooms: dict[str, _Room] = {}
        self._order: list[_Room] = []
        self._by_floor: dict[str, list[_Room]] = {}
        self._floors_of_building: dict[str, list[str]] = {}
        self._meter_room: dict[str, str] = {}
        self._floor_counts: dict[str, Counter[str]] = {}
        self._listeners: list[Listener] = []
        self._sub: Subscription | None = None
        self._unsubscribe_assets: Callable[[], None] | None = None
        self.snapshot = AssetSnapshot()
        self.batches = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._rebuild(self.assets.snapshot)
        self._sub = self.tagdb.subscribe(self._wanted, maxsize=50_000, name="hmi.live")
        self._unsubscribe_assets = self.assets.subscribe(self._on_registry)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._unsubscribe_assets is not None:
            self._unsubscribe_assets()
            self._unsubscribe_assets = None

    async def run(self) -> None:
        """Follow the change stream until :meth:`close`."""
        sub = self._sub
        if sub is None:
            raise RuntimeError("LiveRooms.run before start")
        while True:
            try:
                batch = await sub.get_batch(20_000)
            except StopAsyncIteration:
                return
            self._apply(batch)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # -- the index -------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        if name.startswith("room:"):
            return True
        return names.split(name)[0] in self._meter_room

    def _on_registry(self, snap: AssetSnapshot, diff: RegistryDiff) -> None:
        self._rebuild(snap)
        self._notify(LiveUpdate(frozenset(self._rooms), frozenset(self._rooms), {}, rebuilt=True))

    def _rebuild(self, snap: AssetSnapshot) -> None:
        meters_of: dict[str, list[MeterInfo]] = {}
        for m in snap.active_meters:
            if m.room_id is not None:
                meters_of.setdefault(m.room_id, []).append(m)
        rooms = {r.id: _Room(r, snap, meters_of.get(r.id, [])) for r in snap.rooms.values()}
        order = sorted(rooms.values(), key=lambda r: r.sort_key)
        by_floor: dict[str, list[_Room]] = {}
        for r in order:
            by_floor.setdefault(r.info.floor_id, []).append(r)
        floors_of_building: dict[str, list[str]] = {}
        for f in sorted(snap.floors.values(), key=lambda f: (f.building_id, f.level, f.id)):
            floors_of_building.setdefault(f.building_id, []).append(f.id)
        self.snapshot = snap
        self._rooms = rooms
        self._order = order
        self._by_floor = by_floor
        self._floors_of_building = floors_of_building
        self._meter_room = {m.id: m.room_id for m in snap.active_meters if m.room_id is not None and m.room_id in rooms}
        self._floor_counts = {}
        for r in order:
            self._recompute(r)
            self._floor_counts.setdefault(r.info.floor_id, Counter())[r.category] += 1
        self.tagdb.refilter()  # _wanted answers from the meters just indexed

    # -- applying changes ------------------------------------------------------------------
    def _apply(self, batch: Iterable[Any]) -> None:
        self.batches += 1
        touched: set[str] = set()
        tags: dict[str, list[str]] = {}
        meter_room = self._meter_room
        for change in batch:
            name: str = change.name
            owner, point = names.split(name)
            if owner.startswith("room:"):
                room = owner[5:]
                if room in self._rooms:
                    touched.add(room)
                continue
            room_id = meter_room.get(owner)
            if room_id is None:
                continue
            tags.setdefault(room_id, []).append(name)
            if point in TILE_POINTS:
                touched.add(room_id)
        moved: set[str] = set()
        for room_id in touched:
            room = self._rooms[room_id]
            before = room.category
            self._recompute(room)
            if room.category != before:
                moved.add(room_id)
                counts = self._floor_counts.setdefault(room.info.floor_id, Counter())
                counts[before] -= 1
                counts[room.category] += 1
        if touched or tags:
            self._notify(LiveUpdate(frozenset(touched), frozenset(moved), tags))

    def _notify(self, update: LiveUpdate) -> None:
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:
                log.exception("live room listener failed", extra={"listener": repr(listener)})

    def _recompute(self, room: _Room) -> None:
        # hot path (every room touched by a batch): plain locals, no helper calls per tag
        get = self.tagdb.get
        newest: datetime | None = None
        vals: list[Any] = []
        tvs = [get(name) for name in room.room_tags]
        for tv in tvs:
            if tv is None or tv.value is None:
                vals.append(None)
            else:
                v = tv.value
                vals.append(None if v.__class__ is float and not math.isfinite(v) else v)  # type: ignore[arg-type]
                if newest is None or tv.server_ts > newest:
                    newest = tv.server_ts
        balance, alarm_level, supply, account, active_alarms, alarm_priority = vals
        balance_tv = tvs[0]
        comm_ok = comm_bad = 0
        power = 0.0
        power_seen = False
        power_quality = Quality.GOOD
        relay_fault = False
        meter_alarms = 0
        for electricity, comm_name, power_name, fault_name, alarms_name in room.meter_tags:
            comm = get(comm_name)
            if comm is not None and comm.value is not None:
                if newest is None or comm.server_ts > newest:
                    newest = comm.server_ts
                if comm.value is True and comm.quality is Quality.GOOD:
                    comm_ok += 1
                else:
                    comm_bad += 1
            if electricity:
                p = get(power_name)
                if p is not None:
                    pv = p.value
                    if (pv.__class__ is float or pv.__class__ is int) and math.isfinite(pv):  # type: ignore[arg-type]
                        power += pv  # type: ignore[operator]
                        power_seen = True
                        if p.quality < power_quality:
                            power_quality = p.quality
                        if newest is None or p.server_ts > newest:
                            newest = p.server_ts
            fault = get(fault_name)
            if fault is not None and fault.value is True:
                relay_fault = True
            alarms = get(alarms_name)
            if alarms is not None and alarms.value.__class__ is int:
                meter_alarms += alarms.value  # type: ignore[operator]
        balance_text = None
        if balance.__class__ is float or balance.__class__ is int:
            balance_text = f"{balance:.{self.minor_units}f}"
        comm = "fault" if comm_bad else ("ok" if comm_ok else "unknown")
        info = room.info
        summary: dict[str, Any] = {
            "id": info.id,
            "name": info.name,
            "building": info.building_id,
            "building_name": room.building_name,
            "floor": info.floor_id,
            "floor_name": room.floor_name,
            "balance": balance_text,
            "balance_quality": _QUALITY_NAMES[balance_tv.quality] if balance_tv is not None else None,
            "supply": supply,
            "account": account,
            "alarm_level": alarm_level,
            "alarm_priority": alarm_priority,
            "active_alarms": active_alarms,
            "comm": comm,
            "meters": len(room.meters),
            "meters_offline": comm_bad,
            "power": round(power, 3) if power_seen else None,
            "power_quality": _QUALITY_NAMES[power_quality] if power_seen else None,
            "relay_fault": relay_fault,
            "ts": round(newest.timestamp(), 3) if newest is not None else None,
        }
        summary["state"] = _category(summary, meter_alarms)
        room.summary = summary
        room.category = summary["state"]
        room.encoded = None  # encoded when a view needs it

    # -- queries ---------------------------------------------------------------------------
    def __contains__(self, room_id: object) -> bool:
        return room_id in self._rooms

    def __len__(self) -> int:
        return len(self._rooms)

    def summary(self, room_id: str) -> dict[str, Any] | None:
        room = self._rooms.get(room_id)
        return room.summary if room is not None else None

    def encoded(self, room_id: str) -> str | None:
        """The room's summary as JSON, encoded once per change however many clients show it."""
        room = self._rooms.get(room_id)
        if room is None:
            return None
        if room.encoded is None:
            room.encoded = json.dumps(room.summary, ensure_ascii=False, separators=(",", ":"))
        return room.encoded

    def room_of_meter(self, meter_id: str) -> str | None:
        return self._meter_room.get(meter_id)

    def check_filter(self, f: RoomFilter) -> None:
        """Raise :class:`FilterError` for a filter naming something that does not exist."""
        snap = self.snapshot
        if f.building is not None and f.building not in snap.buildings:
            raise FilterError("building", f"unknown building {f.building!r}")
        if f.floor is not None:
            floor = snap.floors.get(f.floor)
            if floor is None:
                raise FilterError("floor", f"unknown floor {f.floor!r}")
            if f.building is not None and floor.building_id != f.building:
                raise FilterError("floor", f"floor {f.floor!r} is not in building {f.building!r}")

    def _scope(self, building: str | None, floor: str | None) -> Iterable[_Room]:
        if floor is not None:
            return self._by_floor.get(floor, [])
        if building is not None:
            return (r for fid in self._floors_of_building.get(building, []) for r in self._by_floor.get(fid, []))
        return self._order

    def matching(self, f: RoomFilter) -> list[str]:
        """Ids of the rooms matching ``f``, in display order."""
        rooms = self._scope(f.building, f.floor)
        if f.state is not None:
            rooms = (r for r in rooms if r.category == f.state)
        if f.q:
            needle = f.q.lower()
            rooms = (r for r in rooms if needle in r.info.name.lower() or needle in r.info.id.lower())
        return [r.info.id for r in rooms]

    def counts(self, building: str | None = None, floor: str | None = None) -> dict[str, int]:
        """Rooms per state in a building or floor (or the whole site)."""
        if floor is not None:
            floors = [floor]
        elif building is not None:
            floors = self._floors_of_building.get(building, [])
        else:
            floors = list(self._floor_counts)
        total: Counter[str] = Counter()
        for fid in floors:
            total.update(self._floor_counts.get(fid, Counter()))
        return {c: total.get(c, 0) for c in CATEGORIES}

    def page(self, f: RoomFilter, page: int = 1, page_size: int = 120) -> RoomPage:
        ids = self.matching(f)
        pages = max(1, math.ceil(len(ids) / page_size))
        page = min(max(1, page), pages)
        start = (page - 1) * page_size
        rooms = [self._rooms[i].summary for i in ids[start : start + page_size]]
        return RoomPage(rooms, len(ids), page, page_size, self.counts(f.building, f.floor))

    def meter_points(self, meter_id: str) -> dict[str, dict[str, Any]]:
        """Every tag of a meter with value, quality and timestamps, by point."""
        prefix = meter_id + "."
        n = len(prefix)
        out: dict[str, dict[str, Any]] = {}
        for name, tv in sorted(self.tagdb.snapshot(lambda t: t.startswith(prefix) and "." not in t[n:]).items()):
            out[name[n:]] = tag_json(tv, self.tagdb.meta(name).unit)
        return out

    def room_detail(self, room_id: str) -> dict[str, Any] | None:
        room = self._rooms.get(room_id)
        if room is None:
            return None
        return {
            "room": room.summary,
            "area_m2": room.info.area_m2,
            "meters": [meter_json(m) | {"points": self.meter_points(m.id)} for m in room.meters],
        }


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def meter_json(m: MeterInfo) -> dict[str, Any]:
    return {
        "id": m.id, "kind": m.kind, "role": m.role, "room": m.room_id, "building": m.building_id,
        "profile": m.profile, "link": m.link, "unit_id": m.unit_id, "circuit": m.circuit,
        "multiplier": m.multiplier, "active": m.active, "replaced_by": m.replaced_by,
        "max_power_kw": m.max_power_kw, "install_date": m.install_date,
    }


def _category(s: dict[str, Any], meter_alarms: int) -> str:
    if s["comm"] == "fault":
        return "offline"
    if s["supply"] in ("off", "cutting"):
        return "off"
    # the meters' own alarms (tamper, relay fault, review hold, over power...); balance alarms
    # are the room's and show as "low" below (the tile shows the room's alarm count either way)
    if meter_alarms > 0 or s["relay_fault"]:
        return "alarm"
    if (s["alarm_level"] or 0) >= 1:
        return "low"
    if s["account"] in ("none", "closed"):
        return "no_account"
    if s["comm"] == "unknown" and s["supply"] is None and s["balance"] is None:
        return "unknown"
    return "ok"
