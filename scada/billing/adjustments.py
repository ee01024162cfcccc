"""Retroactive price adjustment (电费退补): billed consumption re-priced under a tariff version.

A draft takes the deductions of the tariff whose readings fall in ``[from, to)`` — their
register deltas, quantities, timestamps and period registers as the ledger stored them — and
prices each again with :func:`scada.prepaid.pricing.price_consumption`, the code path of live
deduction, under the tariff's versions up to the chosen one. The rounding is replayed too:
from the account's carried remainder before the first of them, through every deduction of the
account in between (those of other tariffs keep their exact cost), rounded with the same
:class:`~scada.prepaid.money.Rounding`. So re-pricing under an unchanged version gives exactly
the amounts that were deducted: a difference of 0.00. Tier cycles start from the consumption
already billed in them.

Per account the draft shows what was ``charged``, what it is ``repriced`` at and the
``difference`` (repriced − charged: positive, the tenant owes more). A user other than its
author with the ``approve`` permission approves it; then each difference is posted as one
``adjustment`` entry per account (idempotent by adjustment and account), or put on the
account's next bill. Every step is audited. An approved adjustment's range cannot be
adjusted again for the same accounts (the charged amounts would no longer be the ledger's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.bills import check_rooms
from scada.billing.context import BillingContext
from scada.billing.errors import BillingError
from scada.billing.models import Adjustment, AdjustmentAccount
from scada.prepaid.ledger import AccountView, account_view, post
from scada.prepaid.models import Account, LedgerEntry, Tariff
from scada.prepaid.money import Rounding, exact
from scada.prepaid.pricing import TariffTimeline, cycle_key, price_consumption
from scada.prepaid.tariff_store import TariffStore
from scada.users.audit import Actor, AuditLog

__all__ = ["Deduction", "adjustment_json", "approve_adjustment", "draft_adjustment", "reject_adjustment", "reprice"]

log = logging.getLogger(__name__)

APPLY = ("ledger", "next_bill")


@dataclass(frozen=True, slots=True)
class Deduction:
    """One billed reading as the ledger stored it."""

    id: int
    from_ts: dt.datetime
    reading_ts: dt.datetime
    quantity: Decimal
    cost: Decimal  # exact, as priced live
    billed_minor: int  # what was deducted (positive)
    registers: dict[str, Decimal] | None
    target: bool  # of the adjusted tariff, in the range, not reversed
    commodity: str


def registers_of(e: LedgerEntry) -> dict[str, Decimal] | None:
    """The period quantities the live deduction had: from its lines when it was priced by
    registers, else the registers it kept (None: it was split by time)."""
    d = e.detail or {}
    if d.get("by_registers"):
        out: dict[str, Decimal] = {}
        with exact():
            for ln in d.get("lines", []):
                if ln.get("kind", "energy") == "energy" and ln.get("period"):
                    out[ln["period"]] = out.get(ln["period"], Decimal(0)) + Decimal(ln["quantity"])
        return out
    if d.get("registers"):
        return {k: Decimal(v) for k, v in d["registers"].items()}
    return None


@dataclass(frozen=True)
class Repriced:
    charged_minor: int
    repriced_minor: int
    entries: int

    @property
    def difference_minor(self) -> int:
        return self.repriced_minor - self.charged_minor


def reprice(
    chain: Sequence[Deduction], timeline: TariffTimeline, tz: Any, rounding: Rounding, remainder: Decimal,
    usage: dict[str, Decimal],
) -> Repriced:
    """Replay the account's deductions ``chain`` (id order) from the carried ``remainder``:
    targets priced again under ``timeline``, the others at their own exact cost; every one
    rounded with the carried remainder as live deduction does. ``usage`` is the consumption
    already billed in each tier cycle before the chain (it is updated). Pure: no I/O."""
    tiers = any(v.definition.tiers is not None for v in timeline.versions)
    old_total = new_total = charged = 0
    r = remainder
    n = 0
    for d in chain:
        if d.target:
            quote = price_consumption(timeline, tz, d.from_ts, d.reading_ts, d.quantity, registers=d.registers,
                                      cycle_usage=usage if tiers else None)
            cost = quote.total
            charged += d.billed_minor
            n += 1
            with exact():
                for key, q in quote.usage_added.items():
                    usage[key] = usage.get(key, Decimal(0)) + q
        else:
            cost = d.cost
        billed, r = rounding.carry(r, cost)
        old_total += d.billed_minor
        new_total += billed
    # what the re-pricing changes over the whole chain (other tariffs' roundings may move by the
    # carried remainder too) is the difference; what was charged is the targets' own amounts
    return Repriced(charged, charged + new_total - old_total, n)


def adjustment_json(ctx: BillingContext, adj: Adjustment, accounts: Sequence[AdjustmentAccount]) -> dict[str, Any]:
    f = ctx.fmt
    return {
        "id": adj.id, "tariff": adj.tariff_id, "version": adj.version, "from": adj.from_ts.isoformat(), "to": adj.to_ts.isoformat(),
        "rooms": adj.rooms, "apply": adj.apply, "state": adj.state, "reason": adj.reason,
        "created_at": adj.created_at.isoformat(), "created_by": adj.created_by,
        "decided_at": adj.decided_at.isoformat() if adj.decided_at else None, "decided_by": adj.decided_by,
        "decision_reason": adj.decision_reason,
        "accounts": [
            {"account": a.account_id, "room": a.room_id, "entries": a.entries, "charged": f(a.charged_minor), "repriced": f(a.repriced_minor),
             "difference": f(a.difference_minor), "entry": a.entry_id, "posted_at": a.posted_at.isoformat() if a.posted_at else None}
            for a in accounts
        ],
        "total": {"charged": f(adj.charged_minor), "repriced": f(adj.repriced_minor), "difference": f(adj.difference_minor)},
    }


async def _timeline(s: AsyncSession, store: TariffStore, tariff_id: str, version: int) -> TariffTimeline:
    timelines = await store.timelines(s)
    full = timelines.get(tariff_id)
    if full is None:
        raise BillingError(f"tariff: no tariff {tariff_id!r}", field="tariff")
    versions = [v for v in full.versions if v.version <= version]
    if not any(v.version == version for v in versions):
        raise BillingError(f"version: tariff {tariff_id} has no version {version}", field="version")
    return TariffTimeline(versions)


async def _usage_before(s: AsyncSession, ctx: BillingContext, account_id: int, commodity: str, first: LedgerEntry,
                        timeline: TariffTimeline) -> dict[str, Decimal]:
    """Consumption already billed in the tier cycles of ``first``'s reading, before it."""
    out: dict[str, Decimal] = {}
    cycles = {v.definition.tiers.cycle for v in timeline.versions if v.definition.tiers is not None}
    if not cycles:
        return out
    day = ctx.local_date(first.from_ts or first.reading_ts or first.ts)
    for cycle in cycles:
        start_day = day.replace(day=1) if cycle == "monthly" else day.replace(month=1, day=1)
        start = dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=ctx.tz).astimezone(dt.UTC)
        rows = (await s.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "deduction",
                                      LedgerEntry.id < first.id, LedgerEntry.reading_ts > start)
        )).all()
        key = cycle_key(cycle, day)
        total = Decimal(0)
        with exact():
            for e in rows:
                if ctx.commodity_of(e.meter_id, e.tariff_id) != commodity or e.quantity is None or e.reading_ts is None or e.from_ts is None:
                    continue
                if e.from_ts >= start:
                    total += e.quantity
                else:  # straddles the cycle's start: the part after it, split as pricing splits it
                    q = price_consumption(timeline, ctx.tz, e.from_ts, e.reading_ts, e.quantity, registers=registers_of(e), cycle_usage={})
                    total += q.usage_added.get(key, Decimal(0))
        out[key] = total
    return out


