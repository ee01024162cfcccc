"""The SQLite backend: interval and raw tables in a file of their own (not the ledger's).

Intervals are keyed ``PRIMARY KEY (meter, start)`` and written with ``INSERT OR REPLACE``, so
a retried batch replaces itself. Register deltas are exact integers (µkWh, µm³); sums over any
range are exact. Writes run in one worker thread with one connection; reads open their own
connection in another thread (WAL lets them run beside a write). Retention is a periodic
``DELETE``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..grid import local_midnight
from ..records import (
    FLOAT_FIELDS,
    INT_FIELDS,
    INTERVAL_FIELDS,
    IntervalRecord,
    RawPoint,
)
from ..rollup import DAY_FIELDS, DAY_FLOAT_FIELDS, DAY_INT_FIELDS
from ..settings import SqliteSettings
from .base import DAY, Aggregate, Backend, BackendUnavailable, Bucketing

__all__ = ["SqliteBackend", "offset_segments"]

T = TypeVar("T")

_COLUMNS = ", ".join(
    [f"{f} INTEGER" for f in INT_FIELDS] + [f"{f} REAL" for f in FLOAT_FIELDS]
)
_DAY_COLUMNS = ", ".join([f"{f} INTEGER" for f in DAY_INT_FIELDS] + [f"{f} REAL" for f in DAY_FLOAT_FIELDS])
_DAY_ORDER = DAY_INT_FIELDS + DAY_FLOAT_FIELDS
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS intervals (
    meter TEXT NOT NULL,
    start INTEGER NOT NULL,
    length INTEGER NOT NULL,
    {_COLUMNS},
    PRIMARY KEY (meter, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intervals_start ON intervals (start);
CREATE TABLE IF NOT EXISTS days (
    meter TEXT NOT NULL,
    start INTEGER NOT NULL,
    length INTEGER NOT NULL,
    {_DAY_COLUMNS},
    PRIMARY KEY (meter, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS days_start ON days (start);
CREATE TABLE IF NOT EXISTS raw (
    tag TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (tag, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS raw_ts ON raw (ts);
"""
_INSERT_INTERVAL = (
    f"INSERT OR REPLACE INTO intervals (meter, start, length, {', '.join(INTERVAL_FIELDS)}) "
    f"VALUES ({', '.join('?' * (3 + len(INTERVAL_FIELDS)))})"
)
_INSERT_DAY = (
    f"INSERT OR REPLACE INTO days (meter, start, length, {', '.join(_DAY_ORDER)}) "
    f"VALUES ({', '.join('?' * (3 + len(_DAY_ORDER)))})"
)
_KNOWN = frozenset(INTERVAL_FIELDS)
_FUNCS = {"sum": "sum", "count": "count", "min": "min", "max": "max"}
_EPOCH_DAY = date(1970, 1, 1)


def offset_segments(tz: ZoneInfo | timezone, start: int, end: int) -> list[tuple[int, int]]:
    """``[(from_epoch_s, utc_offset_s), ...]`` covering ``[start, end)``: one entry per period
    of constant offset (found by probing hourly and bisecting to the second)."""

    def offset(t: int) -> int:
        off = datetime.fromtimestamp(t, UTC).astimezone(tz).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    segments = [(start, offset(start))]
    t = start
    while t < end:
        nxt = min(t + 3600, end)
        current = segments[-1][1]
        if offset(nxt) != current:
            lo, hi = t, nxt  # offset(lo) is the current one, offset(hi) is not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == current:
                    lo = mid
                else:
                    hi = mid
            segments.append((hi, offset(hi)))
        t = nxt
    return segments


