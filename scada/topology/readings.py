"""Readings entered by hand, for meters without communications (a utility's meter upstream of
the transformer, an old water meter).

A reading is judged against the meter's previous one before anything is stored:

- it must be newer than the previous reading (and not in the future);
- it must not go backwards, unless it is marked as a ``reset`` (the register was reset or the
  meter replaced: ``final`` is the old register's last value, ``initial`` the new one's start);
- the consumption it implies since the previous reading must be possible at the meter's
  ``max_power_kw`` (m³/h for water) times the billing's jump margin, like a polled reading's.

An accepted reading is stored with ``source = manual``, who entered it and why (and audited), and
written to the meter's register tag with its own time as the source timestamp: the historian,
the prepaid engine, the OPC UA server and the HMI take it exactly as they take a polled one.

A CSV import (``meter,ts,value[,reason,reset,final,initial]``) is judged whole: every bad row is
named (line, column, why) and, if there is any, nothing is stored; a dry run only judges.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from scada.core.inputs import check_time, quote
from scada.db import Database
from scada.prepaid.tariff_definition import decimal_input
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo
from scada.topology.models import ManualReading
from scada.topology.usage import UNIT_OF_KIND, point_of
from scada.users.audit import Actor, AuditLog
from tags import DataType, Quality, TagDB, TagMeta, utcnow
from tags.names import meter_tag

__all__ = [
    "ImportReport",
    "ManualReadings",
    "ReadingError",
    "ReadingInput",
    "ReadingView",
    "RowProblem",
    "judge",
    "parse_reading_time",
]

log = logging.getLogger(__name__)

READING_DECIMALS = 8
REASON_MAX = 500
CSV_COLUMNS = ("meter", "ts", "value", "reason", "reset", "final", "initial")


class ReadingError(Exception):
    """A reading refused: ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True, slots=True)
class ReadingInput:
    meter_id: str
    value: Decimal
    ts: dt.datetime
    reason: str = ""
    reset: bool = False
    final: Decimal | None = None
    initial: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReadingView:
    id: int
    meter_id: str
    ts: dt.datetime
    value: Decimal
    reset: bool
    final: Decimal | None
    initial: Decimal | None
    source: str
    reason: str
    entered_at: dt.datetime
    entered_by: str

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "meter": self.meter_id, "ts": self.ts.isoformat(), "value": _plain(self.value),
            "source": self.source, "reason": self.reason, "entered_at": self.entered_at.isoformat(),
            "entered_by": self.entered_by,
        }
        if self.reset:
            out["reset"] = True
            out["final"] = _plain(self.final) if self.final is not None else None
            out["initial"] = _plain(self.initial) if self.initial is not None else None
        return out


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    column: str
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "error": self.error}


@dataclass
class ImportReport:
    rows: int
    problems: list[RowProblem]
    stored: int = 0
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "valid": self.rows - len({p.line for p in self.problems}), "stored": self.stored,
            "dry_run": self.dry_run, "problems": [p.as_json() for p in self.problems],
        }


def _view(r: ManualReading) -> ReadingView:
    return ReadingView(r.id, r.meter_id, r.ts, r.value, r.reset, r.final, r.initial, r.source, r.reason, r.entered_at, r.entered_by)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f") if d != 0 else "0"