def _aware(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise BillingError(f"{name}: a time with a UTC offset is required", field=name)
    return value.astimezone(dt.UTC)


async def draft_adjustment(
    ctx: BillingContext, *, tariff: str, version: int, start: Any, end: Any, rooms: Any, apply: str, reason: str,
    actor: Actor, now: dt.datetime,
) -> dict[str, Any]:
    """Compute a draft: what each account was charged and would be charged; nothing is posted."""
    start = _aware(start, "from")
    end = _aware(end, "to")
    if end <= start:
        raise BillingError("to: must be after from", field="to")
    if end > now:
        raise BillingError(f"to: {end.isoformat()} is in the future", field="to")
    if apply not in APPLY:
        raise BillingError(f"apply: one of {', '.join(APPLY)}, found {apply!r}", field="apply")
    named = check_rooms(ctx, rooms)
    rounding = Rounding(ctx.minor_units, ctx.engine.rounding.mode)
    async with ctx.db.sessions() as s:
        if await s.get(Tariff, tariff) is None:
            raise BillingError(f"tariff: no tariff {tariff!r}", field="tariff")
        timeline = await _timeline(s, ctx.engine.tariffs, tariff, version)
        if named is not None:
            for i, room in enumerate(named):
                accounts = (await s.scalars(select(Account).where(Account.room_id == room).order_by(Account.id))).all()
                if not accounts:
                    raise BillingError(f"rooms[{i}]: room {room} has no account", field=f"rooms[{i}]")
                if all(start < a.opened_at for a in accounts):
                    first = min(a.opened_at for a in accounts)
                    raise BillingError(f"from: {start.isoformat()} is before room {room}'s account opened ({first.isoformat()})", field="from")
        q = (select(LedgerEntry).where(LedgerEntry.kind == "deduction", LedgerEntry.tariff_id == tariff,
                                       LedgerEntry.reading_ts >= start, LedgerEntry.reading_ts < end).order_by(LedgerEntry.id))
        if named is not None:
            ids = (await s.scalars(select(Account.id).where(Account.room_id.in_(named)))).all()
            q = q.where(LedgerEntry.account_id.in_(ids))
        targets = list((await s.scalars(q)).all())
        by_account: dict[int, list[LedgerEntry]] = {}
        for e in targets:
            by_account.setdefault(e.account_id, []).append(e)
        await _refuse_overlap(s, tariff, start, end, list(by_account))
        results: list[tuple[Account, Repriced, int, int]] = []
        for account_id, entries in sorted(by_account.items()):
            a = await s.get(Account, account_id)
            assert a is not None
            first_id, last_id = entries[0].id, entries[-1].id
            reversed_ids = set((await s.scalars(select(LedgerEntry.reverses_id).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "reversal", LedgerEntry.reverses_id >= first_id))).all())
            window = (await s.scalars(select(LedgerEntry).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "deduction", LedgerEntry.id >= first_id,
            ).order_by(LedgerEntry.id))).all()
            target_ids = {e.id for e in entries} - reversed_ids
            # the carried remainder before the first: today's less what every later deduction carried
            with exact():
                carried = sum(((e.cost or Decimal(0)) - rounding.from_minor(-e.amount_minor) for e in window), Decimal(0))
                remainder = a.remainder - carried
            commodity = ctx.commodity_of(entries[0].meter_id, tariff)
            usage = await _usage_before(s, ctx, account_id, commodity, entries[0], timeline)
            chain = [Deduction(e.id, e.from_ts or e.ts, e.reading_ts or e.ts, e.quantity or Decimal(0), e.cost or Decimal(0), -e.amount_minor,
                               registers_of(e), e.id in target_ids, ctx.commodity_of(e.meter_id, e.tariff_id))
                     for e in window if e.id <= last_id]
            # pure arithmetic, possibly over many readings: off the event loop
            result = await asyncio.to_thread(reprice, chain, timeline, ctx.tz, rounding, remainder, usage)
            results.append((a, result, first_id, last_id))
    async with ctx.db.transaction() as s:
        adj = Adjustment(
            tariff_id=tariff, version=version, from_ts=start, to_ts=end, rooms=named, apply=apply, state="draft", reason=reason,
            charged_minor=sum(r.charged_minor for _, r, _, _ in results), repriced_minor=sum(r.repriced_minor for _, r, _, _ in results),
            difference_minor=sum(r.difference_minor for _, r, _, _ in results), created_at=now, created_by=actor.name, decision_reason="",
        )
        s.add(adj)
        await s.flush()
        rows = []
        for a, r, first_id, last_id in results:
            row = AdjustmentAccount(adjustment_id=adj.id, account_id=a.id, room_id=a.room_id, entries=r.entries, first_entry_id=first_id,
                                    last_entry_id=last_id, charged_minor=r.charged_minor, repriced_minor=r.repriced_minor,
                                    difference_minor=r.difference_minor)
            s.add(row)
            rows.append(row)
        await s.flush()
        AuditLog.record(s, actor, "adjustment.draft", "adjustment", str(adj.id), reason=reason, after={
            "tariff": tariff, "version": version, "from": start, "to": end, "rooms": named, "apply": apply,
            "accounts": len(rows), "difference": ctx.fmt(adj.difference_minor)})
        return adjustment_json(ctx, adj, rows)


