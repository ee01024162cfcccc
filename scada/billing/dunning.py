"""Overdue bills: statuses, dunning levels, late fees, and the arrears with their aging.

Once a day (and after every payment) the pass looks at every bill not paid. A bill is
``overdue`` after its due date and the grace days (configured, or the account's own). A
postpaid account's dunning level is the highest level (``[billing.dunning] levels``) its
overdue bills reached by their days overdue; it becomes the account's alarm level (the same
balance alarm classes), and at ``cut_level`` the supply is cut if the account is configured
so, with the cutoff policy's friendly-credit windows and protections. The late-payment fee is
posted as its own ledger line (kind ``late_fee``) for every day a bill is overdue: the day's
``rate`` × the bill's overdue amount, rounded, idempotent per bill, account and day
(``late_fee:<bill>:<account>:<day>``), never more in total per bill than ``cap`` (money) and
``cap_rate`` × the overdue amount. A bill whose accounts owe nothing any more (paid by other
credits, e.g. a recharge) is ``paid``.

A bill's total due is everything the account owed at its close, so bills overlap; what each
bill still has outstanding is therefore attributed first in, first out: what the account owes
now is spread over its bills' own charges from the newest back (after what no bill shows yet),
so credits pay the oldest bills first, and neither the dunning, the late fee nor the aging counts
one amount twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.bills import BILLING, status_of
from scada.billing.context import BillingContext
from scada.billing.models import AccountBilling, Bill, BillSection, Customer
from scada.billing.periods import month
from scada.prepaid.ledger import AccountView, account_view, post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.pricing import plain, round_fraction

__all__ = ["BUCKETS", "ArrearsRow", "DunningResult", "arrears", "arrears_rows", "dunning_pass", "late_fee_for_day"]

log = logging.getLogger(__name__)

BUCKETS = ("0-30", "31-60", "61-90", "90+")


@dataclass
class DunningResult:
    late_fees: int = 0
    levels: dict[int, tuple[int, bool]] = field(default_factory=dict)  # postpaid account → (level, cut)
    changed: list[AccountView] = field(default_factory=list)


def attribute(balance_minor: int, sections: list[BillSection], *, debited_after: int) -> tuple[int, dict[int, int]]:
    """What an account with ``balance_minor`` owes, spread over its bill ``sections`` (any
    order): (the part no bill shows yet, {section id: the part attributed to it}).

    ``debited_after`` is what was debited (consumption, charges, fees: the negative entries, as a
    positive sum) after the period of the newest section; with the balance it gives what was
    credited since. A credit pays the oldest bills first, so it reaches what no bill shows yet
    only once every bill is paid: netting credits against the new debits first would leave old
    bills owing (and overdue) after they were paid, and age new consumption as old debt."""
    owed = max(0, -balance_minor)
    newest = sorted(sections, key=lambda x: x.period, reverse=True)
    out = {sec.id: 0 for sec in newest}
    if not newest or owed == 0:
        return owed, out
    billed = -newest[0].closing_minor  # what the newest bill left owing (negative: a credit)
    credited_after = balance_minor + billed + debited_after  # balance = closing − debits + credits
    unbilled = min(owed, max(0, debited_after - max(0, credited_after - billed)))
    left = owed - unbilled
    for sec in newest:
        take = min(left, max(0, sec.total_minor))
        out[sec.id] = take
        left -= take
    if left:  # owed from before the first bill: the oldest bill carries it
        out[newest[-1].id] += left
    return unbilled, out


async def debits_after_bills(s: AsyncSession, sections: dict[int, list[BillSection]], tz: ZoneInfo,
                             as_of: dt.datetime | None = None) -> dict[int, int]:
    """Per account (``sections``: its bill sections): what was debited after the period of its
    newest section (before ``as_of``), for :func:`attribute`. One query per distinct period."""
    by_end: dict[dt.datetime, list[int]] = {}
    for account_id, secs in sections.items():
        if secs:
            newest = max(secs, key=lambda x: x.period)
            by_end.setdefault(month(newest.period).bounds(tz)[1], []).append(account_id)
    out: dict[int, int] = {}
    e = LedgerEntry
    for end, ids in by_end.items():
        for i in range(0, len(ids), 500):
            q = select(e.account_id, func.sum(e.amount_minor)).where(e.account_id.in_(ids[i:i + 500]), e.ts >= end, e.amount_minor < 0)
            if as_of is not None:
                q = q.where(e.ts < as_of)
            for account_id, total in (await s.execute(q.group_by(e.account_id))).all():
                out[int(account_id)] = -int(total or 0)  # NUMERIC sums on PostgreSQL
    return out


def late_fee_for_day(overdue_minor: int, rate: Decimal, charged_minor: int, cap_minor: int | None, minor_units: int, rounding: str) -> int:
    """One day's late fee: ``rate`` × the overdue amount, rounded, within what the cap leaves."""
    fee = round_fraction(Fraction(overdue_minor, 10**minor_units) * Fraction(rate), minor_units, rounding)
    if cap_minor is not None:
        fee = min(fee, cap_minor - charged_minor)
    return max(fee, 0)


