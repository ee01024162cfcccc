"""Apportionment: a common meter's consumption (or a parent's loss) shared among rooms.

A rule names its ``source`` (a meter id, or ``loss:<meter>``), its ``method`` (by the targets'
own ``consumption`` in the period, by ``area``, ``equal``\\ ly, or by fixed ``ratio`` weights),
its targets (rooms, a floor or a building), its ``pricing`` (each target's own tariff, or one
price) and how shares are settled: ``balance`` (a ledger entry of kind ``apportionment``) or
``bill`` (a share pending until the back office's billing run of its month, or a later one,
posts it as the same kind of entry on the bill: :meth:`Apportionment.post_pending`, registered
with the billing service as a :class:`scada.billing.context.PendingLines`). A share of an
account closed before the run waits for its bill the same way.

Who shares is an account: a room shares through the account(s) it had during the period, each
pro rata to the days it was open (a vacant room, or one closed mid-period, shares less; a room
with no account in the period shares nothing and its part goes to the others); by consumption,
an account's weight is the room's consumption while it was open. Quantities and amounts are
split with the largest-remainder method (:mod:`scada.topology.shares`): the shares add up to
the source's quantity in its register steps and to the priced total to the minor unit.

A run posts a period once: ``(rule, period)`` is unique, each share's ledger entry is keyed
``apportionment:<rule>:<period>:<account>``; running it again answers the first run.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scada.db import Database
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import Rounding, format_minor
from scada.prepaid.pricing import TariffTimeline, price_consumption
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import AssetSnapshot
from scada.topology.losses import LOSS_PREFIX, compute_losses
from scada.topology.models import ApportionmentRule, ApportionmentRun, ApportionmentShare
from scada.topology.shares import Party, Split, split
from scada.topology.usage import UNIT_OF_KIND, Span, Usage, UsageSource
from scada.users.audit import Actor, AuditLog

__all__ = [
    "METHODS",
    "Apportionment",
    "ApportionmentError",
    "PendingLine",
    "Preview",
    "RuleSpec",
    "RunResult",
    "days_open",
    "period_bounds",
]

log = logging.getLogger(__name__)

METHODS = ("consumption", "area", "equal", "ratio")
Method = Literal["consumption", "area", "equal", "ratio"]
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class ApportionmentError(Exception):
    """A rule, preview or run refused; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class RuleSpec:
    name: str
    source: str
    method: Method
    targets: dict[str, Any]  # {"rooms": [...]} | {"floor": id} | {"building": id}
    weights: dict[str, Decimal] | None
    pricing: Literal["tariff"] | Decimal  # "tariff" or a price per unit
    settle: Literal["balance", "bill"]
    schedule: Literal["monthly", "daily"]


@dataclass(frozen=True)
class RuleView:
    id: int
    spec: RuleSpec
    active: bool
    created_at: dt.datetime
    created_by: str

    def as_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "id": self.id, "name": s.name, "source": s.source, "method": s.method, "targets": s.targets,
            "weights": {k: format(v, "f") for k, v in s.weights.items()} if s.weights else None,
            "pricing": "tariff" if s.pricing == "tariff" else {"price": format(s.pricing, "f")},
            "settle": s.settle, "schedule": s.schedule, "active": self.active,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
        }


def _rule_view(r: ApportionmentRule) -> RuleView:
    pricing: Literal["tariff"] | Decimal = "tariff" if r.pricing == "tariff" else Decimal(r.pricing["price"])
    weights = {k: Decimal(v) for k, v in r.weights.items()} if r.weights else None
    spec = RuleSpec(r.name, r.source, r.method, dict(r.targets), weights, pricing, r.settle, r.schedule)  # type: ignore[arg-type]
    return RuleView(r.id, spec, r.active, r.created_at, r.created_by)


