"""The ledger's money per meter and local day, kept for the energy report (``report_ledger_days``).

The energy report's money columns add up every deduction of its range with its priced lines: a
month of 10,000 meters billed four times a day is 1.24 million deductions, ~10 s of reading and
JSON parsing. The ledger is append-only, so those sums can be kept: :class:`LedgerRollup` folds
the ledger's new entries into (local day, meter) cells (:mod:`scada.reports.ledger_money`) in the
background, every ``[reports] ledger_rollup_every_s``, remembering the last entry folded
(``through_id``). A report reads the cells of the whole days in its range and adds, from the
ledger itself, the entries after ``through_id`` and the partial days at its edges, all in one
snapshot: its figures are the ledger's, however old the rollup. Nothing on the billing path
writes here.

The fold only moves past ids below which no entry can appear any more. On SQLite one writer at a
time commits, so ids are visible in order. On PostgreSQL ids come from a sequence, and a
transaction that took a lower id may commit after one that took a higher: the fold takes a SHARE
lock on the ledger for the instant of reading its highest id (it waits for the writers in
flight, new writers wait behind it; at most ``lock_timeout_s``, else the round is skipped).
A change of the site's time zone folds the ledger again from the first entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.exc import DBAPIError

from scada.core.sideloop import SideLoop
from scada.db import Database
from scada.db.bulk import bulk_insert, driver_rows
from scada.prepaid.models import LedgerEntry
from scada.reports.ledger_money import SLOTS, WATER, Cell, LocalDays, add_deductions, deductions_query, new_cell, split_minor
from scada.reports.models import LedgerDay
from scada.reports.models import LedgerRollup as RollupRow

__all__ = ["LedgerRollup", "add_stored", "day_rows_query", "rollup_state", "stored_day", "stored_split", "timezone_key"]

log = logging.getLogger(__name__)

_FOLD_IDS = 20_000  # ledger ids read and folded in one transaction
_DAYS_A_STATEMENT = 100
_INSERT_DAYS = bulk_insert(cast(Table, LedgerDay.__table__), ("day", "meter_id", "charged_minor", *SLOTS, *(f"{s}_minor" for s in SLOTS)))


def timezone_key(tz: Any) -> str:
    """The name the rollup records for the zone its days were cut in."""
    return str(getattr(tz, "key", None) or tz)


async def rollup_state(session: Any, tz: Any) -> int | None:
    """The last ledger id folded into the day cells of ``tz``'s calendar, in the session's
    snapshot; None when there are none (never folded, or folded in another zone)."""
    row = await session.get(RollupRow, 1)
    if row is None or row.timezone != timezone_key(tz):
        return None
    return int(row.through_id)


def add_stored(cell: Cell, row: Sequence[Any]) -> None:
    """Add a :func:`day_rows_query` row's charged money and exact slot amounts (text) to ``cell``."""
    cell[0] += int(row[2])
    for i in range(1, WATER):
        cell[i] += int(row[2 + i])


def stored_split(row: Sequence[Any]) -> Sequence[int]:
    """A :func:`day_rows_query` row's charged money split over the slots, as stored."""
    return row[3 + len(SLOTS):]


