"""Moves batches from the spool to the backend, oldest first, and reports the backend's health.

One batch (or a run of consecutive batches of one kind, up to ``batch_points``) is written at a
time with a timeout; only when the backend took it is it removed from the spool, so a crash or a
failure at any moment means at worst writing it again — which replaces the same keyed points.
While the backend is away, the forwarder retries with exponential backoff (capped) and logs one
line when it goes away and one when it is back, not every failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .backends.base import Backend, BackendError, BackendRejected
from .records import IntervalRecord, RawPoint
from .spool import Spool, SpoolBatch

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        backend: Backend,
        *,
        batch_points: int = 5_000,
        timeout_s: float = 30.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        on_spool_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.backend = backend
        self.batch_points = batch_points
        self.timeout_s = timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_spool_change = on_spool_change
        self.healthy: bool | None = None  # None until the first write
        self.written = 0  # points written since start
        self.failures = 0
        self.last_error = ""
        self.unhealthy_since: float | None = None
        self._prepared = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forward for ever (a task of the owning component)."""
        backoff = self.retry_initial_s
        task = asyncio.current_task()
        while True:
            self._wake.clear()
            sent = await self.send_once()
            if task is not None and task.cancelling():
                # on Python 3.11 ``wait_for`` (which a backend's client library may use) returns
                # the result when the write ends at the moment the task is cancelled, and the
                # cancellation is lost: the task then waited for its next wake-up instead of
                # stopping (a shutdown's "did not stop in time")
                raise asyncio.CancelledError
            if sent is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            backoff = self.retry_initial_s
            if sent == 0:
                await self._wake.wait()

    async def send_once(self) -> int | None:
        """Write the oldest batches. Returns points written (0: nothing waiting), None on failure."""
        async with self._lock:
            batches = await self.spool.peek(self.batch_points)
            if not batches:
                return 0
            group = _leading_group(batches, self.batch_points)
            try:
                if not self._prepared:
                    async with asyncio.timeout(self.timeout_s):
                        await self.backend.prepare()
                    self._prepared = True
                written = await self._write_group(group)
            except (TimeoutError, BackendError, OSError) as exc:
                self._prepared = False
                self._failed(exc)
                return None
            self._succeeded()
            self.written += written
            return written

    async def _write_group(self, group: list[SpoolBatch]) -> int:
        try:
            await self._write(group)
        except BackendRejected as exc:
            if len(group) == 1:
                await self._reject(group[0], exc)
                return 0
            # find the batch that is refused: write them one by one
            written = 0
            for batch in group:
                try:
                    await self._write([batch])
                except BackendRejected as one:
                    await self._reject(batch, one)
                else:
                    await self.spool.remove([batch.seq])
                    written += len(batch.items)
                    self.on_spool_change()
            return written
        await self.spool.remove([b.seq for b in group])
        self.on_spool_change()
        return sum(len(b.items) for b in group)

    async def _bounded(self, write: Coroutine[Any, Any, None]) -> None:
        async with asyncio.timeout(self.timeout_s):
            await write

    async def _write(self, group: list[SpoolBatch]) -> None:
        kind = group[0].kind
        if kind == "interval":
            records = [IntervalRecord.from_json(item) for b in group for item in b.items]
            await self._bounded(self.backend.write_intervals(records))
        elif kind == "day":
            days = [IntervalRecord.from_json(item) for b in group for item in b.items]
            await self._bounded(self.backend.write_days(days))
        elif kind == "rebuild_day":
            keys = [(str(m), int(s), int(e)) for b in group for m, s, e in b.items]
            await self._bounded(self.backend.rebuild_days(keys))
        elif kind == "raw":
            points = [RawPoint.from_json(item) for b in group for item in b.items]
            await self._bounded(self.backend.write_raw(points))
        else:
            raise BackendRejected(f"unknown batch kind {kind!r}")

    async def _reject(self, batch: SpoolBatch, exc: Exception) -> None:
        log.error(
            "historian backend refused a batch; set aside in the buffer's rejected table",
            extra={"backend": self.backend.name, "kind": batch.kind, "points": len(batch.items), "error": str(exc)},
        )
        await self.spool.reject(batch.seq, str(exc))
        self.on_spool_change()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = str(exc) or repr(exc)
        if self.healthy is not False:
            self.healthy = False
            self.unhealthy_since = time.time()
            log.warning(
                "historian backend unavailable; buffering on disk",
                extra={"backend": self.backend.name, "error": self.last_error, "buffered": self.spool.points},
            )

    def _succeeded(self) -> None:
        if self.healthy is False:
            log.info(
                "historian backend available again; sending the buffer",
                extra={
                    "backend": self.backend.name,
                    "buffered": self.spool.points,
                    "away_s": round(time.time() - (self.unhealthy_since or time.time())),
                },
            )
        self.healthy = True
        self.unhealthy_since = None

    async def drain(self, timeout_s: float) -> bool:
        """Send everything waiting, for at most ``timeout_s``. True when the spool is empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.spool.batches:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    sent = await self.send_once()
            except TimeoutError:
                return False
            if sent is None:
                return False
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "written": self.written,
            "failures": self.failures,
            "last_error": self.last_error,
        }


def _leading_group(batches: list[SpoolBatch], limit: int) -> list[SpoolBatch]:
    """The oldest batch and the batches of the same kind right after it, up to ``limit`` points."""
    group = [batches[0]]
    total = len(batches[0].items)
    for b in batches[1:]:
        if b.kind != group[0].kind or total + len(b.items) > limit:
            break
        group.append(b)
        total += len(b.items)
    return group
