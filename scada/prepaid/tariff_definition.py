"""Tariff definitions: what a tariff version says, validated; data, never code.

A tariff has versions, each effective from a moment; a version's :class:`TariffDefinition`
combines:

- an energy price: ``price`` (flat) or ``tou`` (time of use: up to 8 named periods with their
  prices, seasons by date range, and a day schedule per day type — workday, weekend, holiday
  — given as switch points ``["08:00", "peak"]`` from ``00:00``; a holiday calendar and
  make-up workdays);
- optional ``tiers``: blocks of cumulative consumption per billing cycle (monthly or yearly),
  each adding ``adder`` to the energy price (``adder = 0`` for the first block). A tiered tariff
  without TOU is a flat price plus adders; with TOU, TOU is applied first, then the tier;
- optional ``two_part``: a capacity (per kVA) or demand (per kW) charge per month, charged
  daily pro rata or once a month, on top of the energy price.

Decimals are written as strings (``"0.5683"``) or, in JSON bodies, as numbers (read exactly).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from scada.core.inputs import BoundedDecimal, parse_decimal

__all__ = [
    "MAX_PERIODS",
    "DaySchedule",
    "PeriodPrice",
    "Season",
    "TariffDefinition",
    "TierBlock",
    "TierSpec",
    "TouSpec",
    "TwoPartSpec",
    "decimal_input",
]

MAX_PERIODS = 8
MAX_PRICE_DECIMALS = 6
MAX_QUANTITY_DECIMALS = 6
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


# the largest price or quantity a tariff holds: 12 digits before the point
MAX_WHOLE_DIGITS = 12


def decimal_input(value: Any, *, decimals: int, what: str = "number") -> Decimal:
    """A finite, non-negative decimal from a string, an integer or a Decimal (never a float),
    below 10**12 with at most ``decimals`` decimals: :func:`scada.core.inputs.parse_decimal`."""
    return parse_decimal(value, max_digits=MAX_WHOLE_DIGITS + decimals, decimal_places=decimals, what=what)


Price = Annotated[Decimal, BoundedDecimal(MAX_WHOLE_DIGITS + MAX_PRICE_DECIMALS, MAX_PRICE_DECIMALS, what="price")]
Quantity = Annotated[Decimal, BoundedDecimal(MAX_WHOLE_DIGITS + MAX_QUANTITY_DECIMALS, MAX_QUANTITY_DECIMALS, what="quantity")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodPrice(_Model):
    name: str
    price: Price

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"period names are lower-case words like 'peak' or 'deep_valley', found {v!r}")
        return v


def _minutes(hhmm: str) -> int:
    m = _HHMM.match(hhmm)
    if not m:
        raise ValueError(f"expected a time HH:MM (00:00-23:59), found {hhmm!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


DaySchedule = list[tuple[str, str]]


def _check_schedule(schedule: DaySchedule, periods: set[str], where: str) -> list[tuple[int, str]]:
    if not schedule:
        raise ValueError(f"{where}: an empty day schedule")
    out: list[tuple[int, str]] = []
    for i, (hhmm, period) in enumerate(schedule):
        minute = _minutes(hhmm)
        if i == 0 and minute != 0:
            raise ValueError(f"{where}: the first switch point must be 00:00, found {hhmm}")
        if out and minute <= out[-1][0]:
            raise ValueError(f"{where}: switch points must increase, {hhmm} follows {schedule[i - 1][0]}")
        if period not in periods:
            raise ValueError(f"{where}: unknown period {period!r} (periods: {', '.join(sorted(periods))})")
        out.append((minute, period))
    return out


@functools.lru_cache(maxsize=256)
def _month_day(value: str) -> tuple[int, int]:
    # cached: a season's bounds are read for every day it is asked about (366 times when a
    # definition is validated, once per priced reading), and a site has a handful of them
    m = _MMDD.match(value)
    if not m:
        raise ValueError(f"expected a month-day MM-DD, found {value!r}")
    month, day = int(m.group(1)), int(m.group(2))
    try:
        dt.date(2024, month, day)  # a leap year: 02-29 is a valid bound
    except ValueError:
        raise ValueError(f"no such day {value!r}") from None
    return month, day


def _within(md: tuple[int, int], lo: tuple[int, int], hi: tuple[int, int]) -> bool:
    """Month-day ``md`` in ``lo``..``hi`` (inclusive; ``lo`` after ``hi`` wraps over new year)."""
    return lo <= md <= hi if lo <= hi else (md >= lo or md <= hi)


class Season(_Model):
    """Days ``start``..``end`` (MM-DD, inclusive; ``start`` after ``end`` wraps over new year)."""

    name: str = "all_year"
    start: str = "01-01"
    end: str = "12-31"
    workday: DaySchedule
    weekend: DaySchedule | None = None  # default: the workday schedule
    holiday: DaySchedule | None = None  # default: the weekend schedule

    @field_validator("start", "end")
    @classmethod
    def _md(cls, v: str) -> str:
        _month_day(v)
        return v

    def contains(self, day: dt.date) -> bool:
        return _within((day.month, day.day), _month_day(self.start), _month_day(self.end))

    def schedule_for(self, day_type: str) -> DaySchedule:
        if day_type == "holiday":
            return self.holiday or self.weekend or self.workday
        if day_type == "weekend":
            return self.weekend or self.workday
        return self.workday


class TouSpec(_Model):
    periods: list[PeriodPrice] = Field(min_length=1, max_length=MAX_PERIODS)
    seasons: list[Season] = Field(min_length=1)
    holidays: list[dt.date] = []
    workdays: list[dt.date] = []  # weekend days that are working days (make-up days)
    weekend_days: list[int] = [6, 7]  # ISO weekdays: 6 Saturday, 7 Sunday

    @field_validator("holidays", "workdays", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [dt.date.fromisoformat(x) if isinstance(x, str) else x for x in v]
        return v

    @field_validator("weekend_days")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        for d in v:
            if not 1 <= d <= 7:
                raise ValueError(f"weekend days are ISO weekdays 1 (Monday) .. 7 (Sunday), found {d}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TouSpec:
        names = [p.name for p in self.periods]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate period names in {names}")
        known = set(names)
        for s in self.seasons:
            for day_type in ("workday", "weekend", "holiday"):
                schedule = getattr(s, day_type)
                if schedule is not None:
                    _check_schedule(schedule, known, f"season {s.name!r} {day_type}")
        # every day of a (leap) year in exactly one season
        bounds = [(s.name, _month_day(s.start), _month_day(s.end)) for s in self.seasons]
        day = dt.date(2024, 1, 1)
        while day.year == 2024:
            md = (day.month, day.day)
            owners = [name for name, lo, hi in bounds if _within(md, lo, hi)]
            if len(owners) != 1:
                what = "no season" if not owners else f"several seasons ({', '.join(owners)})"
                raise ValueError(f"seasons must cover every day once: {day:%m-%d} is in {what}")
            day += dt.timedelta(days=1)
        return self

    def price(self, period: str) -> Decimal:
        for p in self.periods:
            if p.name == period:
                return p.price
        raise KeyError(period)

    def day_type(self, day: dt.date) -> str:
        if day in self.holidays:
            return "holiday"
        if day.isoweekday() in self.weekend_days and day not in self.workdays:
            return "weekend"
        return "workday"

    def season(self, day: dt.date) -> Season:
        return next(s for s in self.seasons if s.contains(day))

    def switches(self, day: dt.date) -> list[tuple[int, str]]:
        """The day's switch points as (minute of the day, period)."""
        schedule = self.season(day).schedule_for(self.day_type(day))
        return [(_minutes(hhmm), period) for hhmm, period in schedule]


