"""Billing runs, bills, payments and credit notes.

A run closes a month for every account open in it (or those named): it posts what the month
still owes (``on_bill`` charges, the part periods of rules, approved adjustments put on the
next bill, and what other parts keep pending for the bill: the meter topology's apportioned
shares settled on it, see :class:`scada.billing.context.PendingLines`), dated the month's last instant, then issues one bill per account — or one per
customer billed per customer, with a section per account — from the month's ledger entries:
the opening balance (the balance at the month's start), the lines (energy by commodity, tariff,
time-of-use period and tier; capacity/demand; each custom charge with its tax; adjustments,
late fees, payments …), their total, the closing balance, the total due and the due date.
Sections are unique per (account, month): the same month again issues nothing new and answers
with the bills already issued. A preview does all of it in a transaction that is rolled back.

A bill is immutable once issued, except what is paid and credited against it and its status
(``issued`` → ``partly_paid`` → ``paid``, or ``overdue``). A payment (idempotent by channel and
reference) posts a ledger ``payment`` per account of the bill. A correction is a credit note:
drafted, then approved by a user other than its author, which posts an ``adjustment`` credit.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.charges import due_instances, post_instances, rule_view
from scada.billing.context import BillingContext
from scada.billing.errors import BillingError
from scada.billing.models import (
    AccountBilling,
    Adjustment,
    AdjustmentAccount,
    Bill,
    BillingRun,
    BillPayment,
    BillSection,
    ChargeRule,
    CreditNote,
    Customer,
)
from scada.billing.periods import Period, month
from scada.billing.statements import balance_at, bill_lines, entries_between
from scada.prepaid.ledger import AccountView, account_view, post
from scada.prepaid.models import Account
from scada.users.audit import Actor, AuditLog

__all__ = [
    "BILLING",
    "RunResult",
    "approve_credit_note",
    "bill_json",
    "create_credit_note",
    "pay_bill",
    "reject_credit_note",
    "run_period",
    "status_of",
]

log = logging.getLogger(__name__)

BILLING = Actor.system("billing")
STATUSES = ("issued", "partly_paid", "paid", "overdue")
MICRO = dt.timedelta(microseconds=1)


@dataclass
class RunResult:
    period: str
    preview: bool
    run_id: int | None
    bills: list[dict[str, Any]]  # every bill of the scope: issued now, or before (``replayed``)
    issued: int
    posted: int
    changed: list[AccountView] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "preview": self.preview, "run": self.run_id, "issued": self.issued, "posted": self.posted,
                "bills": self.bills}


class _Preview(Exception):
    def __init__(self, result: RunResult) -> None:
        super().__init__("preview")
        self.result = result


def status_of(bill: Bill, today: dt.date, grace_days: int) -> str:
    """``paid`` when nothing is outstanding; ``overdue`` after the due date and its grace;
    ``partly_paid`` once something was paid or credited; else ``issued``."""
    outstanding = bill.total_due_minor - bill.paid_minor - bill.credited_minor
    if outstanding <= 0:
        return "paid"
    if today > bill.due_date + dt.timedelta(days=grace_days):
        return "overdue"
    if bill.paid_minor > 0 or bill.credited_minor > 0:
        return "partly_paid"
    return "issued"


def bill_json(ctx: BillingContext, bill: Bill | None, sections: Sequence[BillSection], *, customer: Customer | None = None,
              payments: Sequence[BillPayment] = (), notes: Sequence[CreditNote] = (), preview: Any = None) -> dict[str, Any]:
    """The bill as the API shows it (``bill`` None: a preview; ``preview`` then has its totals)."""
    f = ctx.fmt
    src = bill if bill is not None else preview
    assert src is not None
    secs: list[dict[str, Any]] = []
    for sec in sections:
        lines = [{**{k: v for k, v in ln.items() if not k.endswith("_minor")}, "amount": f(ln["amount_minor"]),
                  **({"tax": f(ln["tax_minor"])} if "tax_minor" in ln else {})} for ln in sec.lines]
        secs.append({
            "account": sec.account_id, "room": sec.room_id, "opening_balance": f(sec.opening_minor), "total": f(sec.total_minor),
            "closing_balance": f(sec.closing_minor), "total_due": f(sec.due_minor), "paid": f(sec.paid_minor),
            "credited": f(sec.credited_minor), "late_fees": f(sec.late_fees_minor), "lines": lines,
        })
    out: dict[str, Any] = {
        "id": getattr(src, "id", None), "number": getattr(src, "number", None), "period": src.period,
        "customer": customer.id if customer is not None else None,
        "customer_name": customer.name if customer is not None else None,
        "account": secs[0]["account"] if len(secs) == 1 else None, "room": secs[0]["room"] if len(secs) == 1 else None,
        "status": src.status, "issued_at": src.issued_at.isoformat(), "due_date": src.due_date.isoformat(), "language": src.language,
        "currency": ctx.engine.currency,
        "opening_balance": f(src.opening_minor), "total": f(src.total_minor), "closing_balance": f(src.closing_minor),
        "total_due": f(src.total_due_minor), "tax": f(src.tax_minor), "paid": f(src.paid_minor), "credited": f(src.credited_minor),
        "outstanding": f(max(0, src.total_due_minor - src.paid_minor - src.credited_minor)),
        "accounts": secs,
        "lines": [{**ln, "room": s["room"]} for s in secs for ln in s["lines"]],
    }
    if bill is not None:
        out["payments"] = [{"id": p.id, "amount": f(p.amount_minor), "channel": p.channel, "reference": p.reference,
                            "ts": p.ts.isoformat(), "actor": p.actor} for p in payments]
        out["credit_notes"] = [credit_note_json(ctx, n) for n in notes]
    return out


def credit_note_json(ctx: BillingContext, n: CreditNote) -> dict[str, Any]:
    return {"id": n.id, "bill": n.bill_id, "amount": ctx.fmt(n.amount_minor), "reason": n.reason, "state": n.state,
            "created_at": n.created_at.isoformat(), "created_by": n.created_by,
            "decided_at": n.decided_at.isoformat() if n.decided_at else None, "decided_by": n.decided_by,
            "decision_reason": n.decision_reason}


@dataclass
class _PreviewBill:
    period: str
    status: str
    issued_at: dt.datetime
    due_date: dt.date
    language: str
    opening_minor: int
    total_minor: int
    closing_minor: int
    total_due_minor: int
    tax_minor: int
    paid_minor: int = 0
    credited_minor: int = 0


def check_rooms(ctx: BillingContext, rooms: Any, field_name: str = "rooms") -> list[str] | None:
    if rooms is None:
        return None
    if not isinstance(rooms, list) or len(rooms) > 100_000:
        raise BillingError(f"{field_name}: a list of room ids, or null for every room", field=field_name)
    for i, room in enumerate(rooms):
        if not isinstance(room, str) or room not in ctx.snapshot.rooms:
            raise BillingError(f"{field_name}[{i}]: no room {room!r}", field=f"{field_name}[{i}]")
    return sorted(set(rooms))


async def run_period(ctx: BillingContext, period_key: str, rooms: Any, *, preview: bool, actor: Actor, now: dt.datetime) -> RunResult:
    """Close ``period_key`` (``YYYY-MM``) for every account open in it, or the named rooms'."""
    period = month(period_key)
    start, end = period.bounds(ctx.tz)
    if start > now:
        raise BillingError(f"period: {period_key} is in the future", field="period")
    if end > now and not preview:
        raise BillingError(f"period: {period_key} is not over until {end.astimezone(ctx.tz).date().isoformat()}; preview it instead",
                           field="period")
    named = check_rooms(ctx, rooms)
    try:
        async with ctx.db.transaction() as s:
            result = await _run(ctx, s, period, named, preview=preview, actor=actor, now=now)
            if preview:
                raise _Preview(result)
    except _Preview as p:
        return p.result
    for view in result.changed:
        ctx.engine.account_changed(view)
    log.info("billing run", extra={"period": period_key, "bills": result.issued, "posted": result.posted})
    return result