async def _refuse_overlap(s: AsyncSession, tariff: str, start: dt.datetime, end: dt.datetime, account_ids: list[int]) -> None:
    if not account_ids:
        return
    hit = await s.scalar(
        select(func.min(Adjustment.id)).join(AdjustmentAccount, AdjustmentAccount.adjustment_id == Adjustment.id)
        .where(Adjustment.tariff_id == tariff, Adjustment.state == "approved", Adjustment.from_ts < end, Adjustment.to_ts > start,
               AdjustmentAccount.account_id.in_(account_ids), AdjustmentAccount.difference_minor != 0)
    )
    if hit is not None:
        raise BillingError(f"from: the range overlaps the approved adjustment {hit} of tariff {tariff} for some of these accounts",
                           status=409, field="from")


async def _load(s: AsyncSession, adj_id: int) -> tuple[Adjustment, list[AdjustmentAccount]]:
    adj = await s.scalar(select(Adjustment).where(Adjustment.id == adj_id).with_for_update())
    if adj is None:
        raise BillingError(f"no adjustment {adj_id}", status=404)
    rows = list((await s.scalars(select(AdjustmentAccount).where(AdjustmentAccount.adjustment_id == adj_id).order_by(AdjustmentAccount.account_id))).all())
    return adj, rows