def _cap(ctx: BillingContext, overdue_minor: int, settings: AccountBilling | None) -> int | None:
    caps = []
    lf = ctx.cfg.late_fee
    if settings is not None and settings.late_fee_cap_minor is not None:
        caps.append(settings.late_fee_cap_minor)
    elif lf.cap is not None:
        caps.append(int(lf.cap.scaleb(ctx.minor_units)))
    if lf.cap_rate is not None:
        caps.append(round_fraction(Fraction(overdue_minor, 10**ctx.minor_units) * Fraction(lf.cap_rate), ctx.minor_units, "down"))
    return min(caps) if caps else None


def _level(ctx: BillingContext, days_over: int) -> int:
    return max((lv.level for lv in ctx.cfg.dunning.levels if days_over >= lv.days), default=0)


async def dunning_pass(ctx: BillingContext, now: dt.datetime) -> DunningResult:
    """Statuses, late fees and dunning levels as of ``now`` (idempotent: run it as often as you like)."""
    today = ctx.today(now)
    result = DunningResult()
    async with ctx.db.transaction() as s:
        bills = list((await s.scalars(select(Bill).where(Bill.status != "paid").order_by(Bill.id).with_for_update())).all())
        sections: dict[int, list[BillSection]] = {}
        if bills:
            for sec in (await s.scalars(select(BillSection).where(BillSection.bill_id.in_([b.id for b in bills])))).all():
                sections.setdefault(sec.bill_id, []).append(sec)
        account_ids = sorted({sec.account_id for secs in sections.values() for sec in secs})
        postpaid = list((await s.scalars(select(Account).where(Account.mode == "postpaid", Account.state == "open"))).all())
        ids = sorted(set(account_ids) | {a.id for a in postpaid})
        accounts = {a.id: a for a in (await s.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update())).all()} if ids else {}
        settings = {b.account_id: b for b in (await s.scalars(select(AccountBilling).where(AccountBilling.account_id.in_(ids)))).all()} if ids else {}
        levels: dict[int, int] = {a.id: 0 for a in postpaid}
        changed: dict[int, Account] = {}
        every = list(await s.scalars(select(BillSection).where(BillSection.account_id.in_(account_ids)))) if account_ids else []
        owed: dict[int, int] = {}
        of_account: dict[int, list[BillSection]] = {}
        for x in every:
            of_account.setdefault(x.account_id, []).append(x)
        debited = await debits_after_bills(s, of_account, ctx.tz)
        for account_id in account_ids:
            _, parts = attribute(accounts[account_id].balance_minor, of_account.get(account_id, []),
                                 debited_after=debited.get(account_id, 0))
            owed.update(parts)
        for bill in bills:
            secs = sections.get(bill.id, [])
            first = settings.get(secs[0].account_id) if secs else None
            grace = first.grace_days if first is not None and first.grace_days is not None else ctx.cfg.dunning.grace_days
            outstanding_bill = sum(owed.get(sec.id, 0) for sec in secs)
            if outstanding_bill == 0:
                if bill.status != "paid":
                    bill.status, bill.updated_at = "paid", now  # nothing of it is owed any more
                continue
            status = status_of(bill, today, grace)
            if status == "paid":  # paid against its total due, yet the account owes this bill's charges
                status = "partly_paid"
            if status != bill.status:
                bill.status, bill.updated_at = status, now
            if status != "overdue":
                continue
            overdue_from = bill.due_date + dt.timedelta(days=grace)
            days_over = (today - overdue_from).days
            for sec in secs:
                a = accounts[sec.account_id]
                outstanding = owed.get(sec.id, 0)
                if outstanding <= 0 or a.state != "open" or a.mode != "postpaid":
                    continue
                levels[a.id] = max(levels.get(a.id, 0), _level(ctx, days_over))
                st = settings.get(a.id)
                rate = st.late_fee_rate if st is not None and st.late_fee_rate is not None else ctx.cfg.late_fee.rate_per_day
                if rate <= 0:
                    continue
                cap = _cap(ctx, outstanding, st)
                days = [overdue_from + dt.timedelta(days=i) for i in range(1, min(days_over, 3650) + 1)]
                keys = [f"late_fee:{bill.id}:{a.id}:{d.isoformat()}" for d in days]
                done: set[str] = set()
                for i in range(0, len(keys), 500):
                    done.update(k for k in (await s.scalars(select(LedgerEntry.idem_key).where(LedgerEntry.idem_key.in_(keys[i:i + 500])))).all() if k)
                for day, key in zip(days, keys, strict=True):
                    if key in done:
                        continue
                    fee = late_fee_for_day(outstanding, rate, sec.late_fees_minor, cap, ctx.minor_units, ctx.rounding)
                    if fee <= 0:
                        break
                    post(s, a, "late_fee", -fee, BILLING, now, reason=f"late fee {day.isoformat()}, bill {bill.number}", idem_key=key,
                         detail={"bill": bill.id, "number": bill.number, "day": day.isoformat(), "rate": plain(rate),
                                 "overdue_minor": outstanding})
                    sec.late_fees_minor += fee
                    result.late_fees += 1
                    changed[a.id] = a
        for a in postpaid:
            st = settings.get(a.id)
            cut_cfg = st.cut_when_overdue if st is not None and st.cut_when_overdue is not None else ctx.cfg.dunning.cut_when_overdue
            level = levels.get(a.id, 0)
            result.levels[a.id] = (level, bool(cut_cfg) and level >= ctx.cfg.dunning.cut_level)
        for a in changed.values():
            ctx.engine.biller.update_level(a, credited=False)
        result.changed = [account_view(a) for a in changed.values()]
    return result