async def _run(ctx: BillingContext, s: AsyncSession, period: Period, named: list[str] | None, *, preview: bool, actor: Actor,
               now: dt.datetime) -> RunResult:
    start, end = period.bounds(ctx.tz)
    q = select(Account).where(Account.opened_at < end, (Account.closed_at.is_(None)) | (Account.closed_at >= start))
    if named is not None:
        q = q.where(Account.room_id.in_(named))
    accounts = list((await s.scalars(q.order_by(Account.id).with_for_update())).all())
    ids = [a.id for a in accounts]
    billed = {sec.account_id: sec for sec in (await s.scalars(
        select(BillSection).where(BillSection.period == period.key, BillSection.account_id.in_(ids)))).all()} if ids else {}
    todo = [a for a in accounts if a.id not in billed]
    settings = {b.account_id: b for b in (await s.scalars(select(AccountBilling).where(AccountBilling.account_id.in_(ids)))).all()} if ids else {}
    customers = {c.id: c for c in (await s.scalars(select(Customer))).all()}
    rules = [rule_view(r) for r in (await s.scalars(select(ChargeRule).order_by(ChargeRule.id))).all()]
    pending = await _pending_adjustments(s, [a.id for a in todo])
    run: BillingRun | None = None
    if todo:
        run = BillingRun(period=period.key, ran_at=now, actor=actor.name, rooms=named, bills=0, posted=0)
        s.add(run)
        await s.flush()
    at = end - MICRO  # what the run posts belongs to the month it closes
    posted = 0
    changed: dict[int, Account] = {}
    snap = ctx.snapshot
    for a in todo:
        room = snap.rooms.get(a.room_id)
        if room is not None:
            acc_start = ctx.local_date(a.opened_at)
            acc_end = ctx.local_date(a.closed_at) if a.closed_at is not None else None
            last = period.end - dt.timedelta(days=1)
            instances = [i for r in rules for i in due_instances(r, room, acc_start, acc_end, period.start, last,
                                                                 minor_units=ctx.minor_units, rounding=ctx.rounding)]
            new = await post_instances(s, a, instances, BILLING, at)
            posted += len(new)
            if new:
                changed[a.id] = a
        for adj, aa in pending.get(a.id, []):
            if aa.difference_minor != 0:
                e = post(s, a, "adjustment", -aa.difference_minor, BILLING, at, reason=f"price adjustment {adj.id} ({adj.tariff_id} v{adj.version})",
                         idem_key=f"adjustment:{adj.id}:{a.id}", detail={"adjustment": adj.id, "tariff": adj.tariff_id, "version": adj.version})
                await s.flush()
                aa.entry_id = e.id
                posted += 1
                changed[a.id] = a
            aa.posted_at = now
        # what other parts keep waiting for the bill (apportioned shares settled on it)
        for source in ctx.pending:
            taken = await source.post_pending(s, a, period.key, at, BILLING)
            posted += len(taken)
            if taken:
                changed[a.id] = a
    await s.flush()
    # group: a customer billed per customer gets one bill for all its accounts of the month
    groups: dict[tuple[str, int], list[Account]] = {}
    for a in todo:
        b = settings.get(a.id)
        c = customers.get(b.customer_id) if b is not None and b.customer_id is not None else None
        key = ("customer", c.id) if c is not None and c.bill_per == "customer" else ("account", a.id)
        groups.setdefault(key, []).append(a)
    due_date = ctx.today(now) + dt.timedelta(days=ctx.cfg.due_days)
    out_bills: list[dict[str, Any]] = []
    issued = 0
    for (kind, _gid), members in groups.items():
        first_settings = settings.get(members[0].id)
        customer = customers.get(first_settings.customer_id) if first_settings is not None and first_settings.customer_id is not None else None
        sections = []
        for a in sorted(members, key=lambda a: a.room_id):
            opening = await balance_at(s, a.id, start)
            rows = await entries_between(s, a.id, start, end)
            lines = bill_lines(rows, ctx.minor_units, ctx.rounding, ctx.commodity_of, dict(ctx.cfg.tax_rates))
            total = sum(ln["amount_minor"] for ln in lines)
            closing = opening - total
            sections.append(BillSection(account_id=a.id, room_id=a.room_id, period=period.key, opening_minor=opening, total_minor=total,
                                        closing_minor=closing, due_minor=max(0, -closing), paid_minor=0, credited_minor=0,
                                        late_fees_minor=0, lines=lines))
        language = customer.language if customer is not None else members[0].language
        totals = dict(
            opening_minor=sum(x.opening_minor for x in sections), total_minor=sum(x.total_minor for x in sections),
            closing_minor=sum(x.closing_minor for x in sections), total_due_minor=sum(x.due_minor for x in sections),
            tax_minor=sum(ln.get("tax_minor", 0) for x in sections for ln in x.lines),
        )
        status = "paid" if totals["total_due_minor"] == 0 else "issued"
        if preview:
            pb = _PreviewBill(period.key, status, now, due_date, language, **totals)
            out_bills.append(bill_json(ctx, None, sections, customer=customer if kind == "customer" else None, preview=pb))
            continue
        assert run is not None
        bill = Bill(number=f"tmp-{uuid.uuid4().hex[:24]}", period=period.key, run_id=run.id,
                    customer_id=customer.id if customer is not None else None, issued_at=now, due_date=due_date,
                    language=language, paid_minor=0, credited_minor=0, status=status, updated_at=now, **totals)
        s.add(bill)
        await s.flush()
        bill.number = f"{period.key.replace('-', '')}-{bill.id:06d}"
        for sec in sections:
            sec.bill_id = bill.id
            s.add(sec)
        issued += 1
        AuditLog.record(s, actor, "bill.issue", "bill", str(bill.id), after={
            "number": bill.number, "period": period.key, "rooms": [x.room_id for x in sections],
            "total": ctx.fmt(bill.total_minor), "total_due": ctx.fmt(bill.total_due_minor), "due_date": due_date})
        out_bills.append(bill_json(ctx, bill, sections, customer=customer))
    if run is not None:
        run.bills, run.posted = issued, posted
        AuditLog.record(s, actor, "billing.run", "billing_run", str(run.id), after={
            "period": period.key, "rooms": named, "bills": issued, "posted": posted, "preview": preview})
    await s.flush()
    # the bills issued before, for the accounts of the scope (the same period again answers with them)
    earlier_ids = sorted({sec.bill_id for sec in billed.values()})
    for bill_id in earlier_ids:
        out_bills.append(await load_bill_json(ctx, s, bill_id) | {"replayed": True})
    return RunResult(period.key, preview, run.id if run is not None and not preview else None, out_bills, issued, posted,
                     [account_view(a) for a in changed.values()])