class TierBlock(_Model):
    up_to: Quantity | None = None  # cumulative consumption in the cycle; None: no upper bound
    adder: Price = Decimal(0)


class TierSpec(_Model):
    cycle: Literal["monthly", "yearly"]
    blocks: list[TierBlock] = Field(min_length=1, max_length=MAX_PERIODS)

    @model_validator(mode="after")
    def _ascending(self) -> TierSpec:
        bounds = [b.up_to for b in self.blocks]
        if bounds[-1] is not None:
            raise ValueError("the last block must have no 'up_to' (it takes everything above)")
        if any(b is None for b in bounds[:-1]):
            raise ValueError("only the last block may omit 'up_to'")
        finite = [b for b in bounds[:-1] if b is not None]
        if any(b <= a for a, b in zip([Decimal(0), *finite], finite, strict=False)):
            raise ValueError(f"block bounds must be positive and increase, found {[format(b, 'f') for b in finite]}")
        return self


class TwoPartSpec(_Model):
    basis: Literal["capacity", "demand"]  # per kVA of capacity, or per kW of (contracted) maximum demand
    price: Price  # per kVA or kW per month
    charging: Literal["daily", "monthly"] = "daily"  # daily pro rata, or the month at its start


class TariffDefinition(_Model):
    price: Price | None = None  # flat energy price per kWh or m³
    tou: TouSpec | None = None
    tiers: TierSpec | None = None
    two_part: TwoPartSpec | None = None

    @model_validator(mode="after")
    def _one_energy_price(self) -> TariffDefinition:
        if (self.price is None) == (self.tou is None):
            raise ValueError("give exactly one energy price: 'price' (flat) or 'tou' (time of use)")
        return self

    @property
    def kind(self) -> str:
        parts = ["tou" if self.tou is not None else "flat"]
        if self.tiers is not None:
            parts.append("tiered")
        if self.two_part is not None:
            parts.append("two_part")
        return "+".join(parts)

    @property
    def periods(self) -> list[str]:
        return [p.name for p in self.tou.periods] if self.tou is not None else []

    def energy_price(self, period: str | None) -> Decimal:
        if self.tou is None:
            assert self.price is not None
            return self.price
        if period is None:
            raise KeyError("a time-of-use price needs a period")
        return self.tou.price(period)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (decimals as strings) that parses back to an equal definition."""
        dumped = self.model_dump(mode="python", exclude_none=True)
        return {k: _jsonable(v) for k, v in dumped.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