@dataclass
class ArrearsRow:
    """What one account owes at a moment, aged by the due dates of its bills (minor units)."""

    account: int
    room: str
    mode: str
    state: str
    customer: int | None
    customer_name: str
    balance_minor: int
    unpaid_bills: int
    outstanding_minor: int
    buckets: dict[str, int]
    dunning_level: int

    @property
    def total_minor(self) -> int:
        return sum(self.buckets.values())


def _bucket(age: int) -> str:
    return "0-30" if age <= 30 else "31-60" if age <= 60 else "61-90" if age <= 90 else "90+"


async def arrears_rows(s: AsyncSession, today: dt.date, tz: ZoneInfo, as_of: dt.datetime | None = None) -> list[ArrearsRow]:
    """Accounts with a negative balance or unpaid bills, with what they owe aged by the due dates
    of their bills (a credit pays the oldest bills first; what no bill shows yet is 0–30).

    ``as_of`` None: now (the accounts' balances, the bills' statuses). A past moment: the balance
    is the sum of the account's entries before it, the bills are those issued before it, and a
    bill counts as unpaid when part of what the account owed then is attributed to it."""
    if as_of is None:
        unpaid = list((await s.execute(
            select(BillSection, Bill).join(Bill, Bill.id == BillSection.bill_id).where(Bill.status != "paid")
        )).all())
        with_bills = {sec.account_id for sec, _ in unpaid}
        accounts = list((await s.scalars(select(Account).where(or_(Account.balance_minor < 0, Account.id.in_(with_bills))).order_by(Account.room_id))).all())
        balance_of = {a.id: a.balance_minor for a in accounts}
        issued = (await s.execute(select(BillSection, Bill).join(Bill, Bill.id == BillSection.bill_id)
                                  .where(BillSection.account_id.in_([a.id for a in accounts])))).all() if accounts else []
    else:
        sums = dict((await s.execute(select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_minor))
                                     .where(LedgerEntry.ts < as_of).group_by(LedgerEntry.account_id))).all())
        issued = (await s.execute(select(BillSection, Bill).join(Bill, Bill.id == BillSection.bill_id).where(Bill.issued_at < as_of))).all()
        with_bills = {sec.account_id for sec, _ in issued}
        balance_of = {int(k): int(v or 0) for k, v in sums.items()}
        wanted = {a for a, b in balance_of.items() if b < 0} | with_bills
        accounts = list((await s.scalars(select(Account).where(Account.id.in_(wanted)).order_by(Account.room_id))).all()) if wanted else []
    sections_of: dict[int, list[BillSection]] = {}
    due_of: dict[int, dt.date] = {}
    for sec, bill in issued:
        sections_of.setdefault(sec.account_id, []).append(sec)
        due_of[sec.id] = bill.due_date
    unpaid_ids = {sec.id for sec, _ in unpaid} if as_of is None else None
    settings = {b.account_id: b for b in (await s.scalars(select(AccountBilling))).all()}
    customers = {c.id: c for c in (await s.scalars(select(Customer))).all()}
    debited = await debits_after_bills(s, {a.id: sections_of.get(a.id, []) for a in accounts}, tz, as_of)
    rows = []
    for a in accounts:
        balance = balance_of.get(a.id, 0)
        unbilled, parts = attribute(balance, sections_of.get(a.id, []), debited_after=debited.get(a.id, 0))
        if as_of is not None and balance >= 0 and not any(parts.values()):
            continue  # every bill issued by then was paid by then
        buckets = dict.fromkeys(BUCKETS, 0)
        buckets["0-30"] += unbilled
        for sec_id, amount in parts.items():
            buckets[_bucket(max(0, (today - due_of[sec_id]).days))] += amount
        mine = [sid for sid in parts if (sid in unpaid_ids if unpaid_ids is not None else parts[sid] > 0)]
        st = settings.get(a.id)
        c = customers.get(st.customer_id) if st is not None and st.customer_id is not None else None
        rows.append(ArrearsRow(a.id, a.room_id, a.mode, a.state, c.id if c else None, c.name if c else a.contact_name, balance,
                               len(mine), sum(parts.get(sid, 0) for sid in mine), buckets, a.dunning_level))
    return rows


async def arrears(ctx: BillingContext, now: dt.datetime) -> dict[str, Any]:
    """Accounts with a negative balance or unpaid bills, aged (see :func:`arrears_rows`)."""
    f = ctx.fmt
    async with ctx.db.reads() as s:
        found = await arrears_rows(s, ctx.today(now), ctx.tz)
    totals = dict.fromkeys(BUCKETS, 0)
    rows = []
    for r in found:
        for k in BUCKETS:
            totals[k] += r.buckets[k]
        rows.append({
            "account": r.account, "room": r.room, "mode": r.mode, "state": r.state, "customer": r.customer,
            "customer_name": r.customer_name, "balance": f(r.balance_minor), "unpaid_bills": r.unpaid_bills,
            "outstanding": f(r.outstanding_minor), "buckets": {k: f(v) for k, v in r.buckets.items()}, "total": f(r.total_minor),
            "dunning_level": r.dunning_level,
        })
    return {"as_of": now.isoformat(), "accounts": rows, "totals": {**{k: f(v) for k, v in totals.items()}, "total": f(sum(totals.values()))}}
