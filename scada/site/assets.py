"""The asset registry: site, buildings, floors, rooms and meters, as immutable snapshots.

The database is the source of truth; :class:`AssetRegistry` keeps the current snapshot in
memory for fast lookups (HMI, OPC UA, pollers) and tells listeners what changed after every
load, so that parts can follow meters added, replaced or removed at runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from scada.db import Database
from scada.site.formula import FormulaError, Term, expand, parse_formula
from scada.site.models import Building, Floor, Meter, MeterParent, Room, Site
from scada.site.tree import MeterTree, ParentChange
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = [
    "AssetRegistry",
    "AssetSnapshot",
    "BuildingInfo",
    "FloorInfo",
    "MeterInfo",
    "RegistryDiff",
    "RegistryError",
    "RoomInfo",
    "SiteInfo",
]

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A registry change refused; ``field`` names the input at fault, ``status`` the HTTP-like kind."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class SiteInfo:
    id: str
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class BuildingInfo:
    id: str
    site_id: str
    name: str


@dataclass(frozen=True, slots=True)
class FloorInfo:
    id: str
    building_id: str
    name: str
    level: int


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    floor_id: str
    building_id: str
    name: str
    area_m2: Decimal | None


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: str
    kind: str  # electricity | water
    role: str  # tenant | common | utility | virtual
    room_id: str | None
    building_id: str
    profile: str
    link: str
    unit_id: int
    circuit: int | None
    multiplier: Decimal
    install_date: date | None
    initial_reading: Decimal
    max_power_kw: Decimal | None
    replaced_by: str | None
    active: bool
    address: str | None = None  # DL/T 645 address, MQTT device id; None on Modbus
    manual: bool = False  # no communications: readings are entered by hand
    formula: str | None = None  # virtual meters: "A + B - C"

    @property
    def virtual(self) -> bool:
        return self.role == "virtual"

    @property
    def polled(self) -> bool:
        """Read by the poller over its link (not manual, not virtual)."""
        return not self.manual and self.role != "virtual"


def _grouped(items: Iterable[V], key: Callable[[V], K]) -> dict[K, list[V]]:
    """``items`` by ``key``, each group in the order given."""
    index: dict[K, list[V]] = {}
    for item in items:
        index.setdefault(key(item), []).append(item)
    return index


@dataclass(frozen=True)
class AssetSnapshot:
    site: SiteInfo | None = None
    buildings: dict[str, BuildingInfo] = field(default_factory=dict)
    floors: dict[str, FloorInfo] = field(default_factory=dict)
    rooms: dict[str, RoomInfo] = field(default_factory=dict)
    meters: dict[str, MeterInfo] = field(default_factory=dict)  # active and inactive
    tree: MeterTree = field(default_factory=MeterTree)  # parents over time

    def terms(self, meter_id: str) -> dict[str, Decimal]:
        """The physical meters behind ``meter_id`` with their coefficients: the meter itself
        × its multiplier, or a virtual meter's formula expanded (nested ones too). Raises
        :class:`~scada.site.formula.FormulaError` on an unknown meter or a loop."""
        meter = self.meters.get(meter_id)
        if meter is None:
            raise FormulaError(f"unknown meter {meter_id!r}")
        if meter.role != "virtual":
            return {meter_id: meter.multiplier}
        return expand(meter_id, self._formulas, self._multipliers)

    @cached_property
    def _formulas(self) -> dict[str, tuple[Term, ...]]:
        return {m.id: parse_formula(m.formula) for m in self.meters.values() if m.role == "virtual" and m.formula}

    @cached_property
    def _multipliers(self) -> dict[str, Decimal]:
        return {m.id: m.multiplier for m in self.meters.values() if m.role != "virtual"}

    def parent_of(self, meter_id: str, at: datetime | None = None) -> str | None:
        """The meter's parent at ``at`` (default: now)."""
        return self.tree.parent_at(meter_id, at or utcnow())

    @property
    def active_meters(self) -> list[MeterInfo]:
        return [m for m in self.meters.values() if m.active]

    # The per-room, per-link and per-floor lookups are indexed once per snapshot (a snapshot is
    # never changed after it is built): a scan of every meter per call made work done room by
    # room (seeding 50,000 accounts, cutting every room of a building) quadratic in the site.
    @cached_property
    def _meters_by_room(self) -> dict[str | None, list[MeterInfo]]:
        return _grouped(self.meters.values(), lambda m: m.room_id)

    @cached_property
    def _meters_by_link(self) -> dict[str, list[MeterInfo]]:
        return _grouped((m for m in self.meters.values() if m.active), lambda m: m.link)

    @cached_property
    def _rooms_by_floor(self) -> dict[str, list[RoomInfo]]:
        return _grouped(self.rooms.values(), lambda r: r.floor_id)

    def meters_of_room(self, room_id: str, *, active_only: bool = True) -> list[MeterInfo]:
        return [m for m in self._meters_by_room.get(room_id, ()) if m.active or not active_only]

    def meters_on_link(self, link: str) -> list[MeterInfo]:
        return list(self._meters_by_link.get(link, ()))

    def rooms_on_floor(self, floor_id: str) -> list[RoomInfo]:
        return list(self._rooms_by_floor.get(floor_id, ()))

    def floors_of_building(self, building_id: str) -> list[FloorInfo]:
        return sorted((f for f in self.floors.values() if f.building_id == building_id), key=lambda f: f.level)