def judge(
    meter: MeterInfo,
    previous: tuple[Decimal, dt.datetime] | None,
    reading: ReadingInput,
    *,
    now: dt.datetime,
    margin: Decimal,
    future_tolerance_s: float = 300.0,
    step: Decimal = Decimal("0.01"),
) -> list[tuple[str, str]]:
    """What is wrong with ``reading`` after ``previous`` (value, time): ``[(field, why)]``."""
    problems: list[tuple[str, str]] = []
    ts = reading.ts
    if ts.tzinfo is None:
        return [("ts", "needs a UTC offset (e.g. 2026-11-01T08:00:00+08:00)")]
    if ts > now + dt.timedelta(seconds=future_tolerance_s):
        problems.append(("ts", f"{ts.isoformat()} is in the future"))
    if reading.reset:
        if reading.initial is not None and reading.value < reading.initial:
            problems.append(("value", f"{_plain(reading.value)} is below the new register's initial value {_plain(reading.initial)}"))
    elif reading.final is not None or reading.initial is not None:
        problems.append(("final" if reading.final is not None else "initial", "only a reset reading (\"reset\": true) has a final or initial value"))
    if previous is None:
        return problems
    last, last_ts = previous
    if ts <= last_ts:
        problems.append(("ts", f"must be after the meter's previous reading ({_plain(last)} at {last_ts.isoformat()})"))
        return problems
    if reading.reset:
        final = reading.final if reading.final is not None else last
        if final < last:
            problems.append(("final", f"the old register's last value {_plain(final)} is below the previous reading {_plain(last)}"))
            return problems
        consumed = (final - last) + (reading.value - (reading.initial or Decimal(0)))
    else:
        if reading.value < last:
            problems.append((
                "value",
                f"goes backwards from {_plain(last)} (at {last_ts.isoformat()}) to {_plain(reading.value)}: "
                "if the register was reset or the meter replaced, enter it as a reset (\"reset\": true)",
            ))
            return problems
        consumed = reading.value - last
    if meter.max_power_kw is not None and consumed > 0:
        elapsed = ts - last_ts
        micros = (elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds
        scale = Decimal(3_600_000_000)  # µs per hour: energy ≤ power × hours, compared exactly
        slack = 2 * step * scale  # a reading may be a register step or two ahead of its time
        if consumed * meter.multiplier * scale > meter.max_power_kw * margin * micros + slack:
            hours = Decimal(micros) / scale
            rate = (consumed * meter.multiplier / hours) if hours > 0 else consumed
            unit = "m³/h" if meter.kind == "water" else "kW"
            problems.append((
                "value",
                f"implies {rate:.3f} {unit} on average over {hours:.2f} h since the previous reading "
                f"({_plain(last)} at {last_ts.isoformat()}), more than the meter's maximum "
                f"{_plain(meter.max_power_kw)} {unit}" + (f" × margin {_plain(margin)}" if margin != 1 else ""),
            ))
    return problems


_NAIVE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


def parse_reading_time(text: str, tz: ZoneInfo) -> dt.datetime:
    """ISO 8601 with an offset; a time without one (``2026-11-01 08:00``) or a date is site time.
    Within 1970 to 2200 (:func:`scada.core.inputs.check_time`)."""
    raw = text.strip()
    if len(raw) > 40 or not raw.isascii():
        raise ValueError(f"{quote(raw)} is not a time (ISO 8601, e.g. 2026-11-01T08:00:00+08:00 or 2026-11-01 08:00)")
    try:
        if _NAIVE.match(raw):
            if len(raw) == 10:
                ts = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), tz)
            else:
                ts = dt.datetime.fromisoformat(raw).replace(tzinfo=tz)
        else:
            ts = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{quote(raw)} is not a time (ISO 8601, e.g. 2026-11-01T08:00:00+08:00 or 2026-11-01 08:00)") from None
    if ts.tzinfo is None:
        raise ValueError(f"{quote(raw)} has no UTC offset")
    return check_time(ts)


