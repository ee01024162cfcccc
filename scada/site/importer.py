"""Import a site (buildings, floors, rooms, meters) from TOML or CSV, idempotently and atomically.

Re-importing the same file changes nothing; a changed row is updated and audited with its
before and after; rows missing from the file are left alone. A meter the database holds as
replaced or taken out of service is history: the file neither changes it nor counts its address
(its successor may have taken over its unit id), so a site file written before a replacement
still imports after it. Every problem is reported with its
file, line and key, and if there is any, nothing of the import is committed.

TOML::

    [site]     id, name, timezone
    [[buildings]]  id, name
    [[floors]]     id, building, level, name
    [[rooms]]      id, floor, name, area_m2
    [[meters]]     id, kind, role, room, building, profile, link, unit_id, circuit,
                   multiplier, install_date, initial_reading, max_power_kw, parent, manual,
                   formula

``role`` is ``tenant`` (a room's meter), ``common`` (a common area's), ``utility`` (the supply
meter upstream of the site's transformer) or ``virtual`` (a ``formula`` of other meters, e.g.
``"E-1 + E-2 - C-1"``: never polled). A ``manual`` meter has no communications (readings are
entered by hand): it names no link, profile or unit_id. ``parent`` hangs the meter below another
(the first time since always; a changed parent from the moment of the import on).

CSV (one row per meter, or per room without a meter; a header row names the columns)::

    site_id, building_id, building_name, floor_id, floor_name, floor_level, room_id, room_name,
    area_m2, meter_id, kind, role, profile, link, unit_id, circuit, multiplier, install_date,
    initial_reading, max_power_kw, parent, manual, formula
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from scada.core.configbase import format_validation_error
from scada.core.inputs import BoundedDecimal
from scada.db import Database
from scada.site.formula import FormulaError, Term, expand, format_formula, parse_formula
from scada.site.models import Building, Floor, Meter, MeterParent, Room, Site
from scada.site.tree import ALWAYS, MeterTree, ParentChange
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["ImportResult", "SiteImportError", "SiteSpec", "apply_site", "import_site_file", "parse_site_file"]

_ID = r"^[A-Za-z0-9_-]{1,64}$"  # no dots: tag names are <meter_id>.<point>


class SiteImportError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteRow(_Row):
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"


class BuildingRow(_Row):
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)


class FloorRow(_Row):
    id: str = Field(pattern=_ID)
    building: str
    level: int = Field(ge=-10, le=300)
    name: str = Field(min_length=1, max_length=200)


class RoomRow(_Row):
    id: str = Field(pattern=_ID)
    floor: str
    name: str = Field(min_length=1, max_length=200)
    area_m2: Annotated[Decimal, BoundedDecimal(12, 3, negative=True)] | None = Field(default=None, gt=0, lt=1_000_000)


class MeterRow(_Row):
    id: str = Field(pattern=_ID)
    kind: Literal["electricity", "water"]
    role: Literal["tenant", "common", "utility", "virtual"] = "tenant"
    room: str | None = None
    building: str | None = None
    profile: str | None = Field(default=None, min_length=1, max_length=64)
    link: str | None = Field(default=None, min_length=1, max_length=64)
    unit_id: int | None = Field(default=None, ge=1, le=247)  # a polled meter without one: 1
    # DL/T 645: the meter's 12-digit address; MQTT: the device id its gateway publishes under
    address: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    circuit: int | None = Field(default=None, ge=1, le=64)
    multiplier: Annotated[Decimal, BoundedDecimal(12, 4, negative=True)] = Field(default=Decimal(1), gt=0, lt=100_000)
    install_date: date | None = None
    initial_reading: Annotated[Decimal, BoundedDecimal(24, 8, negative=True)] = Field(default=Decimal(0), ge=0)
    max_power_kw: Annotated[Decimal, BoundedDecimal(12, 3, negative=True)] | None = Field(default=None, gt=0)
    parent: str | None = Field(default=None, pattern=_ID)
    manual: bool = False
    formula: str | None = Field(default=None, max_length=1000)

    @property
    def polled(self) -> bool:
        return not self.manual and self.role != "virtual"

    @field_validator("manual", mode="before")
    @classmethod
    def _csv_bool(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        return value

    @field_validator("install_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"expected a date YYYY-MM-DD, found {value!r}") from None
        return value


@dataclass
class SiteSpec:
    """A parsed import; ``where`` maps (kind, id) to the place it came from, for messages."""

    source: str
    site: SiteRow | None = None
    buildings: list[BuildingRow] = field(default_factory=list)
    floors: list[FloorRow] = field(default_factory=list)
    rooms: list[RoomRow] = field(default_factory=list)
    meters: list[MeterRow] = field(default_factory=list)
    where: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class ImportResult:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def count(self, bucket: str, kind: str) -> None:
        d = getattr(self, bucket)
        d[kind] = d.get(kind, 0) + 1

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        parts = []
        for bucket in ("created", "updated", "unchanged"):
            d = getattr(self, bucket)
            if d:
                parts.append(f"{bucket} " + ", ".join(f"{n} {k}" for k, n in sorted(d.items())))
        return "; ".join(parts) or "nothing to import"


def _validate(model: type[_Row], data: Any, place: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{place}: expected a table, found {type(data).__name__}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(f"{place}: {p}" for p in format_validation_error(exc, model))
        return None


def _header_lines(text: str, table: str) -> list[int]:
    """The line numbers of the ``[[table]]`` headers (the newlines counted on from the previous
    header, not from the start each time: a 50,000-meter site took minutes)."""
    pattern = re.compile(rf"^[ \t]*\[\[[ \t]*{table}[ \t]*\]\]", re.M)
    lines, line, pos = [], 1, 0
    for m in pattern.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        lines.append(line)
    return lines


def parse_toml(text: str, source: str) -> SiteSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteImportError([f"{source}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    spec = SiteSpec(source)
    for key in data:
        if key not in ("site", "buildings", "floors", "rooms", "meters"):
            problems.append(f"{source}: {key}: unknown key (allowed: site, buildings, floors, rooms, meters)")
    if "site" in data:
        spec.site = _validate(SiteRow, data["site"], f"{source}: site", problems)
    tables: list[tuple[str, type[_Row], list[Any]]] = [
        ("buildings", BuildingRow, spec.buildings),
        ("floors", FloorRow, spec.floors),
        ("rooms", RoomRow, spec.rooms),
        ("meters", MeterRow, spec.meters),
    ]
    for name, model, out in tables:
        rows = data.get(name, [])
        if not isinstance(rows, list):
            problems.append(f"{source}: {name}: expected an array of tables ([[{name}]])")
            continue
        lines = _header_lines(text, name)
        for i, row in enumerate(rows):
            line = f":{lines[i]}" if i < len(lines) else ""
            place = f"{source}{line}: {name}[{i}]"
            parsed = _validate(model, row, place, problems)
            if parsed is not None:
                out.append(parsed)
                spec.where[(name, parsed.id)] = place
    if problems:
        raise SiteImportError(problems)
    return spec


_CSV_COLUMNS = {
    "site_id", "site_name", "timezone", "building_id", "building_name", "floor_id", "floor_name",
    "floor_level", "room_id", "room_name", "area_m2", "meter_id", "kind", "role", "profile", "link",
    "unit_id", "address", "circuit", "multiplier", "install_date", "initial_reading", "max_power_kw",
    "parent", "manual", "formula",
}


def parse_csv(text: str, source: str) -> SiteSpec:
    reader = csv.DictReader(io.StringIO(text))
    problems: list[str] = []
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in _CSV_COLUMNS]
    if unknown:
        raise SiteImportError([f"{source}:1: unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(_CSV_COLUMNS))}"])
    for needed in ("site_id", "building_id", "floor_id", "room_id"):
        if needed not in header:
            raise SiteImportError([f"{source}:1: missing column {needed}"])
    spec = SiteSpec(source)
    seen: dict[tuple[str, str], Any] = {}

    def add(kind: str, model: type[_Row], data: dict[str, Any], out: list[Any], place: str) -> None:
        parsed = _validate(model, data, place, problems)
        if parsed is None:
            return
        key = (kind, parsed.id)
        if key in seen:
            if seen[key] != parsed:
                problems.append(f"{place}: {kind[:-1]} {parsed.id} differs from its first row ({spec.where[key]})")
            return
        seen[key] = parsed
        spec.where[key] = place
        out.append(parsed)

    for row in reader:
        if None in row:
            problems.append(f"{source}:{reader.line_num}: more fields than columns")
            continue
        v = {k: (val.strip() if isinstance(val, str) else val) for k, val in row.items()}
        v = {k: val for k, val in v.items() if val not in ("", None)}
        place = f"{source}:{reader.line_num}"
        site = {"id": v.get("site_id"), "name": v.get("site_name", v.get("site_id")), "timezone": v.get("timezone", "UTC")}
        parsed_site = _validate(SiteRow, site, place, problems)
        if parsed_site is not None:
            if spec.site is None:
                spec.site = parsed_site
            elif spec.site.id != parsed_site.id:
                problems.append(f"{place}: site_id {parsed_site.id} differs from the first row's {spec.site.id}: one site per file")
        add("buildings", BuildingRow, {"id": v.get("building_id"), "name": v.get("building_name", v.get("building_id"))}, spec.buildings, place)
        floor = {"id": v.get("floor_id"), "building": v.get("building_id"), "level": v.get("floor_level"), "name": v.get("floor_name", v.get("floor_id"))}
        add("floors", FloorRow, floor, spec.floors, place)
        add(
            "rooms",
            RoomRow,
            {
                "id": v.get("room_id"),
                "floor": v.get("floor_id"),
                "name": v.get("room_name", v.get("room_id")),
                **({"area_m2": v["area_m2"]} if "area_m2" in v else {}),
            },
            spec.rooms,
            place,
        )
        if "meter_id" in v:
            meter = {
                "id": v["meter_id"],
                "room": v.get("room_id"),
                "building": v.get("building_id"),
                **{
                    k: v[k]
                    for k in (
                        "kind",
                        "role",
                        "profile",
                        "link",
                        "unit_id",
                        "address",
                        "circuit",
                        "multiplier",
                        "install_date",
                        "initial_reading",
                        "max_power_kw",
                        "parent",
                        "manual",
                        "formula",
                    )
                    if k in v
                },
            }
            if meter.get("role") in ("common", "utility", "virtual"):
                meter["room"] = None
            add("meters", MeterRow, meter, spec.meters, place)
    if problems:
        raise SiteImportError(problems)
    return spec


def parse_site_file(path: str | Path) -> SiteSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SiteImportError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise SiteImportError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    if path.suffix.lower() == ".csv":
        return parse_csv(text, str(path))
    if path.suffix.lower() == ".toml":
        return parse_toml(text, str(path))
    raise SiteImportError([f"{path}: expected a .toml or .csv file"])


def _row_values(obj: Any, names: Iterable[str]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


async def apply_site(
    db: Database,
    spec: SiteSpec,
    actor: Actor,
    *,
    known_links: set[str] | None = None,
    known_profiles: set[str] | None = None,
    reason: str = "",
) -> ImportResult:
    """Write the spec in one transaction; on any problem raise and commit nothing."""
    result = ImportResult()
    problems: list[str] = []

    def where(kind: str, ident: str) -> str:
        return spec.where.get((kind, ident), spec.source)

    for kind, rows in (
        ("buildings", spec.buildings),
        ("floors", spec.floors),
        ("rooms", spec.rooms),
        ("meters", spec.meters),
    ):
        for dup in sorted(i for i, n in Counter(r.id for r in rows).items() if n > 1):
            problems.append(f"{where(kind, dup)}: duplicate {kind[:-1]} id {dup!r}")

    async with db.transaction() as s:
        existing_site = await s.scalar(select(Site).order_by(Site.id).limit(1))
        site_id = spec.site.id if spec.site else (existing_site.id if existing_site else None)
        if site_id is None:
            problems.append(f"{spec.source}: no [site] and none in the database yet")
        building_ids = {b.id for b in spec.buildings} | set((await s.scalars(select(Building.id))).all())
        floor_building = {f.id: f.building for f in spec.floors}
        for f in (await s.scalars(select(Floor))).all():
            floor_building.setdefault(f.id, f.building_id)
        room_floor = {r.id: r.floor for r in spec.rooms}
        for r in (await s.scalars(select(Room))).all():
            room_floor.setdefault(r.id, r.floor_id)

        for f in spec.floors:
            if f.building not in building_ids:
                problems.append(f"{where('floors', f.id)}: building: unknown building {f.building!r}")
        for r in spec.rooms:
            if r.floor not in floor_building:
                problems.append(f"{where('rooms', r.id)}: floor: unknown floor {r.floor!r}")
        addresses: dict[tuple[str, int | str, int | None], str] = {}
        # a meter the database holds as replaced (or taken out) is history: it keeps no address
        # (its successor may use its unit id) and the file does not bring it back or change it
        history: set[str] = set()
        db_meters = {m.id: m for m in (await s.scalars(select(Meter))).all()}
        for m in db_meters.values():
            if m.active and not m.manual and m.role != "virtual":
                addresses[(m.link, m.address if m.address is not None else m.unit_id, m.circuit)] = m.id
            elif not m.active:
                history.add(m.id)
        kinds = {i: m.kind for i, m in db_meters.items()} | {m.id: m.kind for m in spec.meters}
        for m in spec.meters:
            place = where("meters", m.id)
            if m.id in history:
                continue
            if m.role == "tenant" and not m.room:
                problems.append(f"{place}: room: a tenant meter needs a room")
            if m.room and m.room not in room_floor:
                problems.append(f"{place}: room: unknown room {m.room!r}")
            if m.building and m.building not in building_ids:
                problems.append(f"{place}: building: unknown building {m.building!r}")
            if m.role != "tenant" and not m.building and not m.room:
                problems.append(f"{place}: building: a {m.role} meter needs a building or a room")
            problems.extend(f"{place}: {p}" for p in _meter_source_problems(m))
            if m.parent is not None:
                if m.parent == m.id:
                    problems.append(f"{place}: parent: a meter cannot be its own parent")
                elif m.parent not in kinds:
                    problems.append(f"{place}: parent: unknown meter {m.parent!r}")
                elif kinds[m.parent] != m.kind:
                    problems.append(f"{place}: parent: meter {m.parent} measures {kinds[m.parent]}, this one {m.kind}")
            if not m.polled:
                continue
            if known_links is not None and m.link not in known_links:
                problems.append(
                    f"{place}: link: unknown link {m.link!r} (configured: {', '.join(sorted(known_links)) or 'none'})"
                )
            if known_profiles is not None and m.profile not in known_profiles:
                problems.append(
                    f"{place}: profile: unknown device profile {m.profile!r} (known: {', '.join(sorted(known_profiles))})"
                )
            addr: tuple[str, int | str, int | None] = (m.link or "", m.address if m.address is not None else (m.unit_id or 1), m.circuit)
            other = addresses.get(addr)
            if other is not None and other != m.id:
                problems.append(
                    (f"{place}: address: link {m.link} address {m.address}" if m.address is not None
                     else f"{place}: unit_id: link {m.link} unit {m.unit_id or 1}")
                    + (f" circuit {m.circuit}" if m.circuit else "")
                    + f" is already used by meter {other}"
                )
            addresses[addr] = m.id
        problems.extend(_formula_problems(spec, db_meters, kinds, where))
        parent_rows = (await s.scalars(select(MeterParent))).all()
        tree = MeterTree(ParentChange(r.meter_id, r.parent_id, r.valid_from) for r in parent_rows)
        now = utcnow()
        parent_changes: list[tuple[ParentChange, str | None]] = []
        for m in spec.meters:
            if m.parent is None or m.parent == m.id:
                continue
            timeline = tree.timeline(m.id)
            before = tree.parent_at(m.id, now)
            if before == m.parent:
                continue
            change = ParentChange(m.id, m.parent, now if timeline else ALWAYS)
            parent_changes.append((change, before))
            tree = tree.with_change(change)
        loop = tree.loop() if parent_changes else None
        if loop is not None:
            problems.append(f"{spec.source}: parent: the parents make a loop: {' → '.join(loop)}")
        if problems:
            raise SiteImportError(problems)

        # one query per table, compared in memory: an import of thousands of meters must not
        # cost a round trip per row
        existing: dict[type[Any], dict[str, Any]] = {}
        for model in (Site, Building, Floor, Room, Meter):
            existing[model] = {o.id: o for o in (await s.scalars(select(model))).all()}

        def upsert(model: type[Any], kind: str, ident: str, values: dict[str, Any]) -> None:
            obj = existing[model].get(ident)
            if obj is None:
                obj = model(id=ident, **values)
                s.add(obj)
                existing[model][ident] = obj
                result.count("created", kind)
                AuditLog.record(s, actor, "site.import.create", kind, ident, reason=reason or spec.source, after=values)
                return
            before = _row_values(obj, values)
            # compare values, not their text: NUMERIC(12,3) gives back 30.500 for 30.5
            changed = {k for k in values if before[k] != values[k]}
            if not changed:
                result.count("unchanged", kind)
                return
            for k in changed:
                setattr(obj, k, values[k])
            result.count("updated", kind)
            AuditLog.record(
                s,
                actor,
                "site.import.update",
                kind,
                ident,
                reason=reason or spec.source,
                before={k: before[k] for k in changed},
                after={k: values[k] for k in changed},
            )

        # flush table by table: without relationship() the unit of work does not order
        # inserts by foreign key
        if spec.site is not None:
            upsert(Site, "site", spec.site.id, {"name": spec.site.name, "timezone": spec.site.timezone})
            await s.flush()
        for b in spec.buildings:
            upsert(Building, "building", b.id, {"site_id": site_id, "name": b.name})
        await s.flush()
        for f in spec.floors:
            upsert(Floor, "floor", f.id, {"building_id": f.building, "name": f.name, "level": f.level})
        await s.flush()
        for r in spec.rooms:
            upsert(Room, "room", r.id, {"floor_id": r.floor, "name": r.name, "area_m2": r.area_m2})
        await s.flush()
        for m in spec.meters:
            if m.id in history:
                result.count("unchanged", "meter")
                continue
            building = m.building or floor_building[room_floor[m.room]]  # type: ignore[index]
            upsert(
                Meter,
                "meter",
                m.id,
                {
                    "kind": m.kind,
                    "role": m.role,
                    "room_id": m.room,
                    "building_id": building,
                    # meters that are not polled keep no link, profile or unit id
                    "profile": m.profile if m.polled else "",
                    "link": m.link if m.polled else "",
                    "unit_id": (m.unit_id or 1) if m.polled else 0,
                    "address": m.address,
                    "circuit": m.circuit,
                    "multiplier": m.multiplier,
                    "install_date": m.install_date,
                    "initial_reading": m.initial_reading,
                    "max_power_kw": m.max_power_kw,
                    "manual": m.manual,
                    "formula": _canonical_formula(m.formula) if m.formula else None,
                },
            )
        await s.flush()
        for change, before in parent_changes:
            s.add(MeterParent(
                meter_id=change.meter_id, parent_id=change.parent_id, valid_from=change.valid_from,
                recorded_at=now, recorded_by=actor.name, reason=reason or spec.source,
            ))
            result.count("created" if before is None else "updated", "parent")
            AuditLog.record(
                s, actor, "site.import.parent", "meter", change.meter_id, reason=reason or spec.source,
                before={"parent": before}, after={"parent": change.parent_id, "from": change.valid_from},
            )
    return result


def _meter_source_problems(m: MeterRow) -> list[str]:
    """Where the meter's readings come from: polled (link, profile, unit_id), entered by hand
    (``manual``) or computed (``role = "virtual"`` with a ``formula``)."""
    out: list[str] = []
    if m.role == "virtual":
        if not m.formula:
            out.append("formula: a virtual meter needs a formula (e.g. \"E-1 + E-2 - C-1\")")
        if m.manual:
            out.append("manual: a virtual meter is computed, not read")
    elif m.formula:
        out.append("formula: only a virtual meter (role = \"virtual\") has a formula")
    if not m.polled:
        for key in ("link", "profile", "unit_id", "address", "circuit"):
            if getattr(m, key) is not None:
                why = "a manual meter has no communications" if m.manual else "a virtual meter is not polled"
                out.append(f"{key}: {why}")
        return out
    for key in ("profile", "link"):
        if getattr(m, key) is None:
            out.append(f"{key}: missing (a polled meter needs a profile and a link; set manual = true for one read by hand)")
    return out


def _canonical_formula(text: str) -> str:
    return format_formula(parse_formula(text))


def _formula_problems(
    spec: SiteSpec, db_meters: dict[str, Meter], kinds: dict[str, str], where: Any
) -> list[str]:
    problems: list[str] = []
    formulas: dict[str, tuple[Term, ...]] = {}
    for i, m in db_meters.items():
        if m.formula:
            try:
                formulas[i] = parse_formula(m.formula)
            except FormulaError:
                continue
    for m in spec.meters:
        formulas.pop(m.id, None)
        if not m.formula or m.role != "virtual":
            continue
        place = where("meters", m.id)
        try:
            terms = parse_formula(m.formula)
        except FormulaError as exc:
            problems.append(f"{place}: formula: {exc}")
            continue
        for t in terms:
            if t.meter_id not in kinds:
                problems.append(f"{place}: formula: unknown meter {t.meter_id!r}")
            elif kinds[t.meter_id] != m.kind:
                problems.append(f"{place}: formula: meter {t.meter_id} measures {kinds[t.meter_id]}, this one {m.kind}")
        formulas[m.id] = terms
    multipliers = {i: Decimal(1) for i in kinds}
    for m in spec.meters:
        if m.id in formulas:
            try:
                expand(m.id, formulas, multipliers)
            except FormulaError as exc:
                problems.append(f"{where('meters', m.id)}: formula: {exc}")
    return problems


async def import_site_file(db: Database, path: str | Path, actor: Actor, **kwargs: Any) -> ImportResult:
    return await apply_site(db, parse_site_file(path), actor, **kwargs)