async def _pending_adjustments(s: AsyncSession, account_ids: list[int]) -> dict[int, list[tuple[Adjustment, AdjustmentAccount]]]:
    if not account_ids:
        return {}
    rows = (await s.execute(
        select(Adjustment, AdjustmentAccount).join(AdjustmentAccount, AdjustmentAccount.adjustment_id == Adjustment.id)
        .where(Adjustment.apply == "next_bill", Adjustment.state == "approved", AdjustmentAccount.posted_at.is_(None),
               AdjustmentAccount.account_id.in_(account_ids))
        .order_by(Adjustment.id)
    )).all()
    out: dict[int, list[tuple[Adjustment, AdjustmentAccount]]] = {}
    for adj, aa in rows:
        out.setdefault(aa.account_id, []).append((adj, aa))
    return out


async def load_bill_json(ctx: BillingContext, s: AsyncSession, bill_id: int) -> dict[str, Any]:
    bill = await s.get(Bill, bill_id)
    if bill is None:
        raise BillingError(f"no bill {bill_id}", status=404)
    sections = (await s.scalars(select(BillSection).where(BillSection.bill_id == bill_id).order_by(BillSection.room_id))).all()
    payments = (await s.scalars(select(BillPayment).where(BillPayment.bill_id == bill_id).order_by(BillPayment.id))).all()
    notes = (await s.scalars(select(CreditNote).where(CreditNote.bill_id == bill_id).order_by(CreditNote.id))).all()
    customer = await s.get(Customer, bill.customer_id) if bill.customer_id is not None else None
    return bill_json(ctx, bill, sections, customer=customer, payments=payments, notes=notes)


