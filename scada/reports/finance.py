"""The ``finance`` report: what moved the accounts' balances, per interval and per channel,
cashier, room, floor, building or customer, with the opening and closing balances, checked
against the ledger.

Columns (money; one-sided kinds as positive amounts, two-sided ones signed as they moved the
balances, + a credit):

- ``openings`` (opening balances credited), ``recharges``, ``payments`` (bills paid),
  ``refunds``, ``settlements`` (cash paid out at account closing);
- ``deductions``, the sum of ``deductions_energy`` (consumption: electricity and water),
  ``deductions_capacity`` (two-part capacity or demand charges), ``deductions_charges`` (custom
  charges: rent, property fees), ``deductions_apportionment`` (shares of common consumption and
  losses), ``deductions_adjustments`` (retroactive re-pricing and credit notes: a credit is a
  negative deduction), ``deductions_late_fees``;
- ``reversals`` (signed), ``other`` (any other kind, signed);
- ``net`` = openings + recharges + payments − refunds − settlements − deductions + reversals + other:
  exactly the sum of the entries;
- by room, floor, building or customer also ``opening_balance`` and ``closing_balance`` of the
  group's accounts; by channel or cashier those are per interval (``balances``) and overall.

An entry's channel is its ``channel`` (a reversal's: the channel of the entry it undoes;
``null`` for entries that have none: the engine's deductions, charges); its cashier is the user or process that posted it (``actor``).

Reconciliation: the balance of all accounts at ``from`` plus every entry of the range must be
their balance at ``to`` (both summed by the database, independently of the grouping); each
account's entries must add up to the running balance of its last entry and to its balance; and
when nothing was posted at or after ``to``, each account's balance at ``to`` must be its balance now. Otherwise :class:`LedgerMismatch`
is raised and nothing is answered: the report says ``"reconciled": true`` or fails loudly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Text, case, cast, func, select
from sqlalchemy.orm import aliased

from scada.core.limits import check_answer_size
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import format_minor
from scada.reports.params import ReportRequest, bucket_label, bucket_of, bucket_starts, count_buckets
from scada.reports.sources import Grouping, Sources, account_grouping
from scada.reports.table import Column, Report

__all__ = ["FLOWS", "LedgerMismatch", "finance_report"]

log = logging.getLogger(__name__)

DEDUCTIONS = ("deductions_energy", "deductions_capacity", "deductions_charges", "deductions_apportionment",
              "deductions_adjustments", "deductions_late_fees")
FLOWS = ("openings", "recharges", "payments", "refunds", "settlements", "deductions", *DEDUCTIONS, "reversals", "other", "net")
# ledger kind → (column, sign applied to the entry's amount)
SLOTS: dict[str, tuple[str, int]] = {
    "opening": ("openings", 1), "recharge": ("recharges", 1), "payment": ("payments", 1), "refund": ("refunds", -1),
    "settlement": ("settlements", -1), "deduction": ("deductions_energy", -1), "apportionment": ("deductions_apportionment", -1),
    "adjustment": ("deductions_adjustments", -1), "late_fee": ("deductions_late_fees", -1), "reversal": ("reversals", 1),
}
_RAW = ("openings", "recharges", "payments", "refunds", "settlements", *DEDUCTIONS, "reversals", "other")
ACCOUNT_GROUPS = ("room", "floor", "building", "customer")


class LedgerMismatch(RuntimeError):
    """The report's totals do not reconcile with the ledger; ``problems`` says where."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the finance report does not reconcile with the ledger: " + "; ".join(problems[:10])
                         + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
        self.problems = problems


def _slot(kind: str, detail: str | None) -> tuple[str, int]:
    if kind == "charge":
        basis_capacity = detail is not None and ('"basis": "capacity"' in detail or '"basis": "demand"' in detail
                                                 or '"basis":"capacity"' in detail or '"basis":"demand"' in detail)
        return ("deductions_capacity" if basis_capacity else "deductions_charges", -1)
    return SLOTS.get(kind, ("other", 1))


async def _entries(src: Sources, request: ReportRequest) -> pd.DataFrame:
    e = LedgerEntry
    orig = aliased(LedgerEntry)
    # a reversal counts in the channel of the entry it undoes (a reversed WeChat recharge nets WeChat)
    stmt = select(e.ts, e.account_id, e.kind, e.amount_minor, func.coalesce(e.channel, orig.channel), e.actor,
                  case((e.kind == "charge", cast(e.detail, Text)), else_=None)).outerjoin(
        orig, e.reverses_id == orig.id).where(e.ts >= request.start, e.ts < request.end)
    async with src.db.reads() as s:
        rows = (await s.execute(stmt)).all()
    return pd.DataFrame(rows, columns=["ts", "account", "kind", "amount", "channel", "actor", "detail"])


Balances = dict[int, int]