class ManualReadings:
    """Enters, imports and publishes the readings of meters read by hand."""

    def __init__(
        self,
        db: Database,
        assets: AssetRegistry,
        tagdb: TagDB,
        *,
        tz: ZoneInfo,
        margin: Decimal = Decimal(1),
        future_tolerance_s: float = 300.0,
        max_rows: int = 10_000,
        step: Decimal = Decimal("0.01"),
        clock: Callable[[], dt.datetime] = utcnow,
        changed: Callable[[str], None] = lambda _meter: None,
    ) -> None:
        self.db = db
        self.assets = assets
        self.tagdb = tagdb
        self.tz = tz
        self.margin = margin
        self.future_tolerance_s = future_tolerance_s
        self.max_rows = max_rows
        self.step = step
        self.clock = clock
        self.changed = changed  # told after readings of a meter were stored
        self._lock = asyncio.Lock()

    # -- tags ----------------------------------------------------------------------------------
    def register_tags(self, snapshot: AssetSnapshot) -> None:
        """The register tag of every active manual meter (the poller registers the others')."""
        for m in snapshot.meters.values():
            if not (m.manual and m.active):
                continue
            point = point_of(m.kind)
            self.tagdb.register(TagMeta(
                meter_tag(m.id, point), DataType.FLOAT, unit=UNIT_OF_KIND.get(m.kind, ""),
                description="cumulative register, read by hand", meter_id=m.id, room_id=m.room_id, point=point,
            ))

    async def publish_latest(self) -> None:
        """Write each manual meter's newest reading to its tag (after a start)."""
        snap = self.assets.snapshot
        manual = [m.id for m in snap.meters.values() if m.manual and m.active]
        if not manual:
            return
        async with self.db.reads() as s:
            newest = (
                select(ManualReading.meter_id, func.max(ManualReading.ts).label("ts"))
                .where(ManualReading.meter_id.in_(manual)).group_by(ManualReading.meter_id).subquery()
            )
            rows = (await s.scalars(
                select(ManualReading).join(newest, (ManualReading.meter_id == newest.c.meter_id) & (ManualReading.ts == newest.c.ts))
            )).all()
        for r in rows:
            self._publish(snap.meters[r.meter_id], r.value, r.ts)

    def _publish(self, meter: MeterInfo, value: Decimal, ts: dt.datetime) -> None:
        name = meter_tag(meter.id, point_of(meter.kind))
        if name not in self.tagdb:
            self.register_tags(self.assets.snapshot)
        # the float's shortest repr is the reading as entered (≤ 15 significant digits): the
        # consumers read it back exactly with Decimal(str(value)), as they do the poller's
        self.tagdb.write(name, float(value), Quality.GOOD, detail="source=manual", source_ts=ts)

    # -- reads -----------------------------------------------------------------------------------
    async def latest(self, meter_id: str) -> ReadingView | None:
        async with self.db.reads() as s:
            r = await s.scalar(
                select(ManualReading).where(ManualReading.meter_id == meter_id).order_by(ManualReading.ts.desc()).limit(1)
            )
        return _view(r) if r is not None else None

    async def readings(
        self, meter_id: str, *, start: dt.datetime | None = None, end: dt.datetime | None = None, limit: int = 100
    ) -> list[ReadingView]:
        q = select(ManualReading).where(ManualReading.meter_id == meter_id)
        if start is not None:
            q = q.where(ManualReading.ts >= start)
        if end is not None:
            q = q.where(ManualReading.ts < end)
        async with self.db.reads() as s:
            rows = (await s.scalars(q.order_by(ManualReading.ts.desc()).limit(limit))).all()
        return [_view(r) for r in rows]

    # -- entering ----------------------------------------------------------------------------------
    def meter(self, meter_id: str, *, field: str = "meter") -> MeterInfo:
        m = self.assets.snapshot.meters.get(meter_id)
        if m is None:
            raise ReadingError(f"unknown meter {meter_id!r}", field=field, status=404 if field == "meter" else 422)
        if not m.active:
            raise ReadingError(f"meter {meter_id} is not active (replaced by {m.replaced_by})" if m.replaced_by
                               else f"meter {meter_id} is not active", field=field, status=409)
        if m.role == "virtual":
            raise ReadingError(f"meter {meter_id} is virtual: it is computed from its formula, not read", field=field, status=409)
        if not m.manual:
            raise ReadingError(
                f"meter {meter_id} is polled (link {m.link}): its readings come from its communications; "
                "only a meter read by hand (manual = true) takes manual readings", field=field, status=409,
            )
        return m

    async def enter(self, reading: ReadingInput, actor: Actor) -> ReadingView:
        """Judge, store (audited) and publish one reading; a :class:`ReadingError` says why not."""
        meter = self.meter(reading.meter_id)
        if len(reading.reason) > REASON_MAX:
            raise ReadingError(f"at most {REASON_MAX} characters", field="reason")
        async with self._lock:
            async with self.db.transaction() as s:
                last = await s.scalar(
                    select(ManualReading).where(ManualReading.meter_id == meter.id).order_by(ManualReading.ts.desc()).limit(1)
                )
                previous = (last.value, last.ts) if last is not None else None
                problems = judge(meter, previous, reading, now=self.clock(), margin=self.margin,
                                 future_tolerance_s=self.future_tolerance_s, step=self.step)
                if problems:
                    field, why = problems[0]
                    raise ReadingError(f"{field}: {why}", field=field)
                row = self._row(reading, actor)
                s.add(row)
                try:
                    await s.flush()
                except IntegrityError:
                    raise ReadingError("ts: the meter has a reading at this time already", field="ts", status=409) from None
                AuditLog.record(
                    s, actor, "meter.reading", "meter", meter.id, reason=reading.reason,
                    before={"value": _plain(previous[0]), "ts": previous[1]} if previous else None,
                    after=self._audit_after(reading),
                )
                view = _view(row)
            self._publish(meter, reading.value, reading.ts)
        self.changed(meter.id)
        log.info("manual reading", extra={"meter": meter.id, "value": format(reading.value, "f"), "ts": reading.ts.isoformat(),
                                          "by": actor.name})
        return view

    def _row(self, reading: ReadingInput, actor: Actor) -> ManualReading:
        return ManualReading(
            meter_id=reading.meter_id, ts=reading.ts, value=reading.value, reset=reading.reset,
            final=reading.final if reading.reset else None, initial=reading.initial if reading.reset else None,
            source="manual", reason=reading.reason, entered_at=self.clock(), entered_by=actor.name,
        )

    @staticmethod
    def _audit_after(reading: ReadingInput) -> dict[str, Any]:
        after: dict[str, Any] = {"value": reading.value, "ts": reading.ts, "source": "manual"}
        if reading.reset:
            after.update(reset=True, final=reading.final, initial=reading.initial)
        return after

    # -- CSV import --------------------------------------------------------------------------------
    def parse_csv(self, text: str) -> tuple[list[tuple[int, ReadingInput]], list[RowProblem], int]:
        """Rows that parse, every problem found, and the number of data rows."""
        problems: list[RowProblem] = []
        rows: list[tuple[int, ReadingInput]] = []
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        unknown = [h for h in header if h not in CSV_COLUMNS]
        missing = [h for h in ("meter", "ts", "value") if h not in header]
        if unknown or missing or not header:
            for h in unknown:
                problems.append(RowProblem(1, h, f"unknown column (columns: {', '.join(CSV_COLUMNS)})"))
            for h in missing:
                problems.append(RowProblem(1, h, "missing column"))
            return rows, problems, 0
        count = 0
        for raw in reader:
            count += 1
            line = reader.line_num
            if count > self.max_rows:
                problems.append(RowProblem(line, "", f"more than {self.max_rows} rows: split the file"))
                break
            if None in raw:
                problems.append(RowProblem(line, "", "more fields than columns"))
                continue
            v = {k: (raw.get(k) or "").strip() for k in header}
            row_problems: list[RowProblem] = []

            def bad(column: str, error: str, line: int = line, row_problems: list[RowProblem] = row_problems) -> None:
                row_problems.append(RowProblem(line, column, error))

            meter_id = v.get("meter", "")
            if not meter_id:
                bad("meter", "missing")
            else:
                try:
                    self.meter(meter_id, field="meter")
                except ReadingError as exc:
                    bad("meter", exc.message)
            ts: dt.datetime | None = None
            if not v.get("ts"):
                bad("ts", "missing")
            else:
                try:
                    ts = parse_reading_time(v["ts"], self.tz)
                except ValueError as exc:
                    bad("ts", str(exc))
            numbers: dict[str, Decimal | None] = {}
            for column in ("value", "final", "initial"):
                text_value = v.get(column, "")
                if not text_value:
                    if column == "value":
                        bad("value", "missing")
                    numbers[column] = None
                    continue
                try:
                    numbers[column] = decimal_input(text_value, decimals=READING_DECIMALS, what="reading")
                except ValueError as exc:
                    bad(column, str(exc))
                    numbers[column] = None
            reset_text = v.get("reset", "").lower()
            if reset_text not in ("", "true", "false", "yes", "no", "1", "0"):
                bad("reset", f"expected true or false, found {v.get('reset')!r}")
            reason = v.get("reason", "")
            if len(reason) > REASON_MAX:
                bad("reason", f"at most {REASON_MAX} characters")
            problems.extend(row_problems)
            if row_problems or ts is None or numbers["value"] is None:
                continue
            rows.append((line, ReadingInput(
                meter_id, numbers["value"], ts, reason, reset_text in ("true", "yes", "1"), numbers["final"], numbers["initial"],
            )))
        return rows, problems, count

    async def import_csv(self, text: str, actor: Actor, *, dry_run: bool, reason: str = "") -> ImportReport:
        """Judge every row; store them all (in one transaction, audited) only when none is bad."""
        rows, problems, count = self.parse_csv(text)
        async with self._lock:
            async with self.db.transaction() as s:
                by_meter: dict[str, list[tuple[int, ReadingInput]]] = {}
                for line, r in rows:
                    by_meter.setdefault(r.meter_id, []).append((line, r))
                now = self.clock()
                for meter_id, items in sorted(by_meter.items()):
                    meter = self.assets.snapshot.meters[meter_id]
                    last = await s.scalar(
                        select(ManualReading).where(ManualReading.meter_id == meter_id).order_by(ManualReading.ts.desc()).limit(1)
                    )
                    previous = (last.value, last.ts) if last is not None else None
                    seen: dict[dt.datetime, int] = {}
                    for line, r in sorted(items, key=lambda x: (x[1].ts, x[0])):
                        if r.ts in seen:
                            problems.append(RowProblem(line, "ts", f"line {seen[r.ts]} has a reading of {meter_id} at the same time"))
                            continue
                        seen[r.ts] = line
                        for field, why in judge(meter, previous, r, now=now, margin=self.margin,
                                                future_tolerance_s=self.future_tolerance_s, step=self.step):
                            problems.append(RowProblem(line, field, why))
                        previous = (r.value, r.ts)
                problems.sort(key=lambda p: (p.line, CSV_COLUMNS.index(p.column) if p.column in CSV_COLUMNS else -1))
                report = ImportReport(count, problems, dry_run=dry_run)
                if dry_run or problems or not rows:
                    return report
                ordered = sorted(rows, key=lambda x: (x[1].ts, x[1].meter_id))
                for _line, r in ordered:
                    row_reason = r.reason or reason
                    s.add(self._row(ReadingInput(r.meter_id, r.value, r.ts, row_reason, r.reset, r.final, r.initial), actor))
                AuditLog.record(
                    s, actor, "meter.reading.import", "meter", ",".join(sorted(by_meter))[:200], reason=reason,
                    after={"rows": len(rows), "meters": sorted(by_meter)},
                )
                report.stored = len(rows)
            snap = self.assets.snapshot
            for _line, r in ordered:
                self._publish(snap.meters[r.meter_id], r.value, r.ts)
        for meter_id in by_meter:
            self.changed(meter_id)
        log.info("manual readings imported", extra={"rows": len(rows), "meters": len(by_meter), "by": actor.name})
        return report
