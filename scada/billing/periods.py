"""Billing periods in the site's time zone, and pro rata for part periods (pure functions).

A period is a half-open range of local days ``[start, end)``: a month (``2026-11``), a quarter
(``2026-Q4``), a year (``2026``), or ``once``. A part period (a move in or out, a rule starting
or ending inside it) is charged ``amount × active days ÷ days of the period``, rounded once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from scada.billing.errors import BillingError
from scada.prepaid.pricing import round_fraction

__all__ = ["PERIOD_KINDS", "Period", "local_midnight", "month", "period_of", "prorata", "periods_between"]

PERIOD_KINDS = ("monthly", "quarterly", "yearly", "once")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Period:
    kind: str
    key: str
    start: dt.date
    end: dt.date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def bounds(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The period as UTC instants ``[start, end)``."""
        return local_midnight(self.start, tz), local_midnight(self.end, tz)

    def clip(self, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date] | None:
        """The part of the period within ``[start, end)``; None when nothing is left."""
        a = max(self.start, start) if start else self.start
        b = min(self.end, end) if end else self.end
        return (a, b) if a < b else None


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(dt.UTC)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def month(key: str, field: str = "period") -> Period:
    """``"2026-11"`` → the month; a 422 naming ``field`` otherwise."""
    m = _MONTH.match(key) if isinstance(key, str) else None
    if not m:
        raise BillingError(f"{field}: expected a month as YYYY-MM, found {key!r}", field=field)
    start = dt.date(int(m.group(1)), int(m.group(2)), 1)
    if start.year < 2000:
        raise BillingError(f"{field}: {key} is before 2000", field=field)
    return Period("monthly", key, start, _next_month(start))


def period_of(kind: str, day: dt.date, once_start: dt.date | None = None) -> Period:
    """The period of ``kind`` that contains ``day`` (``once``: from ``once_start`` on, open-ended)."""
    if kind == "monthly":
        start = day.replace(day=1)
        return Period(kind, f"{start:%Y-%m}", start, _next_month(start))
    if kind == "quarterly":
        q = (day.month - 1) // 3
        start = dt.date(day.year, 3 * q + 1, 1)
        end = dt.date(day.year + 1, 1, 1) if q == 3 else dt.date(day.year, 3 * q + 4, 1)
        return Period(kind, f"{day.year}-Q{q + 1}", start, end)
    if kind == "yearly":
        return Period(kind, f"{day.year}", dt.date(day.year, 1, 1), dt.date(day.year + 1, 1, 1))
    if kind == "once":
        start = once_start or day
        return Period(kind, "once", start, dt.date.max)
    raise ValueError(f"unknown period kind {kind!r}")


def periods_between(kind: str, first: dt.date, last: dt.date) -> list[Period]:
    """The periods of ``kind`` that contain a day of ``[first, last]``."""
    out: list[Period] = []
    day = first
    while day <= last:
        p = period_of(kind, day)
        out.append(p)
        day = p.end
    return out


def prorata(amount: Decimal, active_days: int, period_days: int, minor_units: int, rounding: str) -> int:
    """``amount × active_days ÷ period_days`` in minor units, rounded once (exact arithmetic)."""
    if not 0 <= active_days <= period_days or period_days <= 0:
        raise ValueError(f"active days {active_days} outside 0..{period_days}")
    return round_fraction(Fraction(amount) * active_days / period_days, minor_units, rounding)
