"""The meter topology as one service (``ctx[TOPOLOGY]``): the tree, manual readings, virtual
meters, losses and apportionment, for the HMI's API and pages."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from protocols.modbus.profile import ProfileLibrary
from scada.config import ScadaConfig
from scada.core.context import Key
from scada.db import Database
from scada.history.service import HistoryService
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.money import Rounding
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo
from scada.site.tree import ParentChange
from scada.topology.apportion import Apportionment, ApportionmentError, period_bounds
from scada.topology.config import hhmm
from scada.topology.losses import LOSS_PCT_POINT, LossRow, compute_losses, loss_records
from scada.topology.readings import ManualReadings
from scada.topology.usage import Span, Usage, UsageSource, point_of
from scada.users.audit import Actor
from tags import DataType, Quality, QualityReason, TagDB, TagMeta, utcnow
from tags.names import meter_tag

__all__ = ["TOPOLOGY", "Topology", "meter_state"]

log = logging.getLogger(__name__)


def meter_state(meter: MeterInfo, tagdb: TagDB, device_state: Callable[[str], str | None] | None = None) -> str:
    """``inactive``, ``virtual``, ``manual``, or a polled meter's ``online`` / ``offline`` /
    ``unknown`` / ``config_error``."""
    if not meter.active:
        return "inactive"
    if meter.role == "virtual":
        return "virtual"
    if meter.manual:
        return "manual"
    if device_state is not None:
        state = device_state(meter.id)
        if state is not None:
            return state
    comm = tagdb.get(meter_tag(meter.id, "comm_ok"))
    if comm is None or comm.quality is not Quality.GOOD:
        return "unknown"
    return "online" if comm.value is True else "offline"


class Topology:
    """The meter topology as one service: the tree, manual readings, virtual meters, losses and apportionment."""

    def __init__(
        self,
        config: ScadaConfig,
        db: Database,
        assets: AssetRegistry,
        tagdb: TagDB,
        *,
        profiles: ProfileLibrary | None = None,
        history: Callable[[], HistoryService | None] = lambda: None,
        prepaid: Callable[[], PrepaidEngine | None] = lambda: None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.cfg = config.topology
        self.db = db
        self.assets = assets
        self.tagdb = tagdb
        self.tz = config.site.tz
        self._history = history
        self.clock = clock
        self._steps: dict[str, Decimal] = {}
        self._profiles = profiles
        self.losses_done: dt.date | None = None  # the last day whose losses were stored
        self.readings = ManualReadings(
            db, assets, tagdb, tz=self.tz, margin=config.prepaid.jump_margin,
            future_tolerance_s=self.cfg.future_tolerance_s, max_rows=self.cfg.max_import_rows,
            step=self.cfg.manual_resolution, clock=lambda: self.clock(),
        )
        self.minor_units = config.site.currency_minor_units
        self.apportionment = Apportionment(
            db, lambda: self.snapshot, self.usage_source, tz=self.tz,
            rounding=Rounding(self.minor_units, config.prepaid.rounding), engine=prepaid, clock=lambda: self.clock(),
        )
        self._run_failures: dict[tuple[int, str], dt.datetime] = {}  # (rule, period) → retry after

    @property
    def history(self) -> HistoryService | None:
        return self._history()

    @property
    def snapshot(self) -> AssetSnapshot:
        return self.assets.snapshot

    # -- meters ----------------------------------------------------------------------------------
    def step_of(self, meter: MeterInfo) -> Decimal:
        """A polled meter's register step from its profile (the point's scale)."""
        if meter.id in self._steps:
            return self._steps[meter.id]
        step = self.cfg.manual_resolution
        if meter.polled and self._profiles is not None:
            profile = self._profiles.get(meter.profile)
            point = profile.points.get(point_of(meter.kind)) if profile is not None else None
            if point is not None:
                step = Decimal(repr(point.scale)).normalize()
        self._steps[meter.id] = step
        return step

    def usage_source(self) -> UsageSource:
        """A consumption source over the registry's current snapshot (one per request: it caches
        the manual readings it loads)."""
        snap = self.snapshot
        steps = {m.id: self.step_of(m) for m in snap.meters.values() if m.polled}
        return UsageSource(self.db, snap, self.history, resolution=steps, manual_resolution=self.cfg.manual_resolution)

    async def usage(self, meter_id: str, start: dt.datetime, end: dt.datetime) -> Usage:
        return (await self.usage_source().usage([Span(meter_id, start, end)]))[0]

    def meters_json(
        self, meters: list[MeterInfo], device_state: Callable[[str], str | None] | None = None
    ) -> list[dict[str, Any]]:
        """Meters as ``GET /api/v1/meters`` lists them (the tree is read once for all)."""
        snap = self.snapshot
        now = self.clock()
        parents = snap.tree.parents_at(now)
        children: dict[str, list[str]] = {}
        for child, parent in parents.items():
            children.setdefault(parent, []).append(child)
        out = []
        for meter in meters:
            since = None
            if meter.id in parents:
                current = [c for c in snap.tree.timeline(meter.id) if c.valid_from <= now]
                since = current[-1].valid_from.isoformat() if current else None
            reading = None
            if meter.active:
                tv = self.tagdb.get(meter_tag(meter.id, point_of(meter.kind)))
                if tv is not None and isinstance(tv.value, (int, float)) and not isinstance(tv.value, bool):
                    value = Decimal(str(tv.value)).normalize()  # the register as read: a decimal string
                    reading = {
                        "value": format(value, "f") if value else "0", "ts": tv.source_ts.isoformat(),
                        "quality": tv.quality.name.lower(),
                    }
            out.append({
                "id": meter.id,
                "kind": meter.kind,
                "role": meter.role,
                "room": meter.room_id,
                "building": meter.building_id,
                "parent": parents.get(meter.id),
                "parent_since": since,
                "children": sorted(children.get(meter.id, [])),
                "state": meter_state(meter, self.tagdb, device_state),
                "manual": meter.manual,
                "formula": meter.formula,
                "multiplier": format(meter.multiplier, "f"),
                "max_power_kw": format(meter.max_power_kw, "f") if meter.max_power_kw is not None else None,
                "active": meter.active,
                "replaced_by": meter.replaced_by,
                "reading": reading,
            })
        return out

    def meter_json(self, meter: MeterInfo, device_state: Callable[[str], str | None] | None = None) -> dict[str, Any]:
        """One meter as ``GET /api/v1/meters`` lists it."""
        return self.meters_json([meter], device_state)[0]

    # -- losses ----------------------------------------------------------------------------------
    async def losses(self, start: dt.datetime, end: dt.datetime, meter: str | None = None) -> list[LossRow]:
        """Losses of every meter with children during ``[start, end)`` (or of ``meter``)."""
        return await compute_losses(self.usage_source(), self.snapshot, start, end, [meter] if meter else None)

    async def losses_by_day(self, first: dt.date, last: dt.date, meter: str | None = None) -> list[LossRow]:
        """Losses of each local day from ``first`` to ``last`` (inclusive)."""
        source = self.usage_source()
        out: list[LossRow] = []
        day = first
        while day <= last:
            start, end = self.day_bounds(day)
            out.extend(await compute_losses(source, self.snapshot, start, end, [meter] if meter else None))
            day += dt.timedelta(days=1)
        return out

    def day_bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        return (dt.datetime.combine(day, dt.time(), self.tz).astimezone(dt.UTC),
                dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz).astimezone(dt.UTC))

    def losses_due_day(self, now: dt.datetime | None = None) -> dt.date:
        """The last local day whose losses are due (yesterday after ``losses_at``, else the day before)."""
        local = (now or self.clock()).astimezone(self.tz)
        hour, minute = (int(x) for x in self.cfg.losses_at.split(":"))
        yesterday = local.date() - dt.timedelta(days=1)
        return yesterday if (local.hour, local.minute) >= (hour, minute) else yesterday - dt.timedelta(days=1)

    async def store_day_losses(self, day: dt.date) -> list[LossRow]:
        """Compute one day's losses, publish each parent's ``loss_pct`` (good when measured,
        uncertain when interpolated between manual readings, bad when unknown) and store the
        losses as day rollups of ``loss:<meter>`` in the historian."""
        start, end = self.day_bounds(day)
        rows = await self.losses(start, end)
        for row in rows:
            name = meter_tag(row.meter_id, LOSS_PCT_POINT)
            if name not in self.tagdb:
                info = self.snapshot.meters.get(row.meter_id)
                self.tagdb.register(TagMeta(
                    name, DataType.FLOAT, unit="%", description="loss over the last whole day (consumption minus its children's)",
                    meter_id=row.meter_id, room_id=info.room_id if info else None, point=LOSS_PCT_POINT,
                ))
            pct = row.loss_pct
            detail = f"day {day.isoformat()}"
            if pct is None:
                self.tagdb.write(name, None, Quality.BAD, QualityReason.NO_VALUE, detail=f"{detail}: " + "; ".join(row.notes())[:200],
                                 source_ts=end)
            elif row.estimated:
                self.tagdb.write(name, float(pct), Quality.UNCERTAIN, QualityReason.NONE,
                                 detail=f"{detail}: estimated between manual readings", source_ts=end)
            else:
                self.tagdb.write(name, float(pct), Quality.GOOD, detail=detail, source_ts=end)
        history = self.history
        if history is not None:
            records = loss_records(rows, int(start.timestamp()), int((end - start).total_seconds()))
            await history.historian.store_days(records)
        log.info("daily losses", extra={"day": day.isoformat(), "parents": len(rows),
                                        "known": sum(1 for r in rows if r.known)})
        return rows

    async def tick(self) -> None:
        """Periodic work: the last due day's losses once; the rules' due periods."""
        due = self.losses_due_day()
        if self.losses_done is None or self.losses_done < due:
            await self.store_day_losses(due)
            self.losses_done = due
        if self.cfg.apportionment.auto_run:
            await self.run_due_apportionments()

    async def run_due_apportionments(self) -> int:
        """Run every active rule's last ended period, once, as the system (a rule created after
        a period ended does not run it; a run that cannot be done is retried later)."""
        now = self.clock()
        run_at = hhmm(self.cfg.apportionment.run_at)
        done = 0
        for rule in await self.apportionment.rules():
            if not rule.active:
                continue
            period = self.apportionment.due_period(rule.spec.schedule, now, run_at)
            key = (rule.id, period)
            retry = self._run_failures.get(key)
            if retry is not None and now < retry:
                continue
            _start, end = period_bounds(period, rule.spec.schedule, self.tz)
            if end <= rule.created_at:
                continue
            try:
                result = await self.apportionment.run(rule.id, period, Actor.system("apportionment"))
            except ApportionmentError as exc:
                if key not in self._run_failures:
                    log.warning("apportionment run not done", extra={"rule": rule.id, "period": period, "error": exc.message})
                self._run_failures[key] = now + dt.timedelta(seconds=self.cfg.apportionment.retry_s)
                continue
            self._run_failures.pop(key, None)
            done += 0 if result.replayed else 1
        return done

    async def set_parent(
        self, meter_id: str, parent_id: str | None, actor: Actor, *, valid_from: dt.datetime | None = None, reason: str = ""
    ) -> ParentChange | None:
        return await self.assets.set_parent(meter_id, parent_id, actor, valid_from=valid_from, reason=reason)


TOPOLOGY: Key[Topology] = Key("topology", Topology)