def stored_day(value: Any) -> dt.date:
    """A stored day as the driver gives it (a date, or its text on SQLite) as a date."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def day_rows_query(first: dt.date | None = None, last: dt.date | None = None, *, days: list[dt.date] | None = None) -> Any:
    """The stored cells of the days from ``first`` to ``last``, or of the ``days`` listed."""
    d = LedgerDay
    query = select(d.day, d.meter_id, d.charged_minor, d.sharp, d.peak, d.flat, d.valley, d.other,
                   d.sharp_minor, d.peak_minor, d.flat_minor, d.valley_minor, d.other_minor)
    if days is not None:
        return query.where(d.day.in_(days))
    return query.where(d.day >= first, d.day <= last)


class LedgerRollup:
    """Folds the ledger's new entries into ``report_ledger_days`` (one fold at a time)."""

    def __init__(self, db: Database, tz: Any, *, clock: Callable[[], dt.datetime] | None = None, lock_timeout_s: float = 2.0) -> None:
        self.db = db
        self.tz = tz
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.lock_timeout_s = lock_timeout_s
        self._lock = asyncio.Lock()

    async def fold(self) -> int:
        """Fold every entry committed so far; the number of ledger entries read."""
        async with self._lock:
            high = await self._settled_high_id()
            if high is None:
                return 0
            through = await self._start()
            read = 0
            if through >= high:
                return 0
            # the writes run on a loop of their own: on the server's busy loop each of the ~200
            # statements of a day of 50,000 meters waited a few turns of it, SQLite's write lock held
            # throughout (24 s with a loop busy 20 ms a turn, against 2 s on a loop of its own)
            write_db = Database(self.db.url, pool_size=1, driver_in_place=True)
            async with SideLoop("ledger-rollup", closing=write_db.dispose) as side:
                while through < high:
                    upto = min(high, through + _FOLD_IDS)
                    async with self.db.reads() as s:
                        rows = [r async for batch in driver_rows(s, deductions_query(after_id=through, through_id=upto)) for r in batch]
                    cells = await asyncio.to_thread(self._cells, rows)
                    days, new_rows = await self._day_rows(cells)
                    if not await side.run(self._write(write_db, through, upto, days, new_rows), name="reports:ledger rollup"):
                        break  # another fold moved on (a second server on the same database)
                    read += len(rows)
                    through = upto
            if read:
                log.info("ledger rollup folded %d entries through id %d", read, through,
                         extra={"entries": read, "through_id": through})
            return read

    def _cells(self, rows: Iterable[Any]) -> dict[Any, Cell]:
        days = LocalDays(self.tz)
        cells: dict[Any, Cell] = {}
        add_deductions(cells, rows, lambda ts, meter: (days(ts), meter), frozenset())
        return cells

    async def _settled_high_id(self) -> int | None:
        """The highest ledger id below which every entry is committed or never will be."""
        if self.db.dialect != "postgresql":
            async with self.db.reads() as s:
                return int(await s.scalar(select(func.coalesce(func.max(LedgerEntry.id), 0))) or 0)
        try:
            async with self.db.transaction() as s:
                await s.execute(text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'"))
                await s.execute(text(f"LOCK TABLE {LedgerEntry.__tablename__} IN SHARE MODE"))
                return int(await s.scalar(select(func.coalesce(func.max(LedgerEntry.id), 0))) or 0)
        except DBAPIError as exc:
            if "lock timeout" not in str(exc).lower():
                raise
            log.info("ledger rollup skipped a round: the ledger's writers held it over %.1f s", self.lock_timeout_s)
            return None

    async def _start(self) -> int:
        """The rollup's position; (re)started from the first entry in a new time zone."""
        zone = timezone_key(self.tz)
        async with self.db.transaction() as s:
            row = await s.get(RollupRow, 1, with_for_update=True)
            if row is None:
                s.add(RollupRow(id=1, through_id=0, timezone=zone, updated_at=self.clock()))
                return 0
            if row.timezone != zone:
                log.warning("ledger rollup starts again: the site's time zone is now %s (was %s)", zone, row.timezone)
                await s.execute(delete(LedgerDay))
                row.through_id, row.timezone, row.updated_at = 0, zone, self.clock()
            return int(row.through_id)

    async def _day_rows(self, cells: dict[Any, Cell]) -> tuple[list[dt.date], list[tuple[Any, ...]]]:
        """The days ``cells`` touch and their rows with ``cells`` added, for :meth:`_write`. The
        days touched are written again whole (deleted and inserted as one bulk statement): a day
        is one row per meter, and a bulk insert is many times cheaper than updating its rows one
        by one.

        The stored days are read, and the new rows built, before the write transaction: only a
        fold changes them, and a fold moves the position, which the write transaction checks.
        Read inside it, a day of 50,000 meters held SQLite's write lock for up to 72 s on a busy
        server (the driver's thread waits for the interpreter at every row), and billing waited."""
        days = sorted({day for day, _ in cells})
        merged: dict[tuple[dt.date, str], Cell] = {}
        async with self.db.reads() as s:
            for i in range(0, len(days), _DAYS_A_STATEMENT):
                async for rows in driver_rows(s, day_rows_query(days=days[i:i + _DAYS_A_STATEMENT])):
                    for stored in rows:
                        add_stored(merged.setdefault((stored_day(stored[0]), stored[1]), new_cell()), stored)
        return days, await asyncio.to_thread(_merged_rows, merged, cells)

    async def _write(self, db: Database, through: int, upto: int, days: list[dt.date], rows: Sequence[Sequence[Any]]) -> bool:
        """Replace ``days`` with ``rows`` and move the position to ``upto``, in one transaction of
        ``db`` (the side loop's), if the position is still ``through``."""
        async with db.transaction() as s:
            row = await s.get(RollupRow, 1, with_for_update=True)
            if row is None or row.through_id != through or row.timezone != timezone_key(self.tz):
                return False
            for i in range(0, len(days), _DAYS_A_STATEMENT):
                await s.execute(delete(LedgerDay).where(LedgerDay.day.in_(days[i:i + _DAYS_A_STATEMENT])))
            await _INSERT_DAYS.execute(s, rows)
            row.through_id, row.updated_at = upto, self.clock()
            return True


def _merged_rows(merged: dict[tuple[dt.date, str], Cell], cells: dict[Any, Cell]) -> list[tuple[Any, ...]]:
    """The rows of the days touched: the stored cells (``merged``, added to in place) with the new ``cells``."""
    for key, cell in cells.items():
        old = merged.get(key)
        merged[key] = cell if old is None else [a + b for a, b in zip(old, cell, strict=True)]
    return [(day, meter, c[0], *(str(v) for v in c[1:WATER]), *split_minor(c[0], c[1:WATER])) for (day, meter), c in merged.items()]
