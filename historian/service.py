"""The historian as one service: tag changes in, interval records and raw points out to a backend
through the on-disk buffer, queries back as DataFrames.

The owner (the application's runtime component) subscribes to the tag database, runs the four
loops below as its own supervised tasks and calls :meth:`Historian.shutdown` when stopping::

    run_intake(subscription)   changes -> aggregator (and raw logger)
    run_closer()               closes due intervals, flushes raw points, saves state -> spool
    run_forwarder()            spool -> backend, oldest first, retried while it is away
    run_retention()            deletes expired data where the backend does not do it itself

The buffer's fill level (0..1) is handed to ``publish_fill`` (the application writes it to the
``system:historian.buffer_fill`` tag); a warning is logged when it crosses ``warn_fill`` and an
error when the buffer is full and old data is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from tags import Subscription, TagChange, names
from tags.slices import Slicer
from tags.timers import run_every

from .aggregate import IntervalAggregator
from .backends.base import Backend
from .forward import Forwarder
from .grid import IntervalGrid
from .query import HistoryQuery, run_query, run_raw_query
from .rawlog import RawLogger
from .records import POINTS, IntervalRecord
from .settings import HistorianSettings
from .spool import Spool

__all__ = ["Historian"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Historian:
    def __init__(
        self,
        settings: HistorianSettings,
        backend: Backend,
        grid: IntervalGrid,
        *,
        publish_fill: Callable[[float], None] = lambda _fill: None,
        known_meters: Callable[[], Iterable[str]] | None = None,
        clock: Clock = time.time,
    ) -> None:
        if grid.length != settings.interval_s:
            raise ValueError(f"grid of {grid.length} s does not match the interval of {settings.interval_s} s")
        self.settings = settings
        self.backend = backend
        self.grid = grid
        self.clock = clock
        self.publish_fill = publish_fill
        self.known_meters = known_meters
        self.spool = Spool(settings.spool_path, settings.max_buffer_points, chunk_points=settings.batch_points)
        self.aggregator = IntervalAggregator(
            grid, clock(), delay_s=settings.close_delay_s, late_window_s=settings.late_window_h * 3600
        )
        self.raw = RawLogger(settings.raw_rules)
        self.forwarder = Forwarder(
            self.spool,
            backend,
            batch_points=settings.batch_points,
            timeout_s=settings.write_timeout_s,
            retry_max_s=settings.retry_max_s,
            on_spool_change=self._spool_changed,
        )
        self._unspooled: list[IntervalRecord] = []
        self._unspooled_days: list[IntervalRecord] = []
        self._unspooled_rebuilds: list[tuple[str, int, int]] = []
        self._close_lock = asyncio.Lock()
        # held by the intake while it feeds the aggregator, and while the aggregator's state is
        # written out in slices (the intake waits: its subscription keeps the changes meanwhile)
        self._intake_lock = asyncio.Lock()
        self._last_checkpoint = clock()
        self._fill_warned = False
        self.closed_intervals = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the buffer and the backend (the backend's server may be down: that is fine)."""
        await self.spool.open()
        await self.backend.open()
        saved = await self.spool.load_state()
        if saved is not None:
            try:
                note = self.aggregator.load_state(json.loads(saved), self.clock())
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.error("historian state unreadable; starting without it", extra={"error": repr(exc)})
            else:
                log.info("historian state restored", extra={"restored": note})
        if self.spool.points:
            log.info("historian buffer holds data from before the restart", extra={"points": self.spool.points})
        self._spool_changed()

    def wants(self, name: str) -> bool:
        """The subscription filter: meter points the aggregator reads, and raw-logged tags."""
        owner, point = names.split(name)
        if point in POINTS and owner and ":" not in owner:
            return True
        return bool(self.raw) and self.raw.matches(name)

    def feed(self, changes: Iterable[TagChange]) -> None:
        agg, raw = self.aggregator, self.raw
        for change in changes:
            agg.feed(change)
            if raw:
                raw.feed(change)

    async def shutdown(self, flush_timeout_s: float) -> None:
        """Close what is due, save state (open intervals included), try to send the buffer for
        at most ``flush_timeout_s``, then close the buffer and the backend."""
        try:
            await self.close_due()
            await self.flush_raw()
            await self.checkpoint()
            if self.spool.batches:
                sent = await self.forwarder.drain(flush_timeout_s)
                if not sent:
                    log.warning(
                        "historian buffer not empty at stop; it is sent after the next start",
                        extra={"points": self.spool.points},
                    )
        finally:
            await self.backend.close()
            await self.spool.close()

    # -- loops (tasks of the owner) ----------------------------------------------------------
    async def run_intake(self, subscription: Subscription[TagChange]) -> None:
        while True:
            try:
                batch = await subscription.get_batch(10_000)
            except StopAsyncIteration:
                return
            async with self._intake_lock:
                self.feed(batch)
            if len(self.raw.pending) >= self.settings.batch_points:
                await self.flush_raw()

    async def run_closer(self) -> None:
        s = self.settings
        while True:
            now = self.clock()
            await self.close_due(now)
            if self.raw:
                await self.flush_raw()
            if now - self._last_checkpoint >= s.checkpoint_s:
                await self.checkpoint()
            wake = min(self.aggregator.next_due_s, self._last_checkpoint + s.checkpoint_s)
            if self.raw:
                wake = min(wake, now + s.raw_flush_s)
            # wall-clock deadlines, re-checked at least every 5 s in case the clock is set
            await asyncio.sleep(min(max(wake - self.clock(), 0.05), 5.0))

    async def run_forwarder(self) -> None:
        await self.forwarder.run()

    async def run_retention(self) -> None:
        async def step() -> None:
            try:
                await self.backend.apply_retention(self.clock())
            except Exception as exc:  # the next round tries again; the data is not at risk
                log.warning("historian retention failed", extra={"backend": self.backend.name, "error": repr(exc)})

        await run_every(self.settings.retention_check_s, step, name="historian-retention", first_delay_s=0)

    # -- steps -------------------------------------------------------------------------------
    async def close_due(self, now: float | None = None) -> int:
        """Close due intervals and queue their records with the aggregator's state."""
        async with self._close_lock:
            now_s = self.clock() if now is None else now
            # the known meters only matter to an interval that closes now
            due = self.aggregator.next_due_s <= now_s
            meters = None if self.known_meters is None or not due else self.known_meters()
            closed = self.aggregator.close_due(now_s, meters)
            records = self._unspooled + closed
            days = self._unspooled_days + self.aggregator.take_days()
            rebuilds = self._unspooled_rebuilds + self.aggregator.take_rebuilds()
            if not records:
                return 0
            state = await self._state_text()
            # kept until the spool has them
            self._unspooled, self._unspooled_days, self._unspooled_rebuilds = records, days, rebuilds
            # in this order: the days are rebuilt from the intervals written before them
            dropped = await self.spool.append_many(
                [
                    ("interval", [r.to_json() for r in records]),
                    ("day", [d.to_json() for d in days]),
                    ("rebuild_day", [list(k) for k in rebuilds]),
                ],
                state=state,
            )
            self._unspooled, self._unspooled_days, self._unspooled_rebuilds = [], [], []
            self._last_checkpoint = self.clock()
            self.closed_intervals += len({r.start for r in closed})
        self._spooled(dropped)
        return len(records)

    async def store_days(self, records: Sequence[IntervalRecord]) -> int:
        """Day rollups computed elsewhere from the history (a meter tree's daily losses, keyed
        ``loss:<meter>``), sent to the backend through the buffer like the aggregator's own;
        the same key again replaces the row."""
        if not records:
            return 0
        async with self._close_lock:
            dropped = await self.spool.append("day", [r.to_json() for r in records])
        self._spooled(dropped)
        return len(records)

    async def flush_raw(self) -> int:
        points = self.raw.take()
        if not points:
            return 0
        try:
            dropped = await self.spool.append("raw", [p.to_json() for p in points])
        except BaseException:
            self.raw.pending[:0] = points  # not queued: keep them for the next flush
            raise
        self._spooled(dropped)
        return len(points)

    async def checkpoint(self) -> None:
        async with self._close_lock:
            state = await self._state_text()
            await self.spool.save_state(state)
            self._last_checkpoint = self.clock()

    async def _state_text(self) -> str:
        """The aggregator's state as JSON, written out a slice at a time with the intake held
        (20,000 meters' state is ~17 MB of JSON, ~0.6 s of work that held the event loop)."""
        slicer = Slicer()
        pieces = []
        async with self._intake_lock:
            for piece in self.aggregator.state_text():
                pieces.append(piece)
                await slicer.pause()
        return "".join(pieces)

    def _spooled(self, dropped: int) -> None:
        if dropped:
            log.error(
                "historian buffer full: oldest data dropped",
                extra={"dropped_points": dropped, "max_points": self.spool.max_points},
            )
        self._spool_changed()
        self.forwarder.wake()

    def _spool_changed(self) -> None:
        fill = self.spool.fill
        self.publish_fill(round(fill, 6))
        warn = self.settings.warn_fill
        if fill >= warn and not self._fill_warned:
            self._fill_warned = True
            log.warning(
                "historian buffer filling up; data is dropped when it is full",
                extra={"fill": round(fill, 3), "points": self.spool.points, "max_points": self.spool.max_points},
            )
        elif fill < warn * 0.9 and self._fill_warned:
            self._fill_warned = False
            log.info("historian buffer below its warning level again", extra={"fill": round(fill, 3)})

    # -- queries -----------------------------------------------------------------------------
    async def query(self, query: HistoryQuery) -> pd.DataFrame:
        return await run_query(self.backend, query, self.grid, max_rows=self.settings.max_query_rows)

    async def query_raw(self, tags: list[str], start: datetime, end: datetime) -> pd.DataFrame:
        return await run_raw_query(self.backend, tags, start, end, self.grid.tz)

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "interval_s": self.grid.length,
            "closed_intervals": self.closed_intervals,
            "fed": self.aggregator.fed,
            "late": self.aggregator.late,
            "revised": self.aggregator.revised,
            "buffer": self.spool.stats(),
            "forwarder": self.forwarder.stats(),
        }
