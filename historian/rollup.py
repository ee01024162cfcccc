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

When late readings revise intervals of a day (a gateway's replay, see
:mod:`historian.aggregate`), the day is rebuilt from the stored intervals instead
(:meth:`DayRollup.rebuild`, :func:`fold_day`): a running total cannot take a value back out of
a minimum or a maximum. A running day once revised is rebuilt that way at every later change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from .grid import local_midnight
from .records import ANALOGS, REGISTERS, IntervalRecord

__all__ = [
    "DAY_FIELDS",
    "DAY_FLOAT_FIELDS",
    "DAY_INT_FIELDS",
    "ROLLUP",
    "ROLLUP_SOURCES",
    "DayRollup",
    "day_bounds",
    "day_rollups",
    "fold_day",
]

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
# the interval fields a day rollup is made of
ROLLUP_SOURCES: tuple[str, ...] = tuple(dict.fromkeys(f for f, _, _ in ROLLUP))


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


def fold_day(meter: str, start: int, end: int, intervals: Iterable[Mapping[str, int | float]]) -> IntervalRecord:
    """The rollup of one meter's day from its stored intervals (absent values left out)."""
    acc: dict[str, int | float] = {}
    for values in intervals:
        _fold(acc, values)
    return IntervalRecord(meter, start, end - start, acc)


class DayRollup:
    """Running rollups of the days whose intervals are being closed."""

    def __init__(self, tz: ZoneInfo | timezone) -> None:
        self.tz = tz
        self._days: dict[tuple[str, int], tuple[int, dict[str, int | float]]] = {}  # (meter, start) -> (end, acc)
        self._touched: dict[tuple[str, int], None] = {}
        self._stale: set[tuple[str, int]] = set()  # running days revised: rebuilt, never re-emitted
        self._rebuild: dict[tuple[str, int], int] = {}  # days to rebuild from the stored intervals -> end

    def rebuild(self, meter: str, t: int) -> None:
        """A record of the day holding ``t`` was revised: rebuild that day from the stored intervals."""
        start, end = day_bounds(t, self.tz)
        key = (meter, start)
        self._rebuild[key] = end
        if key in self._days:
            self._stale.add(key)

    def take_rebuilds(self) -> list[tuple[str, int, int]]:
        out = [(m, s, end) for (m, s), end in self._rebuild.items()]
        self._rebuild.clear()
        return out

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
            if key in self._stale:
                self._rebuild[key] = end
                continue
            out.append(IntervalRecord(key[0], key[1], end - key[1], dict(acc)))
        self._touched.clear()
        for key in [k for k, (end, _) in self._days.items() if end <= closed_until]:
            del self._days[key]
            self._stale.discard(key)
        return out

    def state(self) -> list[Any]:
        rows: list[Any] = [[m, s, end, acc] for (m, s), (end, acc) in self._days.items()]
        rows += [[m, s, end, None, (m, s) in self._stale] for (m, s), end in self._rebuild.items()]
        rows += [[m, s, None, None, True] for (m, s) in self._stale if (m, s) not in self._rebuild]
        return rows

    def load(self, data: Iterable[Any]) -> None:
        self._days, self._rebuild, self._stale = {}, {}, set()
        for row in data:
            m, s = str(row[0]), int(row[1])
            if row[3] is not None:
                self._days[(m, s)] = (int(row[2]), dict(row[3]))
            elif row[2] is not None:
                self._rebuild[(m, s)] = int(row[2])
            if len(row) > 4 and row[4]:
                self._stale.add((m, s))
        self._touched.clear()


def day_rollups(records: Iterable[IntervalRecord], tz: ZoneInfo | timezone) -> list[IntervalRecord]:
    """The rollups of a set of interval records (e.g. to load history from elsewhere)."""
    rollup = DayRollup(tz)
    for r in sorted(records, key=lambda r: (r.start, r.meter)):
        rollup.add(r)
    return rollup.take(closed_until=-1)