# -- allocation -----------------------------------------------------------------------------------
def _allocate(amount: int, sections: Sequence[BillSection]) -> list[tuple[BillSection, int]]:
    """Spread ``amount`` over the sections by what each has outstanding, in room order; what is
    left goes to the last section."""
    left = amount
    out: list[tuple[BillSection, int]] = []
    for i, sec in enumerate(sections):
        outstanding = max(0, sec.due_minor - sec.paid_minor - sec.credited_minor)
        take = left if i == len(sections) - 1 else min(left, outstanding)
        if take:
            out.append((sec, take))
        left -= take
    return out


async def _locked_bill(s: AsyncSession, bill_id: int) -> tuple[Bill, list[BillSection], dict[int, Account]]:
    bill = await s.scalar(select(Bill).where(Bill.id == bill_id).with_for_update())
    if bill is None:
        raise BillingError(f"no bill {bill_id}", status=404)
    sections = list((await s.scalars(select(BillSection).where(BillSection.bill_id == bill_id).order_by(BillSection.room_id))).all())
    ids = [sec.account_id for sec in sections]
    accounts = {a.id: a for a in (await s.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update())).all()}
    return bill, sections, accounts


async def pay_bill(
    ctx: BillingContext, bill_id: int, amount_minor: int, *, reference: str, channel: str, actor: Actor, now: dt.datetime,
) -> tuple[dict[str, Any], bool, list[AccountView]]:
    """Pay a bill: a ledger ``payment`` per account of the bill, allocated to its sections.
    The same (channel, reference) again answers with the first result; with another bill or
    amount it is a 409 naming ``reference``."""
    if amount_minor <= 0:
        raise BillingError("amount: must be greater than zero", field="amount")
    async with ctx.db.transaction() as s:
        first = await s.scalar(select(BillPayment).where(BillPayment.channel == channel, BillPayment.reference == reference))
        if first is not None:
            if first.bill_id != bill_id or first.amount_minor != amount_minor:
                raise BillingError(f"reference: {channel}/{reference} was already used for {ctx.fmt(first.amount_minor)} on bill {first.bill_id}",
                                   status=409, field="reference")
            return await load_bill_json(ctx, s, bill_id), True, []
        bill, sections, accounts = await _locked_bill(s, bill_id)
        outstanding = bill.total_due_minor - bill.paid_minor - bill.credited_minor
        if outstanding <= 0:
            raise BillingError(f"bill {bill.number} is paid", status=409)
        if amount_minor > outstanding:
            raise BillingError(f"amount: {ctx.fmt(amount_minor)} is more than the outstanding {ctx.fmt(outstanding)}", field="amount")
        allocations = []
        for sec, take in _allocate(amount_minor, sections):
            a = accounts[sec.account_id]
            if a.state != "open":
                raise BillingError(f"account {a.id} (room {a.room_id}) is closed", status=409)
            e = post(s, a, "payment", take, actor, now, reason=f"bill {bill.number}", channel=channel, reference=reference,
                     idem_key=f"payment:{channel}:{reference}:{a.id}", detail={"bill": bill.id, "number": bill.number})
            await s.flush()
            sec.paid_minor += take
            allocations.append({"account": a.id, "entry": e.id, "amount_minor": take})
            ctx.engine.biller.update_level(a, credited=True)
        bill.paid_minor += amount_minor
        bill.status = status_of(bill, ctx.today(now), _grace(ctx, None))
        bill.updated_at = now
        s.add(BillPayment(bill_id=bill.id, channel=channel, reference=reference, amount_minor=amount_minor, ts=now, actor=actor.name,
                          allocations=allocations))
        AuditLog.record(s, actor, "bill.payment", "bill", str(bill.id), after={
            "number": bill.number, "amount": ctx.fmt(amount_minor), "channel": channel, "reference": reference,
            "paid": ctx.fmt(bill.paid_minor), "status": bill.status})
        await s.flush()
        views = [account_view(accounts[al["account"]]) for al in allocations]
        return await load_bill_json(ctx, s, bill_id), False, views