def _as_int(d: dict[Any, Any]) -> Balances:
    return {int(k): int(v or 0) for k, v in d.items()}  # NUMERIC sums on PostgreSQL


async def _balances(src: Sources, request: ReportRequest) -> tuple[Balances, Balances, Balances, Balances, Balances, bool]:
    """Per account: the balance at ``from`` and at ``to`` (sums), the running balance of its last
    entry, the sum of all its entries, its balance now; and whether nothing was posted at or after ``to``."""
    e = LedgerEntry
    async with src.db.reads() as s:
        before = dict((await s.execute(select(e.account_id, func.sum(e.amount_minor)).where(e.ts < request.start).group_by(e.account_id))).all())
        upto = dict((await s.execute(select(e.account_id, func.sum(e.amount_minor)).where(e.ts < request.end).group_by(e.account_id))).all())
        last_ids = select(func.max(e.id)).group_by(e.account_id).scalar_subquery()
        running = dict((await s.execute(select(e.account_id, e.balance_after_minor).where(e.id.in_(last_ids)))).all())
        every = dict((await s.execute(select(e.account_id, func.sum(e.amount_minor)).group_by(e.account_id))).all())
        now = dict((await s.execute(select(Account.id, Account.balance_minor))).all())
        later = await s.scalar(select(func.count()).select_from(e).where(e.ts >= request.end))
    return _as_int(before), _as_int(upto), _as_int(running), _as_int(every), _as_int(now), not later


def _flows(entries: pd.DataFrame, request: ReportRequest, key: pd.Series) -> pd.DataFrame:
    """(label, group) → the flow columns."""
    if entries.empty:
        return pd.DataFrame(columns=["label", "group", *_RAW])
    local = pd.to_datetime(entries["ts"], utc=True).dt.tz_convert(request.tz)
    codes, days = pd.factorize(local.dt.date)
    labels = np.asarray([bucket_label(bucket_of(d, request.interval), request.interval) for d in days], dtype=object)
    slots = [_slot(k, d) for k, d in zip(entries["kind"], entries["detail"], strict=True)]
    frame = pd.DataFrame({
        "label": labels[codes], "group": key.to_numpy(dtype=object),
        "slot": [s for s, _ in slots], "value": entries["amount"].to_numpy(dtype="int64") * np.asarray([g for _, g in slots], dtype="int64"),
    })
    wide = frame.groupby(["label", "group", "slot"], sort=False, dropna=False)["value"].sum().unstack("slot", fill_value=0)
    return wide.reindex(columns=list(_RAW), fill_value=0).reset_index()


def _finish_flows(frame: pd.DataFrame) -> pd.DataFrame:
    for c in _RAW:
        frame[c] = frame[c].fillna(0).astype("int64")
    frame["deductions"] = frame[list(DEDUCTIONS)].sum(axis=1)
    frame["net"] = (frame["openings"] + frame["recharges"] + frame["payments"] - frame["refunds"] - frame["settlements"]
                    - frame["deductions"] + frame["reversals"] + frame["other"])
    return frame


def _group_key(entries: pd.DataFrame, request: ReportRequest, grouping: Grouping | None) -> pd.Series:
    if request.group == "channel":
        return entries["channel"].astype(object).where(entries["channel"].notna(), None)
    if request.group == "cashier":
        return entries["actor"].astype(object)
    assert grouping is not None
    return entries["account"].map(grouping.by_member).astype(object)


