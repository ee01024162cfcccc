"""Periodic charges of two-part tariffs: a capacity (kVA) or contracted demand (kW) charge per
month, charged daily pro rata (each day once it is over; a month adds up to the monthly charge
exactly, see :func:`.pricing.prorata_minor`) or monthly (on the 1st). Every charge is keyed by
account, tariff and period, so it is never posted twice, whatever the restarts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.prepaid.deduction import ENGINE
from scada.prepaid.ledger import post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import Rounding
from scada.prepaid.pricing import TariffTimeline, prorata_minor
from tags import utcnow

__all__ = ["days_in_month", "post_due_charges"]


async def post_due_charges(s: AsyncSession, a: Account, plans: list[TariffTimeline], today: dt.date, tz: ZoneInfo, rounding: Rounding) -> int:
    """Post the account's due two-part charges: each day once it is over (daily pro rata),
    or each month on its 1st (monthly). Keyed by account, tariff and period: never twice."""
    start = a.charges_through or (a.opened_at.astimezone(tz).date() - dt.timedelta(days=1))
    due: list[tuple[str, int, str, Any, Any, Decimal, str]] = []
    day = start + dt.timedelta(days=1)
    while day <= today:
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        for plan in plans:
            version = plan.at(midnight.astimezone(dt.UTC))
            tp = version.definition.two_part
            if tp is None:
                continue
            value = a.capacity_kva if tp.basis == "capacity" else a.demand_kw
            if value is None:
                continue
            monthly = tp.price * value
            if tp.charging == "daily":
                if day >= today:
                    continue  # a day is charged once it is over
                amount = prorata_minor(monthly, day.day, days_in_month(day), rounding.minor_units, rounding.mode)
                key, label = f"charge:{a.id}:{plan.tariff_id}:{day.isoformat()}", f"{tp.basis} charge {day.isoformat()}"
            else:
                if day.day != 1:
                    continue
                amount = rounding.to_minor(monthly)
                key, label = f"charge:{a.id}:{plan.tariff_id}:{day:%Y-%m}", f"{tp.basis} charge {day:%Y-%m}"
            if amount:
                due.append((key, amount, label, plan, version, value, "kVA" if tp.basis == "capacity" else "kW"))
        day += dt.timedelta(days=1)
    done: set[str | None] = set()
    if due:
        done = set((await s.scalars(select(LedgerEntry.idem_key).where(LedgerEntry.idem_key.in_([d[0] for d in due])))).all())
    posted = 0
    now = utcnow()
    for key, amount, label, plan, version, value, unit in due:
        if key in done:
            continue
        tp = version.definition.two_part
        post(s, a, "charge", -amount, ENGINE, now, reason=label, idem_key=key, tariff_id=plan.tariff_id,
             detail={"basis": tp.basis, "value": format(value, "f"), "unit": unit, "price": format(tp.price, "f"),
                     "version": version.version, "charging": tp.charging})
        posted += 1
    # every day before today is settled (daily charges come after a day ends)
    a.charges_through = max(start, today - dt.timedelta(days=1))
    return posted


def days_in_month(day: dt.date) -> int:
    nxt = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return (nxt - dt.timedelta(days=1)).day