def _local_day_key_sql(segments: list[tuple[int, int]]) -> str:
    """SQL for the local calendar day (days since 1970-01-01, local) of column ``start``."""
    if len(segments) == 1:
        return f"((start + {segments[0][1]}) / {DAY})"
    cases = " ".join(f"WHEN start < {nxt} THEN {off}" for (_, off), (nxt, _) in zip(segments, segments[1:], strict=False))
    return f"((start + CASE {cases} ELSE {segments[-1][1]} END) / {DAY})"


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, settings: SqliteSettings) -> None:
        self.settings = settings
        self.path = settings.path
        self._conn: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="historian-sqlite-w")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="historian-sqlite-r")
        await self._write(self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # the spool holds a batch until it is committed
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        self._conn = conn

    async def prepare(self) -> None:
        if self._conn is None:
            raise BackendUnavailable(f"historian database {self.path} is not open")

    async def close(self) -> None:
        if self._writer is not None:
            if self._conn is not None:
                await self._write(self._conn.close)
                self._conn = None
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise BackendUnavailable(f"historian database {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: try again later
            raise BackendUnavailable(f"{self.path}: {exc}") from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._readers is None:
            raise BackendUnavailable(f"historian database {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)
        except sqlite3.OperationalError as exc:
            raise BackendUnavailable(f"{self.path}: {exc}") from exc

    def _reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _select(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of one query on a read-only connection of its own (runs in the reader thread)."""
        conn = self._reader()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    # -- writes ------------------------------------------------------------------------------
    async def write_intervals(self, records: Sequence[IntervalRecord]) -> None:
        rows = [(r.meter, r.start, r.length, *[r.values.get(f) for f in INTERVAL_FIELDS]) for r in records]
        await self._write(self._executemany, _INSERT_INTERVAL, rows)

    async def write_days(self, records: Sequence[IntervalRecord]) -> None:
        rows = [(r.meter, r.start, r.length, *[r.values.get(f) for f in _DAY_ORDER]) for r in records]
        await self._write(self._executemany, _INSERT_DAY, rows)

    async def write_raw(self, points: Sequence[RawPoint]) -> None:
        rows = [(p.tag, p.ts, p.value, p.quality) for p in points]
        await self._write(self._executemany, "INSERT OR REPLACE INTO raw (tag, ts, value, quality) VALUES (?, ?, ?, ?)", rows)

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError("database closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- reads -------------------------------------------------------------------------------
    async def fetch_intervals(self, meters: Sequence[str], fields: Sequence[str], start: int, end: int) -> pd.DataFrame:
        _check_fields(fields)
        return await self._read(self._fetch_intervals_sync, list(meters), list(fields), start, end)

    def _fetch_intervals_sync(self, meters: list[str], fields: list[str], start: int, end: int) -> pd.DataFrame:
        cols = ["time", "meter", *fields]
        if not meters:
            return pd.DataFrame({c: [] for c in cols})
        select = ", ".join(["start", "meter", *fields])
        sql = (  # in the primary key's order, then by time (see _fetch_days_sync)
            f"SELECT {select} FROM intervals WHERE meter IN ({', '.join('?' * len(meters))}) "
            "AND start >= ? AND start < ? ORDER BY meter, start"
        )
        return _by_time(_frame(self._select(sql, (*meters, start, end)), cols))

    async def fetch_buckets(
        self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int, bucketing: Bucketing
    ) -> pd.DataFrame:
        _check_fields([a.field for a in aggregates])
        return await self._read(self._fetch_buckets_sync, list(meters), list(aggregates), start, end, bucketing)

    def _fetch_buckets_sync(
        self, meters: list[str], aggregates: list[Aggregate], start: int, end: int, bucketing: Bucketing
    ) -> pd.DataFrame:
        cols = ["time", "meter", *[a.column for a in aggregates]]
        if not meters:
            return pd.DataFrame({c: [] for c in cols})
        if bucketing.daily:
            key = _local_day_key_sql(offset_segments(bucketing.tz, start, end))
        else:
            key = f"(start - ((start + {bucketing.phase}) % {bucketing.seconds}))"
        aggs = ", ".join(f"{_FUNCS[a.func]}({a.field})" for a in aggregates)
        sql = (
            f"SELECT {key} AS bucket, meter, {aggs} FROM intervals "
            f"WHERE meter IN ({', '.join('?' * len(meters))}) AND start >= ? AND start < ? "
            "GROUP BY bucket, meter ORDER BY bucket, meter"
        )
        rows = self._select(sql, (*meters, start, end))
        frame = _frame(rows, cols)
        if bucketing.daily and len(frame):
            days = {d: local_midnight(_EPOCH_DAY + timedelta(days=int(d)), bucketing.tz) for d in frame["time"].unique()}
            frame["time"] = frame["time"].map(days).astype("int64")
        return frame

    async def fetch_days(self, meters: Sequence[str], aggregates: Sequence[Aggregate], start: int, end: int) -> pd.DataFrame:
        columns = [a.column for a in aggregates]
        unknown = [c for c in columns if c not in DAY_FIELDS]
        if unknown:
            raise ValueError(f"no day rollup of {unknown}")
        return await self._read(self._fetch_days_sync, list(meters), columns, start, end)

    def _fetch_days_sync(self, meters: list[str], columns: list[str], start: int, end: int) -> pd.DataFrame:
        cols = ["time", "meter", *columns]
        if not meters:
            return pd.DataFrame({c: [] for c in cols})
        # in the primary key's order, each meter's range read in one seek; then stably by time
        # (time, meter, as before). ORDER BY start, meter made SQLite walk the index on start
        # and look every row up in the table: ~15 times the work (0.6 s of CPU for a month of
        # 10,000 meters' days, against 0.04 s; 3.7 s against 0.02 s for a day of 1,000 meters'
        # intervals)
        sql = (
            f"SELECT start, meter, {', '.join(columns)} FROM days WHERE meter IN ({', '.join('?' * len(meters))}) "
            "AND start >= ? AND start < ? ORDER BY meter, start"
        )
        return _by_time(_frame(self._select(sql, (*meters, start, end)), cols))

    async def fetch_raw(self, tags: Sequence[str], start_us: int, end_us: int) -> pd.DataFrame:
        return await self._read(self._fetch_raw_sync, list(tags), start_us, end_us)

    def _fetch_raw_sync(self, tags: list[str], start_us: int, end_us: int) -> pd.DataFrame:
        cols = ["time", "tag", "value", "quality"]
        if not tags:
            return pd.DataFrame({c: [] for c in cols})
        sql = (
            f"SELECT ts, tag, value, quality FROM raw WHERE tag IN ({', '.join('?' * len(tags))}) "
            "AND ts >= ? AND ts < ? ORDER BY ts, tag"
        )
        rows = self._select(sql, (*tags, start_us, end_us))
        return _frame(rows, cols)

    async def fetch_interval_page(
        self, meter: str, fields: Sequence[str], start: int, end: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        _check_fields(fields)
        return await self._read(self._interval_page_sync, meter, list(fields), start, end, limit, descending)

    def _interval_page_sync(self, meter: str, fields: list[str], start: int, end: int, limit: int, descending: bool) -> pd.DataFrame:
        # the primary key (meter, start) walks the range in either direction
        order = "DESC" if descending else "ASC"
        sql = (
            f"SELECT start, {', '.join(fields)} FROM intervals WHERE meter = ? AND start >= ? AND start < ? "
            f"ORDER BY start {order} LIMIT ?"
        )
        return _frame(self._select(sql, (meter, start, end, limit)), ["time", *fields])

    async def fetch_raw_page(
        self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool = False
    ) -> pd.DataFrame:
        return await self._read(self._raw_page_sync, tag, start_us, end_us, limit, descending)

    def _raw_page_sync(self, tag: str, start_us: int, end_us: int, limit: int, descending: bool) -> pd.DataFrame:
        order = "DESC" if descending else "ASC"
        sql = f"SELECT ts, value, quality FROM raw WHERE tag = ? AND ts >= ? AND ts < ? ORDER BY ts {order} LIMIT ?"
        return _frame(self._select(sql, (tag, start_us, end_us, limit)), ["time", "value", "quality"])

    # -- retention ---------------------------------------------------------------------------
    async def apply_retention(self, now_s: float) -> None:
        await self._write(self._retention_sync, now_s)

    def _retention_sync(self, now_s: float) -> None:
        conn = self._conn
        if conn is None:
            return
        s = self.settings
        if s.interval_retention_days > 0:
            conn.execute("DELETE FROM intervals WHERE start < ?", (int(now_s) - s.interval_retention_days * DAY,))
            conn.execute("DELETE FROM days WHERE start < ?", (int(now_s) - s.interval_retention_days * DAY,))
        if s.raw_retention_days > 0:
            conn.execute("DELETE FROM raw WHERE ts < ?", ((int(now_s) - s.raw_retention_days * DAY) * 1_000_000,))


def _check_fields(fields: Sequence[str]) -> None:
    unknown = [f for f in fields if f not in _KNOWN]
    if unknown:
        raise ValueError(f"unknown interval fields {unknown}")


def _by_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows read in (meter, time) order put in (time, meter) order."""
    if len(frame) < 2:
        return frame
    order = np.argsort(frame["time"].to_numpy(dtype="int64"), kind="stable")
    return frame.take(order).reset_index(drop=True)


def _frame(rows: list[tuple[Any, ...]], cols: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: [] for c in cols})
    return pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)