def _grace(ctx: BillingContext, settings: AccountBilling | None) -> int:
    if settings is not None and settings.grace_days is not None:
        return settings.grace_days
    return ctx.cfg.dunning.grace_days


# -- credit notes ---------------------------------------------------------------------------------
async def create_credit_note(ctx: BillingContext, bill_id: int, amount_minor: int, reason: str, *, actor: Actor, now: dt.datetime) -> dict[str, Any]:
    if not reason.strip():
        raise BillingError("reason: a credit note needs a reason", field="reason")
    if amount_minor <= 0:
        raise BillingError("amount: must be greater than zero", field="amount")
    async with ctx.db.transaction() as s:
        bill = await s.get(Bill, bill_id)
        if bill is None:
            raise BillingError(f"no bill {bill_id}", status=404)
        sections = (await s.scalars(select(BillSection).where(BillSection.bill_id == bill_id))).all()
        charged = sum(ln["amount_minor"] for sec in sections for ln in sec.lines if ln["amount_minor"] > 0)
        open_notes = (await s.scalars(select(CreditNote).where(CreditNote.bill_id == bill_id, CreditNote.state.in_(("draft", "approved"))))).all()
        room = charged - sum(n.amount_minor for n in open_notes)
        if amount_minor > room:
            raise BillingError(f"amount: {ctx.fmt(amount_minor)} is more than the bill's charges not yet credited ({ctx.fmt(max(room, 0))})",
                               field="amount")
        note = CreditNote(bill_id=bill_id, amount_minor=amount_minor, reason=reason.strip(), state="draft", created_at=now,
                          created_by=actor.name, decision_reason="")
        s.add(note)
        await s.flush()
        AuditLog.record(s, actor, "credit_note.draft", "credit_note", str(note.id), reason=reason,
                        after={"bill": bill.number, "amount": ctx.fmt(amount_minor)})
        return credit_note_json(ctx, note)