def period_bounds(period: str, schedule: str, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """``"2026-11"`` (monthly) or ``"2026-11-05"`` (daily) → its local midnights, as UTC."""
    try:
        if schedule == "monthly":
            m = _MONTH.match(period)
            if not m:
                raise ValueError
            first = dt.date(int(m.group(1)), int(m.group(2)), 1)
            following = (first + dt.timedelta(days=32)).replace(day=1)
        else:
            if not _DAY.match(period):
                raise ValueError
            first = dt.date.fromisoformat(period)
            following = first + dt.timedelta(days=1)
    except ValueError:
        example = "2026-11" if schedule == "monthly" else "2026-11-05"
        raise ApportionmentError(f"period: a {schedule} rule runs for a period like {example}, found {period!r}", field="period") from None
    return (dt.datetime.combine(first, dt.time(), tz).astimezone(dt.UTC),
            dt.datetime.combine(following, dt.time(), tz).astimezone(dt.UTC))


def period_of(day: dt.date, schedule: str) -> str:
    return day.strftime("%Y-%m") if schedule == "monthly" else day.isoformat()


def days_open(opened: dt.datetime, closed: dt.datetime | None, start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> tuple[int, int]:
    """(days the account was open, days of the period), in local calendar days: the day it
    opened counts, the day it closed does not (so a successor opened that day takes it)."""
    first = start.astimezone(tz).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(tz).date()  # the period's last day
    days = (last - first).days + 1
    open_day = opened.astimezone(tz).date()
    close_day = closed.astimezone(tz).date() if closed is not None else last + dt.timedelta(days=1)
    lo, hi = max(first, open_day), min(last + dt.timedelta(days=1), close_day)
    return max(0, (hi - lo).days), days


@dataclass(frozen=True)
class Preview:
    rule: RuleView
    start: dt.datetime
    end: dt.datetime
    kind: str
    source: Usage
    split: Split
    vacant: tuple[str, ...]
    days: int
    price: Decimal | None
    notes: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return UNIT_OF_KIND.get(self.kind, "")

    def as_json(self, minor_units: int, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "name": self.rule.spec.name,
            "from": self.start.astimezone(tz).isoformat(),
            "to": self.end.astimezone(tz).isoformat(),
            "source": self.rule.spec.source,
            "method": self.rule.spec.method,
            "unit": self.unit,
            "quantity": format(self.split.quantity, "f"),
            "pricing": "tariff" if self.price is None else {"price": format(self.price, "f")},
            "cost": format(self.split.cost, "f"),
            "total": format_minor(self.split.total_minor, minor_units),
            "estimated": self.source.estimated,
            "coverage": {"intervals": self.source.intervals, "expected": self.source.expected},
            "days": self.days,
            "shares": [
                {
                    "room": s.party.room_id, "account": s.party.account_id, "quantity": format(s.quantity, "f"),
                    "amount": format_minor(s.amount_minor, minor_units), "cost": format(s.cost, "f"),
                    "key": s.party.key, "days_open": s.party.days_open,
                }
                for s in self.split.shares
            ],
            "vacant": list(self.vacant),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunResult:
    run_id: int
    rule_id: int
    period: str
    replayed: bool
    detail: dict[str, Any]


@dataclass(frozen=True)
class PendingLine:
    """A share waiting for a bill (``settle = "bill"``, or a share of an account closed before
    the run): the billing run posts it with :meth:`Apportionment.post_pending`."""

    id: int
    rule_id: int
    rule_name: str
    period: str
    room_id: str
    account_id: int
    quantity: Decimal
    unit: str
    amount_minor: int
    description: str
    key: dict[str, Any] = field(default_factory=dict)


class Apportionment:
    def __init__(
        self,
        db: Database,
        snapshot: Callable[[], AssetSnapshot],
        usage_source: Callable[[], UsageSource],
        *,
        tz: ZoneInfo,
        rounding: Rounding,
        engine: Callable[[], PrepaidEngine | None] = lambda: None,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.db = db
        self._snapshot = snapshot
        self._usage_source = usage_source
        self.tz = tz
        self.rounding = rounding
        self._engine = engine
        self.clock = clock
        self.tariffs = TariffStore(db)

    @property
    def snapshot(self) -> AssetSnapshot:
        return self._snapshot()

    @property
    def engine(self) -> PrepaidEngine | None:
        return self._engine()

    # -- rules ---------------------------------------------------------------------------------
    def check(self, spec: RuleSpec) -> None:
        """Refuse a rule naming what does not exist or does not fit (field-named errors)."""
        snap = self.snapshot
        source = spec.source[len(LOSS_PREFIX):] if spec.source.startswith(LOSS_PREFIX) else spec.source
        if source not in snap.meters:
            raise ApportionmentError(f"source: unknown meter {source!r} (a meter id, or loss:<meter id>)", field="source")
        rooms = self.target_rooms(spec.targets)
        if not rooms:
            raise ApportionmentError("targets: names no room", field="targets")
        if spec.method == "area":
            missing = [r for r in rooms if snap.rooms[r].area_m2 is None]
            if missing:
                raise ApportionmentError(f"targets: rooms without area_m2 cannot share by area: {', '.join(missing[:20])}", field="targets")
        if spec.method == "ratio":
            if not spec.weights:
                raise ApportionmentError("weights: the ratio method needs a weight per target room", field="weights")
            unknown = sorted(set(spec.weights) - set(rooms))
            if unknown:
                raise ApportionmentError(f"weights: not target rooms: {', '.join(unknown[:20])}", field="weights")
            missing = [r for r in rooms if r not in spec.weights]
            if missing:
                raise ApportionmentError(f"weights: no weight for {', '.join(missing[:20])}", field="weights")
            if not any(w > 0 for w in spec.weights.values()):
                raise ApportionmentError("weights: at least one weight must be above zero", field="weights")
        elif spec.weights:
            raise ApportionmentError("weights: only the ratio method takes weights", field="weights")

    def target_rooms(self, targets: dict[str, Any]) -> list[str]:
        snap = self.snapshot
        if "rooms" in targets:
            rooms = list(targets["rooms"])
            unknown = [r for r in rooms if r not in snap.rooms]
            if unknown:
                raise ApportionmentError(f"targets.rooms: unknown room(s) {', '.join(unknown[:20])}", field="targets.rooms")
            return sorted(set(rooms))
        if "floor" in targets:
            if targets["floor"] not in snap.floors:
                raise ApportionmentError(f"targets.floor: unknown floor {targets['floor']!r}", field="targets.floor")
            return sorted(r.id for r in snap.rooms_on_floor(targets["floor"]))
        if "building" in targets:
            if targets["building"] not in snap.buildings:
                raise ApportionmentError(f"targets.building: unknown building {targets['building']!r}", field="targets.building")
            return sorted(r.id for r in snap.rooms.values() if r.building_id == targets["building"])
        raise ApportionmentError("targets: give rooms, a floor or a building", field="targets")

    async def create_rule(self, spec: RuleSpec, actor: Actor) -> RuleView:
        self.check(spec)
        row = ApportionmentRule(
            name=spec.name, source=spec.source, method=spec.method, targets=spec.targets,
            weights={k: format(v, "f") for k, v in spec.weights.items()} if spec.weights else None,
            pricing="tariff" if spec.pricing == "tariff" else {"price": format(spec.pricing, "f")},
            settle=spec.settle, schedule=spec.schedule, active=True, created_at=self.clock(), created_by=actor.name,
        )
        try:
            async with self.db.transaction() as s:
                s.add(row)
                await s.flush()
                view = _rule_view(row)
                AuditLog.record(s, actor, "apportionment.rule.create", "apportionment_rule", str(row.id), after=view.as_json())
        except IntegrityError:
            raise ApportionmentError(f"name: a rule named {spec.name!r} exists already", field="name", status=409) from None
        log.info("apportionment rule created", extra={"rule": view.id, "rule_name": spec.name, "by": actor.name})
        return view

    async def set_active(self, rule_id: int, active: bool, actor: Actor, reason: str = "") -> RuleView:
        async with self.db.transaction() as s:
            row = await s.get(ApportionmentRule, rule_id)
            if row is None:
                raise ApportionmentError(f"unknown rule {rule_id}", field="rule", status=404)
            if row.active != active:
                AuditLog.record(s, actor, "apportionment.rule.update", "apportionment_rule", str(rule_id), reason=reason,
                                before={"active": row.active}, after={"active": active})
                row.active = active
            return _rule_view(row)

    # the rule and run lookups only read (Database.reads: no SQLite write lock); the topology's
    # tick makes them for every active rule every minute
    async def rules(self) -> list[RuleView]:
        async with self.db.reads() as s:
            return [_rule_view(r) for r in (await s.scalars(select(ApportionmentRule).order_by(ApportionmentRule.id))).all()]

    async def rule(self, rule_id: int) -> RuleView:
        async with self.db.reads() as s:
            row = await s.get(ApportionmentRule, rule_id)
        if row is None:
            raise ApportionmentError(f"unknown rule {rule_id}", field="rule", status=404)
        return _rule_view(row)

    # -- preview -------------------------------------------------------------------------------
    async def preview(self, rule: RuleView | int, start: dt.datetime, end: dt.datetime) -> Preview:
        """The shares of ``rule`` over ``[start, end)``, computed and posted nowhere."""
        view = rule if isinstance(rule, RuleView) else await self.rule(rule)
        spec = view.spec
        if end <= start:
            raise ApportionmentError("to: must be after from", field="to")
        snap = self.snapshot
        rooms = self.target_rooms(spec.targets)
        source_id = spec.source[len(LOSS_PREFIX):] if spec.source.startswith(LOSS_PREFIX) else spec.source
        meter = snap.meters.get(source_id)
        if meter is None:
            raise ApportionmentError(f"source: unknown meter {source_id!r}", field="source", status=409)
        source = self._usage_source()
        usage = await self._source_usage(source, snap, spec.source, start, end)
        if usage.quantity is None:
            raise ApportionmentError(
                f"the source {spec.source} has no known quantity for the period: " + "; ".join(usage.notes), status=409,
            )
        if usage.quantity < 0:
            raise ApportionmentError(f"the source {spec.source} is negative ({usage.quantity}) over the period: nothing to share", status=409)
        accounts = await self._accounts(rooms, start, end)
        parties, vacant, days = await self._parties(spec, rooms, accounts, source, meter.kind, start, end)
        if not parties:
            raise ApportionmentError("no target room had an open account during the period", status=409)
        timelines: dict[str, TariffTimeline] = {}
        if spec.pricing == "tariff":
            async with self.db.reads() as s:
                timelines = await self.tariffs.timelines(s)
        by_id = {a.id: a for a in accounts}
        missing: list[str] = []

        def price(party: Party, quantity: Decimal) -> Decimal:
            if spec.pricing != "tariff":
                return quantity * spec.pricing
            a = by_id[party.account_id]
            tariff_id = a.electricity_tariff_id if meter.kind == "electricity" else a.water_tariff_id
            timeline = timelines.get(tariff_id) if tariff_id else None
            if timeline is None:
                missing.append(party.room_id)
                return Decimal(0)
            return price_consumption(timeline, self.tz, start, end, quantity).total

        step = source.resolution(source_id)
        try:
            result = split(usage.quantity, step, parties, price, self.rounding)
        except ValueError as exc:  # every weight zero: e.g. no target used anything
            raise ApportionmentError(f"nothing to share by: {exc}", status=409) from None
        if missing:
            raise ApportionmentError(
                f"pricing: no {meter.kind} tariff on the account of room(s) {', '.join(sorted(set(missing))[:20])}", field="pricing", status=409,
            )
        notes = list(usage.notes)
        if usage.expected and usage.intervals < usage.expected:
            notes.append(f"the source has history for {usage.intervals} of {usage.expected} intervals of the period")
        return Preview(view, start, end, meter.kind, usage, result, tuple(vacant), days,
                       None if spec.pricing == "tariff" else spec.pricing, tuple(notes))

    async def _source_usage(self, source: UsageSource, snap: AssetSnapshot, name: str, start: dt.datetime, end: dt.datetime) -> Usage:
        if name.startswith(LOSS_PREFIX):
            meter_id = name[len(LOSS_PREFIX):]
            [row] = await compute_losses(source, snap, start, end, [meter_id])
            return Usage(name, row.loss, row.estimated, row.consumption.intervals, row.consumption.expected, tuple(row.notes()))
        return (await source.usage([Span(name, start, end)]))[0]

    async def _accounts(self, rooms: Sequence[str], start: dt.datetime, end: dt.datetime) -> list[Account]:
        async with self.db.reads() as s:
            rows = (await s.scalars(
                select(Account).where(
                    Account.room_id.in_(list(rooms)), Account.opened_at < end,
                    or_(Account.closed_at.is_(None), Account.closed_at > start),
                ).order_by(Account.room_id, Account.id)
            )).all()
        return list(rows)

    async def _parties(
        self, spec: RuleSpec, rooms: Sequence[str], accounts: Sequence[Account], source: UsageSource, kind: str,
        start: dt.datetime, end: dt.datetime,
    ) -> tuple[list[Party], list[str], int]:
        snap = self.snapshot
        parties: list[Party] = []
        days = 0
        spans: list[tuple[Account, dt.datetime, dt.datetime, list[str]]] = []
        for a in accounts:
            opened, total = days_open(a.opened_at, a.closed_at, start, end, self.tz)
            days = total
            if spec.method == "consumption":
                s, e = max(start, a.opened_at), min(end, a.closed_at) if a.closed_at is not None else end
                meters = [m.id for m in snap.meters_of_room(a.room_id, active_only=False) if m.kind == kind and m.role == "tenant"]
                if s < e:
                    spans.append((a, s, e, meters))
                continue
            if opened == 0:
                continue
            key: dict[str, Any] = {"days_open": opened, "days": total}
            if spec.method == "area":
                area = snap.rooms[a.room_id].area_m2
                if area is None:
                    raise ApportionmentError(f"room {a.room_id} has no area_m2: it cannot share by area", field="targets", status=409)
                base = Fraction(area)
                key["area_m2"] = format(area.normalize(), "f")
            elif spec.method == "ratio":
                w = (spec.weights or {}).get(a.room_id, Decimal(0))
                base = Fraction(w)
                key["weight"] = format(w.normalize(), "f")
            else:
                base = Fraction(1)
                key["equal"] = 1
            parties.append(Party(a.room_id, a.id, base * opened, key, opened))
        if spans:
            usages = iter(await source.usage([Span(m, s, e) for _a, s, e, meters in spans for m in meters]))
            for a, _s, _e, meters in spans:
                got = [next(usages) for _ in meters]
                unknown = [u for u in got if u.quantity is None]
                if unknown:
                    raise ApportionmentError(
                        f"the consumption of room {a.room_id} is not known for the period: " + "; ".join(unknown[0].notes), status=409,
                    )
                used = sum((u.quantity for u in got if u.quantity is not None), Decimal(0))
                opened, total = days_open(a.opened_at, a.closed_at, start, end, self.tz)
                key = {"consumption": format(used, "f"), "days_open": opened, "days": total}
                parties.append(Party(a.room_id, a.id, Fraction(max(used, Decimal(0))), key, opened))
        sharing = {p.room_id for p in parties if p.weight > 0 or spec.method == "consumption"}
        vacant = [r for r in rooms if r not in sharing]
        if not days:
            days = days_open(start, None, start, end, self.tz)[1]
        return parties, vacant, days

    # -- runs ----------------------------------------------------------------------------------
    def due_period(self, schedule: str, now: dt.datetime, run_at: tuple[int, int]) -> str:
        """The last period of ``schedule`` that has ended and is due at ``now`` (after ``run_at``
        site time on the day after it)."""
        local = now.astimezone(self.tz)
        # the last day whose run time has come; its previous day (daily) or month (monthly) is due
        day = local.date() if (local.hour, local.minute) >= run_at else local.date() - dt.timedelta(days=1)
        if schedule == "daily":
            return period_of(day - dt.timedelta(days=1), schedule)
        return period_of(day.replace(day=1) - dt.timedelta(days=1), schedule)

    async def run(self, rule_id: int, period: str, actor: Actor) -> RunResult:
        """Post the rule's shares for ``period`` once (a second run answers the first)."""
        view = await self.rule(rule_id)
        spec = view.spec
        start, end = period_bounds(period, spec.schedule, self.tz)
        existing = await self._run_of(rule_id, period)
        if existing is not None:
            return existing
        if end > self.clock():
            raise ApportionmentError(f"period: {period} has not ended yet", field="period", status=409)
        if not view.active:
            raise ApportionmentError(f"rule {rule_id} is not active", field="rule", status=409)
        engine = self.engine
        if engine is None:
            raise ApportionmentError("the prepaid engine is not running: shares cannot be posted", status=503)
        preview = await self.preview(view, start, end)
        now = self.clock()
        minor = self.rounding.minor_units
        detail = preview.as_json(minor, self.tz)
        run_ids: list[int] = []

        async def work(s: AsyncSession) -> Iterable[Account]:
            run = ApportionmentRun(
                rule_id=rule_id, period=period, start=start, end=end, quantity=preview.split.quantity,
                total_minor=preview.split.total_minor, detail=detail, created_at=now, created_by=actor.name,
            )
            s.add(run)
            await s.flush()
            run_ids.append(run.id)
            touched: list[Account] = []
            ids = [sh.party.account_id for sh in preview.split.shares]
            accounts = {
                a.id: a for a in (await s.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update())).all()
            }
            rows: list[tuple[Any, str, str, Any]] = []  # (share, settle, state, ledger entry)
            for sh in preview.split.shares:
                account = accounts[sh.party.account_id]
                entry = None
                if sh.amount_minor == 0:
                    rows.append((sh, spec.settle, "nothing", None))
                elif spec.settle == "balance" and account.state == "open":
                    entry = post(
                        s, account, "apportionment", -sh.amount_minor, actor, now,
                        reason=f"{spec.name} {period}",
                        idem_key=f"apportionment:{rule_id}:{period}:{account.id}",
                        meter_id=spec.source if not spec.source.startswith(LOSS_PREFIX) else None,
                        quantity=sh.quantity, cost=sh.cost, from_ts=start, reading_ts=end,
                        detail=_entry_detail(rule_id, spec.name, period, spec.source, spec.method, sh.party.key, preview.unit,
                                             None if spec.pricing == "tariff" else spec.pricing, "balance"),
                    )
                    rows.append((sh, "balance", "posted", entry))
                    touched.append(account)
                else:
                    rows.append((sh, "bill", "pending", None))  # a closed account's share waits for its final bill
            await s.flush()  # the ledger entries get their ids, in one go
            s.add_all(
                ApportionmentShare(
                    run_id=run.id, rule_id=rule_id, period=period, room_id=sh.party.room_id, account_id=sh.party.account_id,
                    quantity=sh.quantity, amount_minor=sh.amount_minor, key=sh.party.key, days_open=sh.party.days_open,
                    settle=settle, state=state, ledger_entry_id=entry.id if entry is not None else None,
                )
                for sh, settle, state, entry in rows
            )
            AuditLog.record(
                s, actor, "apportionment.run", "apportionment_rule", str(rule_id), reason=f"period {period}",
                after={"period": period, "quantity": preview.split.quantity, "total": format_minor(preview.split.total_minor, minor),
                       "shares": len(preview.split.shares), "settle": spec.settle},
            )
            return touched

        try:
            await engine.post_with(work)
        except IntegrityError:
            replay = await self._run_of(rule_id, period)
            if replay is None:
                raise
            return replay
        log.info("apportionment posted", extra={"rule": rule_id, "period": period, "total_minor": preview.split.total_minor,
                                                "shares": len(preview.split.shares), "by": actor.name})
        return RunResult(run_ids[0], rule_id, period, False, detail)

    async def _run_of(self, rule_id: int, period: str) -> RunResult | None:
        async with self.db.reads() as s:
            run = await s.scalar(select(ApportionmentRun).where(ApportionmentRun.rule_id == rule_id, ApportionmentRun.period == period))
        if run is None:
            return None
        return RunResult(run.id, rule_id, period, True, dict(run.detail))

    async def runs(self, rule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = select(ApportionmentRun).order_by(ApportionmentRun.id.desc()).limit(limit)
        if rule_id is not None:
            q = q.where(ApportionmentRun.rule_id == rule_id)
        async with self.db.reads() as s:
            rows = (await s.scalars(q)).all()
        return [
            {"id": r.id, "rule": r.rule_id, "period": r.period, "quantity": format(r.quantity.normalize(), "f"),
             "total": format_minor(r.total_minor, self.rounding.minor_units), "created_at": r.created_at.isoformat(),
             "created_by": r.created_by}
            for r in rows
        ]

    # -- bill lines ------------------------------------------------------------------------------
    async def pending_lines(self, account_id: int, period: str | None = None) -> list[PendingLine]:
        """The shares of ``account_id`` waiting for a bill (of ``period``: ``"2026-11"`` takes the
        month's monthly and daily periods), oldest first."""
        q = (
            select(ApportionmentShare, ApportionmentRule)
            .join(ApportionmentRule, ApportionmentRule.id == ApportionmentShare.rule_id)
            .where(ApportionmentShare.account_id == account_id, ApportionmentShare.state == "pending")
            .order_by(ApportionmentShare.period, ApportionmentShare.id)
        )
        if period is not None:
            q = q.where(or_(ApportionmentShare.period == period, ApportionmentShare.period.like(f"{period}-%")))
        snap = self.snapshot
        async with self.db.reads() as s:
            rows = (await s.execute(q)).all()
        out = []
        for share, rule in rows:
            source_id = rule.source[len(LOSS_PREFIX):] if rule.source.startswith(LOSS_PREFIX) else rule.source
            meter = snap.meters.get(source_id)
            unit = UNIT_OF_KIND.get(meter.kind, "") if meter else ""
            out.append(PendingLine(
                share.id, rule.id, rule.name, share.period, share.room_id, share.account_id, share.quantity, unit,
                share.amount_minor, f"{rule.name} {share.period}: {format(share.quantity.normalize(), 'f')} {unit}", dict(share.key),
            ))
        return out

    async def post_pending(self, s: AsyncSession, account: Account, period: str, at: dt.datetime, actor: Actor) -> list[LedgerEntry]:
        """The billing run's call (:class:`scada.billing.context.PendingLines`): post the shares of
        ``account`` that wait for a bill, of periods up to the billed month ``period`` (``YYYY-MM``:
        its monthly period, its days, and any earlier one still waiting), as ledger entries of
        kind ``apportionment`` dated ``at``, in the billing run's session; each share is marked
        ``billed`` with its entry and the billed month. A share is posted once: its state, and
        its entry's key ``apportionment:<rule>:<period>:<account>``, which a balance-settled
        share would have had."""
        rows = (await s.execute(
            select(ApportionmentShare, ApportionmentRule, ApportionmentRun)
            .join(ApportionmentRule, ApportionmentRule.id == ApportionmentShare.rule_id)
            .join(ApportionmentRun, ApportionmentRun.id == ApportionmentShare.run_id)
            .where(ApportionmentShare.account_id == account.id, ApportionmentShare.state == "pending")
            .order_by(ApportionmentShare.period, ApportionmentShare.id)
            .with_for_update(of=ApportionmentShare)
        )).all()
        snap = self.snapshot
        taken: list[tuple[ApportionmentShare, LedgerEntry]] = []
        for share, rule, run in rows:
            if share.period[:7] > period:  # a later month's share waits for that month's bill
                continue
            source_id = rule.source[len(LOSS_PREFIX):] if rule.source.startswith(LOSS_PREFIX) else rule.source
            meter = snap.meters.get(source_id)
            price = None if rule.pricing == "tariff" else Decimal(rule.pricing["price"])
            entry = post(
                s, account, "apportionment", -share.amount_minor, actor, at,
                reason=f"{rule.name} {share.period}",
                idem_key=f"apportionment:{rule.id}:{share.period}:{account.id}",
                meter_id=rule.source if not rule.source.startswith(LOSS_PREFIX) else None,
                quantity=share.quantity, from_ts=run.start, reading_ts=run.end,
                detail=_entry_detail(rule.id, rule.name, share.period, rule.source, rule.method, dict(share.key),
                                     UNIT_OF_KIND.get(meter.kind, "") if meter is not None else "", price, "bill"),
            )
            taken.append((share, entry))
        if not taken:
            return []
        await s.flush()  # the entries' ids
        for share, entry in taken:
            share.state, share.ledger_entry_id, share.bill_ref = "billed", entry.id, period
        log.info("apportioned shares billed", extra={"account": account.id, "room": account.room_id, "period": period,
                                                     "shares": len(taken), "amount_minor": -sum(e.amount_minor for _s, e in taken)})
        return [e for _s, e in taken]


def _entry_detail(
    rule_id: int, name: str, period: str, source: str, method: str, key: dict[str, Any], unit: str, price: Decimal | None, settle: str,
) -> dict[str, Any]:
    """What an ``apportionment`` ledger entry says of its share (bills and statements show it)."""
    detail: dict[str, Any] = {"rule": rule_id, "rule_name": name, "period": period, "source": source, "method": method,
                              "key": key, "unit": unit, "settle": settle}
    if price is not None:
        detail["price"] = format(price, "f")
    return detail