def _build(request: ReportRequest, entries: pd.DataFrame, grouping: Grouping | None, before: dict[int, int],
           labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows, and per interval the balances of all accounts."""
    key = _group_key(entries, request, grouping) if len(entries) else pd.Series([], dtype=object)
    flows = _flows(entries, request, key)
    # every account's flows per interval: the balances of all accounts
    per_label = flows.groupby("label")[list(_RAW)].sum() if len(flows) else pd.DataFrame(columns=list(_RAW))
    per_label = _finish_flows(per_label.reindex(labels).reset_index().rename(columns={"index": "label"}))
    opening_all = sum(before.values())
    net = per_label["net"].to_numpy(dtype="int64")
    closing = opening_all + np.cumsum(net)
    balances = pd.DataFrame({"label": labels, "opening_balance": closing - net, "closing_balance": closing})
    if grouping is None:  # channel, cashier: the combinations that occur
        rows = _finish_flows(flows.sort_values(["label", "group"], key=lambda s: s.astype(str), kind="stable").reset_index(drop=True))
        return rows, balances
    index = pd.MultiIndex.from_product([labels, grouping.groups], names=["label", "group"])
    rows = flows[flows["group"].notna()].set_index(["label", "group"]).reindex(index).reset_index()
    rows = _finish_flows(rows)
    opening_of: dict[str, int] = dict.fromkeys(grouping.groups, 0)
    for account, amount in before.items():
        g = grouping.by_member.get(account)
        if g is not None:
            opening_of[g] += amount
    net_matrix = rows["net"].to_numpy(dtype="int64").reshape(len(labels), len(grouping.groups))
    start = np.asarray([opening_of[g] for g in grouping.groups], dtype="int64")
    closing_m = start + np.cumsum(net_matrix, axis=0)
    rows["opening_balance"] = (closing_m - net_matrix).reshape(-1)
    rows["closing_balance"] = closing_m.reshape(-1)
    return rows, balances


def _check(entries: pd.DataFrame, before: Balances, upto: Balances, running: Balances, every: Balances, now: Balances,
           current: bool, minor_units: int) -> dict[str, Any]:
    def f(v: int) -> str:
        return format_minor(v, minor_units)

    problems: list[str] = []
    opening, closing = sum(before.values()), sum(upto.values())
    flows = int(entries["amount"].sum()) if len(entries) else 0
    if opening + flows != closing:
        problems.append(f"all accounts: {f(opening)} at from plus the range's entries {f(flows)} is {f(opening + flows)}, "
                        f"but the ledger sums to {f(closing)} at to")
    for account, total in sorted(every.items()):
        if running.get(account, 0) != total or now.get(account, 0) != total:
            problems.append(f"account {account}: its entries add up to {f(total)}, its last entry's running balance is "
                            f"{f(running.get(account, 0))}, its balance is {f(now.get(account, 0))}")
    for account, balance in sorted(upto.items()):
        if current and now.get(account, 0) != balance:
            problems.append(f"account {account}: its entries add up to {f(balance)}, its balance is {f(now.get(account, 0))}")
    if current:
        for account, balance in sorted(now.items()):
            if account not in upto and balance != 0:
                problems.append(f"account {account}: no entries, but a balance of {f(balance)}")
    if problems:
        log.error("finance report does not reconcile", extra={"problems": problems[:20]})
        raise LedgerMismatch(problems)
    return {"opening_balance": f(opening), "entries": f(flows), "closing_balance": f(closing), "accounts": len(upto),
            "entry_count": len(entries), "against_account_balances": current}


async def finance_report(src: Sources, request: ReportRequest) -> Report:
    buckets = count_buckets(request)
    grouping: Grouping | None = None
    if request.group in ACCOUNT_GROUPS:
        grouping = await account_grouping(src.db, src.snapshot(), request.group)
        check_answer_size(buckets * max(1, len(grouping.groups)), src.row_limit(request), field="to",
                          hint="narrow the range, use a longer interval or a coarser group")
    else:
        check_answer_size(buckets, src.row_limit(request), field="to", hint="narrow the range or use a longer interval")
    src.started += 1
    src.step("ledger", 0.0)
    entries = await _entries(src, request)
    src.step("balances", 0.4)
    before, upto, running, every, now, current = await _balances(src, request)
    src.step("grouping", 0.6)
    labels = list(dict.fromkeys(bucket_label(d, request.interval) for d in bucket_starts(request)))
    rows, balances = await asyncio.to_thread(_build, request, entries, grouping, before, labels)
    # channels × cashiers are known only now: the rows are checked again before they are shaped
    check_answer_size(len(rows), src.row_limit(request), field="to", hint="narrow the range or use a longer interval")
    reconciliation = _check(entries, before, upto, running, every, now, current, src.minor_units)
    rows = rows.rename(columns={"label": request.interval, "group": request.group})
    values = [Column(c, "money") for c in FLOWS]
    if grouping is not None:
        values = [Column("opening_balance", "money", "first"), *values, Column("closing_balance", "money", "last")]
    for c in values:
        rows[c.name] = rows[c.name].astype("Int64")
    keys = [Column(request.interval), Column(request.group)]
    if request.group == "customer" and grouping is not None:
        rows.insert(2, "customer_name", rows["customer"].map(grouping.names).astype(object))
        keys.append(Column("customer_name"))
    rows = rows[[k.name for k in keys] + [c.name for c in values]]
    report = Report(request, keys, values, rows, src.minor_units, src.currency, interval_key=request.interval, group_key=request.group)
    report.finish()
    for name in FLOWS:  # nothing moved: 0.00, not "no data"
        if report.totals.get(name) is None:
            report.totals[name] = 0
    report.totals["opening_balance"] = sum(before.values())
    report.totals["closing_balance"] = sum(upto.values())
    def fmt(v: Any) -> str:
        return format_minor(int(v), src.minor_units)

    report.meta["reconciled"] = True
    report.meta["reconciliation"] = reconciliation
    report.meta["balances"] = [{request.interval: lab, "opening_balance": fmt(o), "closing_balance": fmt(c)}
                               for lab, o, c in balances.itertuples(index=False)]
    return report
