"""What a historian backend does, and how it fails.

A backend stores interval records keyed by (meter, interval start) and raw points keyed by
(tag, time): writing the same key again replaces the point, so a retry never duplicates. It
answers reads as pandas DataFrames, either one row per stored interval or pre-aggregated into
buckets, so the query layer can combine meters, points and calendar periods the same way on
every backend.

Failures are of two kinds: :class:`BackendUnavailable` (unreachable, timed out, overloaded,
refused our credentials: the data stays in the buffer and is retried) and
:class:`BackendRejected` (this data can never be written: the batch is set aside).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd

from ..records import INT_FIELDS, IntervalRecord, RawPoint
from ..rollup import ROLLUP_SOURCES, fold_day

__all__ = [
    "Aggregate",
    "Backend",
    "BackendError",
    "BackendRejected",
    "BackendUnavailable",
    "Bucketing",
    "DAY",
]

DAY = 86_400
_INT = frozenset(INT_FIELDS)


class BackendError(Exception):
    """Base of backend failures."""


class BackendUnavailable(BackendError):
    """The backend cannot take or give data now; try again later."""


class BackendRejected(BackendError):
    """The backend refuses this data for good (malformed, conflicting types)."""


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One aggregate of one stored field per bucket; its column is ``<field>__<func>``."""

    field: str
    func: Literal["sum", "count", "min", "max"]

    @property
    def column(self) -> str:
        return f"{self.field}__{self.func}"


@dataclass(frozen=True, slots=True)
class Bucketing:
    """Buckets of ``seconds`` (a multiple of the interval length dividing a day, or one day).

    Sub-day buckets start where the site's clock shows a multiple of their length (the same
    phase rule as :class:`~historian.grid.IntervalGrid`); day buckets start at local midnight,
    so a day is 23 or 25 hours long across a DST change.
    """

    seconds: int
    tz: ZoneInfo | timezone
    phase: int  # sub-day buckets: start ≡ -phase (mod seconds)

    @property
    def daily(self) -> bool:
        return self.seconds == DAY


class Backend(abc.ABC):
    name: str = "backend"

    async def open(self) -> None:
        """Acquire local resources. Must not need the server to be up."""
        return None  # a hook: a backend without local resources has nothing to do

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Make sure the server side exists (database, retention). Called before the first write
        and again after a failure that suggests it went missing."""

    @abc.abstractmethod
    async def write_intervals(self, records: Sequence[IntervalRecord]) -> None: ...

    @abc.abstractmethod
    async def write_days(self, records: Sequence[IntervalRecord]) -> None:
        """Day rollups (:mod:`historian.rollup`), keyed (meter, local day start)."""

    @abc.abstractmethod
    async def write_raw(self, points: Sequence[RawPoint]) -> None: ...

    async def rebuild_days(self, days: Sequence[tuple[str, int, int]]) -> None:
        """Rewrite the day rollups of ``(meter, day start, day end)`` from the stored intervals
        (after late readings revised some of them)."""
        by_span: dict[tuple[int, int], list[str]] = {}
        for meter, start, end in days:
            by_span.setdefault((start, end), []).append(meter)
        out: list[IntervalRecord] = []
        for (start, end), meters in sorted(by_span.items()):
            frame = await self.fetch_intervals(sorted(set(meters)), list(ROLLUP_SOURCES), start, end)
            rows: dict[str, list[dict[str, int | float]]] = {}
            for row in frame.sort_values("time").to_dict("records"):
                values: dict[str, int | float] = {}
                for f in ROLLUP_SOURCES:
                    v = row.get(f)
                    if v is None or pd.isna(v):
                        continue
                    values[f] = int(v) if f in _INT else float(v)
                rows.setdefault(str(row["meter"]), []).append(values)
            out += [fold_day(meter, start, end, intervals) for meter, intervals in rows.items()]
        if out:
            await self.write_days(out)

    @abc.abstractmethod
    async def fetch_intervals(self, meters: Sequence[str], fields: Sequence[str], start: int, end: int) -> pd.DataFrame:
        """Stored intervals with ``start <= interval start < end`` (epoch s): columns ``time``
        (epoch s), ``meter`` and ``fields`` (missing values are NaN/NA)."""

    @abc.abstractmethod
    async def fetch_buckets(
        self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int, bucketing: Bucketing
    ) -> pd.DataFrame:
        """Per meter and bucket (of the intervals with ``start <= interval start < end``):
        columns ``time`` (bucket start, epoch s), ``meter`` and one per aggregate. Buckets
        without intervals are absent."""

    @abc.abstractmethod
    async def fetch_days(self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int) -> pd.DataFrame:
        """Day rollups with ``start <= day start < end``, in the shape of :meth:`fetch_buckets`
        with day buckets."""

    @abc.abstractmethod
    async def fetch_raw(self, tags: Sequence[str], start_us: int, end_us: int) -> pd.DataFrame:
        """Raw points: columns ``time`` (epoch µs), ``tag``, ``value``, ``quality``."""

    async def fetch_interval_page(
        self, meter: str, fields: Sequence[str], start: int, end: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        """One page of one meter's stored intervals with ``start <= interval start < end``
        (epoch s), oldest first (``descending``: newest first), at most ``limit`` rows: columns
        ``time`` and ``fields``. A backend that can sort and limit on the server overrides this
        general version, which reads the whole range."""
        frame = await self.fetch_intervals([meter], fields, start, end)
        frame = frame.sort_values("time", ascending=not descending, kind="stable")
        return frame.head(limit)[["time", *fields]].reset_index(drop=True)

    async def fetch_raw_page(
        self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        """One page of one tag's raw points with ``start_us <= time < end_us``, oldest first
        (``descending``: newest first), at most ``limit`` rows: columns ``time`` (epoch µs),
        ``value``, ``quality``. Overridden where the server sorts and limits."""
        frame = await self.fetch_raw([tag], start_us, end_us)
        frame = frame.sort_values("time", ascending=not descending, kind="stable")
        return frame.head(limit)[["time", "value", "quality"]].reset_index(drop=True)

    async def apply_retention(self, now_s: float) -> None:
        """Delete what is older than the configured retention (backends whose server does not)."""
        return None  # a hook: a server that applies retention itself needs nothing here

    async def close(self) -> None:
        """Release resources."""
        return None  # a hook, like open()
