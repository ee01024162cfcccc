"""Daily rollups: per meter and local calendar day, the aggregates queries by day, week or month
need, kept up to date as intervals close.

A month by day for 1,000 meters is 30,000 rollup rows instead of 2,880,000 intervals. A rollup
row holds, for each interval field, exactly the aggregates the query layer asks for —
``energy_total__sum``, ``energy_total__count`` (intervals with a value), ``__min``, ``__max``;
``power_avg__sum``/``__count``, ``power_min__min``, ``power_max__max``; ``samples``;
``good_samples__sum``; ``flag_*__max`` — computed from the same integers as the intervals, so a
day's energy is exactly the sum of its intervals' deltas.

The running rollup of a day is re-emitted after every interval close (the newest replaces the
previous one: same key (meter, day)) and forgotten once the day's last interval is closed. Its
state is saved with the aggregator's, so a restart continues the same day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from .grid import local_midnight
from .records import ANALOGS, REGISTERS, IntervalRecord

__all__ = ["DAY_FIELDS", "DAY_FLOAT_FIELDS", "DAY_INT_FIELDS", "ROLLUP", "DayRollup", "day_bounds", "day_rollups"]

# (interval field, aggregate, is integer)
ROLLUP: tuple[tuple[str, str, bool], ...] = (
    *[(r, f, True) for r in REGISTERS for f in ("sum", "count", "min", "max")],
    *[
        entry
        for a in ANALOGS
        for entry in (
            (f"{a}_avg", "sum", False),
            (f"{a}_avg", "count", True),
            (f"{a}_min", "min", False),
            (f"{a}_min", "count", True),
            (f"{a}_max", "max", False),
            (f"{a}_max", "count", True),
        )
    ],
    *[("samples", f, True) for f in ("sum", "count", "min", "max")],
    ("good_samples", "sum", True),
    ("flag_gap", "max", True),
    ("flag_reset", "max", True),
    ("flag_first", "max", True),
)
DAY_INT_FIELDS: tuple[str, ...] = tuple(f"{f}__{a}" for f, a, is_int in ROLLUP if is_int)
DAY_FLOAT_FIELDS: tuple[str, ...] = tuple(f"{f}__{a}" for f, a, is_int in ROLLUP if not is_int)
DAY_FIELDS: frozenset[str] = frozenset(DAY_INT_FIELDS + DAY_FLOAT_FIELDS)


def day_bounds(t: int, tz: ZoneInfo | timezone) -> tuple[int, int]:
    """Start and end (epoch s) of the local calendar day holding ``t``."""
    day = datetime.fromtimestamp(t, tz).date()
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


def _fold(acc: dict[str, int | float], values: Mapping[str, int | float]) -> None:
    for field, func, _ in ROLLUP:
        v = values.get(field)
        if v is None:
            continue
        col = f"{field}__{func}"
        old = acc.get(col)
        if func == "sum":
            acc[col] = v if old is None else old + v
        elif func == "count":
            acc[col] = 1 if old is None else old + 1
        elif func == "min":
            acc[col] = v if old is None or v < old else old
        else:
            acc[col] = v if old is None or v > old else old


class DayRollup:
    """Running rollups of the days whose intervals are being closed."""

    def __init__(self, tz: ZoneInfo | timezone) -> None:
        self.tz = tz
        self._days: dict[tuple[str, int], tuple[int, dict[str, int | float]]] = {}  # (meter, start) -> (end, acc)
        self._touched: dict[tuple[str, int], None] = {}

    def add(self, record: IntervalRecord) -> None:
        start, end = day_bounds(record.start, self.tz)
        key = (record.meter, start)
        entry = self._days.get(key)
        if entry is None:
            entry = self._days[key] = (end, {})
        _fold(entry[1], record.values)
        self._touched[key] = None

    def take(self, closed_until: int) -> list[IntervalRecord]:
        """Rollups changed since the last call; days ending by ``closed_until`` are then dropped."""
        out = []
        for key in self._touched:
            end, acc = self._days[key]
            out.append(IntervalRecord(key[0], key[1], end - key[1], dict(acc)))
        self._touched.clear()
        for key in [k for k, (end, _) in self._days.items() if end <= closed_until]:
            del self._days[key]
        return out

    def state(self) -> list[Any]:
        return [[m, s, end, acc] for (m, s), (end, acc) in self._days.items()]

    def load(self, data: Iterable[Any]) -> None:
        self._days = {(str(m), int(s)): (int(end), dict(acc)) for m, s, end, acc in data}
        self._touched.clear()


def day_rollups(records: Iterable[IntervalRecord], tz: ZoneInfo | timezone) -> list[IntervalRecord]:
    """The rollups of a set of interval records (e.g. to load history from elsewhere)."""
    rollup = DayRollup(tz)
    for r in sorted(records, key=lambda r: (r.start, r.meter)):
        rollup.add(r)
    return rollup.take(closed_until=-1)