async def get_adjustment(ctx: BillingContext, adj_id: int) -> dict[str, Any]:
    async with ctx.db.sessions() as s:
        adj, rows = await _load(s, adj_id)
        return adjustment_json(ctx, adj, rows)


async def list_adjustments(ctx: BillingContext, state: str | None = None) -> list[dict[str, Any]]:
    async with ctx.db.sessions() as s:
        q = select(Adjustment).order_by(Adjustment.id.desc()).limit(500)
        if state:
            q = q.where(Adjustment.state == state)
        out = []
        for adj in (await s.scalars(q)).all():
            rows = (await s.scalars(select(AdjustmentAccount).where(AdjustmentAccount.adjustment_id == adj.id).order_by(AdjustmentAccount.account_id))).all()
            out.append(adjustment_json(ctx, adj, rows))
        return out


async def approve_adjustment(ctx: BillingContext, adj_id: int, *, actor: Actor, reason: str, now: dt.datetime) -> tuple[dict[str, Any], list[AccountView]]:
    """Approve a draft (a user other than its author): post each account's difference now, or
    leave it for the account's next bill."""
    views: list[AccountView] = []
    async with ctx.db.transaction() as s:
        adj, rows = await _load(s, adj_id)
        if adj.state != "draft":
            raise BillingError(f"adjustment {adj_id} is {adj.state}", status=409)
        if adj.created_by == actor.name:
            raise BillingError("the four-eyes rule: an adjustment is approved by a user other than its author", status=403)
        await _refuse_overlap(s, adj.tariff_id, adj.from_ts, adj.to_ts, [r.account_id for r in rows if r.difference_minor != 0])
        posted = []
        if adj.apply == "ledger":
            for row in rows:
                if row.difference_minor == 0:
                    row.posted_at = now
                    continue
                a = await s.scalar(select(Account).where(Account.id == row.account_id).with_for_update())
                assert a is not None
                if a.state != "open":
                    continue  # a closed account takes no entry; the row stays unposted
                e = post(s, a, "adjustment", -row.difference_minor, actor, now,
                         reason=f"price adjustment {adj.id} ({adj.tariff_id} v{adj.version})", idem_key=f"adjustment:{adj.id}:{a.id}",
                         detail={"adjustment": adj.id, "tariff": adj.tariff_id, "version": adj.version,
                                 "from": adj.from_ts.isoformat(), "to": adj.to_ts.isoformat()})
                await s.flush()
                row.entry_id, row.posted_at = e.id, now
                ctx.engine.biller.update_level(a, credited=row.difference_minor < 0)
                views.append(account_view(a))
                posted.append(row.account_id)
        adj.state, adj.decided_at, adj.decided_by, adj.decision_reason = "approved", now, actor.name, reason
        AuditLog.record(s, actor, "adjustment.approve", "adjustment", str(adj.id), reason=reason,
                        before={"state": "draft", "author": adj.created_by},
                        after={"state": "approved", "apply": adj.apply, "posted_accounts": posted, "difference": ctx.fmt(adj.difference_minor)})
        out = adjustment_json(ctx, adj, rows)
    for v in views:
        ctx.engine.account_changed(v)
    return out, views


async def reject_adjustment(ctx: BillingContext, adj_id: int, *, actor: Actor, reason: str, now: dt.datetime) -> dict[str, Any]:
    if not reason.strip():
        raise BillingError("reason: a rejection needs a reason", field="reason")
    async with ctx.db.transaction() as s:
        adj, rows = await _load(s, adj_id)
        if adj.state != "draft":
            raise BillingError(f"adjustment {adj_id} is {adj.state}", status=409)
        adj.state, adj.decided_at, adj.decided_by, adj.decision_reason = "rejected", now, actor.name, reason
        AuditLog.record(s, actor, "adjustment.reject", "adjustment", str(adj.id), reason=reason, before={"state": "draft"}, after={"state": "rejected"})
        return adjustment_json(ctx, adj, rows)