async def approve_credit_note(ctx: BillingContext, note_id: int, *, actor: Actor, reason: str, now: dt.datetime) -> tuple[dict[str, Any], list[AccountView]]:
    """Post a drafted credit note: only a user other than its author may (the four-eyes rule)."""
    async with ctx.db.transaction() as s:
        note = await s.scalar(select(CreditNote).where(CreditNote.id == note_id).with_for_update())
        if note is None:
            raise BillingError(f"no credit note {note_id}", status=404)
        if note.state != "draft":
            raise BillingError(f"credit note {note_id} is {note.state}", status=409)
        if note.created_by == actor.name:
            raise BillingError("the four-eyes rule: a credit note is approved by a user other than its author", status=403)
        bill, sections, accounts = await _locked_bill(s, note.bill_id)
        allocations = []
        for sec, take in _allocate(note.amount_minor, sections):
            a = accounts[sec.account_id]
            e = post(s, a, "adjustment", take, actor, now, reason=f"credit note {note.id} on bill {bill.number}: {note.reason}",
                     idem_key=f"credit_note:{note.id}:{a.id}", detail={"credit_note": note.id, "bill": bill.id, "number": bill.number})
            await s.flush()
            sec.credited_minor += take
            allocations.append({"account": a.id, "entry": e.id, "amount_minor": take})
            ctx.engine.biller.update_level(a, credited=True)
        bill.credited_minor += note.amount_minor
        bill.status = status_of(bill, ctx.today(now), _grace(ctx, None))
        bill.updated_at = now
        note.state, note.decided_at, note.decided_by, note.decision_reason, note.allocations = "approved", now, actor.name, reason, allocations
        AuditLog.record(s, actor, "credit_note.approve", "credit_note", str(note.id), reason=reason,
                        before={"state": "draft", "author": note.created_by},
                        after={"bill": bill.number, "amount": ctx.fmt(note.amount_minor), "allocations": allocations})
        views = [account_view(accounts[al["account"]]) for al in allocations]
        return credit_note_json(ctx, note), views


async def reject_credit_note(ctx: BillingContext, note_id: int, *, actor: Actor, reason: str, now: dt.datetime) -> dict[str, Any]:
    if not reason.strip():
        raise BillingError("reason: a rejection needs a reason", field="reason")
    async with ctx.db.transaction() as s:
        note = await s.scalar(select(CreditNote).where(CreditNote.id == note_id).with_for_update())
        if note is None:
            raise BillingError(f"no credit note {note_id}", status=404)
        if note.state != "draft":
            raise BillingError(f"credit note {note_id} is {note.state}", status=409)
        note.state, note.decided_at, note.decided_by, note.decision_reason = "rejected", now, actor.name, reason
        AuditLog.record(s, actor, "credit_note.reject", "credit_note", str(note.id), reason=reason, before={"state": "draft"}, after={"state": "rejected"})
        return credit_note_json(ctx, note)


def ids_of(items: Iterable[dict[str, Any]]) -> list[int]:
    return [int(i["id"]) for i in items if i.get("id") is not None]