@dataclass(frozen=True)
class RegistryDiff:
    """Meter and room ids added, removed (or deactivated) and changed by a load."""

    meters_added: frozenset[str] = frozenset()
    meters_removed: frozenset[str] = frozenset()
    meters_changed: frozenset[str] = frozenset()
    rooms_added: frozenset[str] = frozenset()
    rooms_removed: frozenset[str] = frozenset()
    rooms_changed: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def _diff(old: dict[str, Any], new: dict[str, Any], active: Callable[[Any], bool]) -> tuple[set[str], set[str], set[str]]:
    old_ids = {k for k, v in old.items() if active(v)}
    new_ids = {k for k, v in new.items() if active(v)}
    changed = {k for k in old_ids & new_ids if old[k] != new[k]}
    return new_ids - old_ids, old_ids - new_ids, changed


Listener = Callable[[AssetSnapshot, RegistryDiff], None]


class AssetRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.snapshot = AssetSnapshot()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(snapshot, diff)`` after each load that changed something."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def load(self) -> RegistryDiff:
        async with self.db.reads() as s:
            site = await s.scalar(select(Site).order_by(Site.id).limit(1))
            buildings = (await s.scalars(select(Building))).all()
            floors = (await s.scalars(select(Floor))).all()
            # as rows of their columns, not ORM objects: building 50,000 of each held the event
            # loop ~1 s longer at start (nothing here is written back through the session)
            rooms = (await s.execute(_columns(Room))).all()
            meters = (await s.execute(_columns(Meter))).all()
            parents = (await s.scalars(select(MeterParent))).all()
        floor_building = {f.id: f.building_id for f in floors}
        snap = AssetSnapshot(
            site=SiteInfo(site.id, site.name, site.timezone) if site else None,
            buildings={b.id: BuildingInfo(b.id, b.site_id, b.name) for b in buildings},
            floors={f.id: FloorInfo(f.id, f.building_id, f.name, f.level) for f in floors},
            rooms={r.id: RoomInfo(r.id, r.floor_id, floor_building[r.floor_id], r.name, r.area_m2) for r in rooms},
            meters={m.id: _meter_info(m) for m in meters},
            tree=MeterTree(ParentChange(p.meter_id, p.parent_id, p.valid_from) for p in parents),
        )
        old = self.snapshot
        m_add, m_rem, m_chg = _diff(old.meters, snap.meters, lambda m: m.active)
        r_add, r_rem, r_chg = _diff(old.rooms, snap.rooms, lambda r: True)
        diff = RegistryDiff(*map(frozenset, (m_add, m_rem, m_chg, r_add, r_rem, r_chg)))
        self.snapshot = snap
        tree_changed = old.tree.changes != snap.tree.changes
        if diff or tree_changed:
            for listener in list(self._listeners):
                try:
                    listener(snap, diff)
                except Exception:
                    log.exception("registry listener failed", extra={"listener": repr(listener)})
        return diff

    async def replace_meter(
        self,
        old_id: str,
        new_id: str,
        actor: Actor,
        *,
        reason: str,
        initial_reading: Decimal = Decimal(0),
        install_date: date | None = None,
        unit_id: int | None = None,
        address: str | None = None,
    ) -> MeterInfo:
        """Record that ``new_id`` replaced ``old_id`` (same room, profile and link).

        Billing of the old meter's final reading is the prepaid engine's job; this keeps the
        registry and the audit log right. In the meter tree the new meter takes the old one's
        place from now on (its parent, its children); the past keeps the old meter.
        """
        now = utcnow()
        async with self.db.transaction() as s:
            old = await self._replaceable(s, old_id, new_id, unit_id, address)
            new = Meter(
                id=new_id, kind=old.kind, role=old.role, room_id=old.room_id, building_id=old.building_id,
                profile=old.profile, link=old.link, unit_id=unit_id if unit_id is not None else old.unit_id,
                circuit=old.circuit, address=address if address is not None else old.address,
                multiplier=old.multiplier, install_date=install_date,
                initial_reading=initial_reading, max_power_kw=old.max_power_kw, active=True,
                manual=old.manual, formula=old.formula,
            )
            s.add(new)
            await s.flush()
            old.active = False
            old.replaced_by = new_id
            rows = (await s.scalars(select(MeterParent))).all()
            tree = MeterTree(ParentChange(r.meter_id, r.parent_id, r.valid_from) for r in rows)
            moves = [(new_id, p) for p in [tree.parent_at(old_id, now)] if p is not None]
            moves += [(child, new_id) for child in tree.children_at(old_id, now)]
            if moves:
                moves.append((old_id, None))
            for meter_id, parent_id in moves:
                s.add(MeterParent(meter_id=meter_id, parent_id=parent_id, valid_from=now, recorded_at=now,
                                  recorded_by=actor.name, reason=f"meter {old_id} replaced by {new_id}"))
            AuditLog.record(
                s, actor, "meter.replace", "meter", old_id, reason=reason,
                before={"active": True}, after={"replaced_by": new_id, "initial_reading": initial_reading},
            )
        await self.load()
        return self.snapshot.meters[new_id]

    async def set_parent(
        self,
        meter_id: str,
        parent_id: str | None,
        actor: Actor,
        *,
        valid_from: datetime | None = None,
        reason: str = "",
    ) -> ParentChange | None:
        """Hang ``meter_id`` below ``parent_id`` (None: below nothing) from ``valid_from`` (default
        now) on, audited. The meter's earlier parents stay as they were for the past. Returns
        the change, or None when the meter already had that parent then."""
        now = utcnow()
        when = valid_from or now
        if when.tzinfo is None:
            raise RegistryError("from: needs a UTC offset", field="from")
        async with self.db.transaction() as s:
            rows = (await s.scalars(select(MeterParent))).all()
            tree = MeterTree(ParentChange(r.meter_id, r.parent_id, r.valid_from) for r in rows)
            meter = await s.get(Meter, meter_id)
            if meter is None:
                raise RegistryError(f"unknown meter {meter_id!r}", field="meter", status=404)
            if not meter.active:
                raise RegistryError(f"meter {meter_id} is not active", field="meter", status=409)
            if parent_id is not None:
                parent = await s.get(Meter, parent_id)
                if parent is None:
                    raise RegistryError(f"unknown meter {parent_id!r}", field="parent")
                if parent_id == meter_id:
                    raise RegistryError("a meter cannot be its own parent", field="parent")
                if not parent.active:
                    raise RegistryError(f"meter {parent_id} is not active", field="parent")
                if parent.kind != meter.kind:
                    raise RegistryError(
                        f"meter {parent_id} measures {parent.kind}, meter {meter_id} {meter.kind}: a parent measures the same",
                        field="parent",
                    )
            timeline = tree.timeline(meter_id)
            if timeline and when < timeline[-1].valid_from:
                raise RegistryError(
                    f"meter {meter_id} changed parent at {timeline[-1].valid_from.isoformat()}: a new parent takes effect "
                    "at or after its last change (the past keeps its tree)",
                    field="from",
                )
            before = tree.parent_at(meter_id, when)
            if before == parent_id:
                return None
            change = ParentChange(meter_id, parent_id, when)
            loop = tree.with_change(change).loop(since=when)
            if loop is not None:
                raise RegistryError(f"this would make a loop: {' → '.join(loop)}", field="parent")
            existing = next((r for r in rows if r.meter_id == meter_id and r.valid_from == when), None)
            if existing is not None:
                existing.parent_id = parent_id
                existing.recorded_at, existing.recorded_by, existing.reason = now, actor.name, reason
            else:
                s.add(MeterParent(meter_id=meter_id, parent_id=parent_id, valid_from=when, recorded_at=now,
                                  recorded_by=actor.name, reason=reason))
            AuditLog.record(
                s, actor, "meter.parent", "meter", meter_id, reason=reason,
                before={"parent": before}, after={"parent": parent_id, "from": when},
            )
        await self.load()
        log.info("meter parent changed", extra={"meter": meter_id, "parent": parent_id, "from": when.isoformat()})
        return change

    async def check_replace(self, old_id: str, new_id: str, unit_id: int | None = None, address: str | None = None) -> None:
        """Raise :class:`RegistryError` when :meth:`replace_meter` would refuse (so a caller can
        refuse before it does anything else)."""
        async with self.db.sessions() as s:
            await self._replaceable(s, old_id, new_id, unit_id, address)

    @staticmethod
    async def _replaceable(s: Any, old_id: str, new_id: str, unit_id: int | None, address: str | None) -> Meter:
        old: Meter | None = await s.get(Meter, old_id)
        if old is None or not old.active:
            raise RegistryError(f"no active meter {old_id!r}")
        if await s.get(Meter, new_id) is not None:
            raise RegistryError(f"meter {new_id!r} exists already")
        # the successor takes the old meter's address, or a free one: two active meters on one
        # address would make the next start's site import (and the poller) refuse. The address is
        # the protocol address where there is one (DL/T 645, MQTT), else the unit id.
        if old.manual or old.role == "virtual":
            return old  # read by hand or computed: no address on any link
        same_circuit = Meter.circuit.is_(None) if old.circuit is None else Meter.circuit == old.circuit
        others = select(Meter.id).where(Meter.active.is_(True), Meter.id != old_id, Meter.link == old.link, same_circuit)
        new_address = address if address is not None else old.address
        if new_address is not None:
            taken = await s.scalar(others.where(Meter.address == new_address))
            if taken is not None:
                raise RegistryError(f"address: link {old.link} address {new_address} is already used by meter {taken}")
            return old
        unit = unit_id if unit_id is not None else old.unit_id
        taken = await s.scalar(others.where(Meter.address.is_(None), Meter.unit_id == unit))
        if taken is not None:
            raise RegistryError(f"unit_id: link {old.link} unit {unit} is already used by meter {taken}")
        return old

    async def set_active(self, meter_id: str, active: bool, actor: Actor, *, reason: str) -> None:
        async with self.db.transaction() as s:
            meter = await s.get(Meter, meter_id)
            if meter is None:
                raise RegistryError(f"no meter {meter_id!r}")
            if meter.active == active:
                return
            AuditLog.record(
                s, actor, "meter.activate" if active else "meter.deactivate", "meter", meter_id,
                reason=reason, before={"active": meter.active}, after={"active": active},
            )
            meter.active = active
        await self.load()


def _columns(model: type[Any]) -> Any:
    """A select of every mapped column of ``model``, as rows whose names are the attributes'."""
    return select(*(getattr(model, attr.key) for attr in sa_inspect(model).column_attrs))


def _meter_info(m: Any) -> MeterInfo:
    return MeterInfo(
        m.id, m.kind, m.role, m.room_id, m.building_id, m.profile, m.link, m.unit_id, m.circuit,
        m.multiplier, m.install_date, m.initial_reading, m.max_power_kw, m.replaced_by, m.active, m.address,
        bool(m.manual), m.formula,
    )
