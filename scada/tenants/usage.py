"""What a tenant sees of an account: balance, estimated days of credit left, today's and this
month's consumption and cost, and the last 30 days day by day.

Cost is the sum of the day's deductions (integer minor units, summed by the database).
Consumption is exact too, without fetching every deduction: for each local day, meter and
billing segment the database gives the first and the last deduction (by id; within a segment
deductions follow the register), and the day's consumption is the last one's ``reading_to``
minus the first one's ``reading_from``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import AccountView
from scada.prepaid.models import LedgerEntry
from scada.prepaid.money import format_minor

__all__ = ["AccountSummary", "DayUsage", "account_summary", "days_left"]

UNITS = {"electricity": "kWh", "water": "m³"}


@dataclass
class DayUsage:
    day: dt.date
    cost_minor: int = 0
    quantity: dict[str, Decimal] = field(default_factory=dict)  # by commodity

    def add(self, other: DayUsage) -> None:
        self.cost_minor += other.cost_minor
        for k, v in other.quantity.items():
            self.quantity[k] = self.quantity.get(k, Decimal(0)) + v

    def as_json(self, minor_units: int) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "cost": format_minor(self.cost_minor, minor_units),
                "quantity": {k: format(v.normalize() if v else Decimal(0), "f") for k, v in sorted(self.quantity.items())}}


@dataclass
class AccountSummary:
    account: AccountView
    days_left: Decimal | None  # None: no consumption to estimate from
    today: DayUsage
    month: DayUsage
    days: list[DayUsage]  # the last 30 local days, oldest first
    commodities: list[str]

    def as_json(self, minor_units: int, currency: str) -> dict[str, Any]:
        a = self.account
        return {
            "account": a.id, "room": a.room_id, "state": a.state, "mode": a.mode, "currency": currency,
            "balance": format_minor(a.balance_minor, minor_units), "alarm_level": a.alarm_level, "supply_state": a.supply_state,
            "days_left": format(self.days_left, "f") if self.days_left is not None else None,
            "today": self.today.as_json(minor_units), "month": self.month.as_json(minor_units),
            "days": [d.as_json(minor_units) for d in self.days],
            "units": {c: UNITS.get(c, "") for c in self.commodities},
        }


def days_left(balance_minor: int, daily_cost_minor: Decimal | None) -> Decimal | None:
    """Days of credit left at the average daily cost, to a tenth of a day (0 when used up)."""
    if balance_minor <= 0:
        return Decimal(0)
    if daily_cost_minor is None or daily_cost_minor <= 0:
        return None
    return (Decimal(balance_minor) / daily_cost_minor).quantize(Decimal("0.1"))


async def account_summary(engine: PrepaidEngine, account: AccountView, *, now: dt.datetime, days: int = 30) -> AccountSummary:
    tz: ZoneInfo = engine.tz
    today = now.astimezone(tz).date()
    first = min(today - dt.timedelta(days=days - 1), today.replace(day=1))
    n = (today - first).days + 1
    bounds = [dt.datetime.combine(first + dt.timedelta(days=i), dt.time(0), tz).astimezone(dt.UTC) for i in range(n + 1)]
    bucket = case(*((LedgerEntry.ts < bounds[i + 1], i) for i in range(n)), else_=n)
    snapshot = engine.assets.snapshot
    async with engine.db.reads() as s:
        groups = (await s.execute(
            select(bucket.label("d"), LedgerEntry.meter_id, LedgerEntry.segment, func.sum(LedgerEntry.amount_minor),
                   func.min(LedgerEntry.id), func.max(LedgerEntry.id))
            .where(LedgerEntry.account_id == account.id, LedgerEntry.kind == "deduction", LedgerEntry.ts >= bounds[0],
                   LedgerEntry.ts < bounds[-1])
            .group_by(bucket, LedgerEntry.meter_id, LedgerEntry.segment)
        )).all()
        ids = {i for g in groups for i in (g[4], g[5])}
        readings = {r[0]: (r[1], r[2]) for r in (await s.execute(
            select(LedgerEntry.id, LedgerEntry.reading_from, LedgerEntry.reading_to).where(LedgerEntry.id.in_(ids)))).all()} if ids else {}
    per_day = [DayUsage(first + dt.timedelta(days=i)) for i in range(n)]
    commodities: set[str] = set()
    for d, meter_id, _segment, cost, first_id, last_id in groups:
        if not 0 <= d < n:
            continue
        usage = per_day[d]
        usage.cost_minor -= int(cost or 0)  # deductions are debits: a cost is their negative
        meter = snapshot.meters.get(meter_id) if meter_id else None
        commodity = meter.kind if meter is not None else "electricity"
        commodities.add(commodity)
        start, end = readings.get(first_id, (None, None))[0], readings.get(last_id, (None, None))[1]
        if start is not None and end is not None and end >= start:
            usage.quantity[commodity] = usage.quantity.get(commodity, Decimal(0)) + (end - start)
    for m in snapshot.meters_of_room(account.room_id):
        if m.role == "tenant":
            commodities.add(m.kind)
    for usage in per_day:
        for c in commodities:
            usage.quantity.setdefault(c, Decimal(0))
    month = DayUsage(today.replace(day=1))
    for usage in per_day:
        if usage.day >= month.day:
            month.add(usage)
    return AccountSummary(
        account, days_left(account.balance_minor, engine.biller.daily_cost(account.id)), per_day[-1], month, per_day[-days:],
        sorted(commodities),
    )
