"""One scheduler per link: connections, a queue of due polls, urgent operations first.

A link has as many workers as requests it may have in flight (``max_in_flight``; one on an RTU
bus), each with its own connection (pymodbus serialises requests on a connection). A single
dispatcher hands the next job to an idle worker: urgent operations (commands, reads on demand)
before polls, polls in order of their due time, and *bulk* operations (the commands of a batch
job) only while no poll has waited ``BULK_SLACK_S`` past its due time: a batch takes the link's
spare time, and delays a poll by at most that much (and one request), however long the batch.
On a link with more polls than it can carry (every poll late) a batch still takes one request
in ``BULK_SHARE + 1``, so that it goes on, slowly, instead of timing out command by command.
After each answer a worker keeps the link's inter-frame gap before its next request. A failed
request is retried ``retries`` times with backoff; after a timeout on an RTU link the worker
stays silent for one more timeout so that a late answer is not taken for the answer to the next request.

Nothing here knows about devices or tags: a job is any object with ``stale`` and
``run(connection)``; the poller supplies them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from tags import QualityReason

from .client import ModbusConnection, ModbusFailure
from .config import LinkConfig, ModbusConfig
from .pace import PollPace
from .stats import Counters, LinkStats

__all__ = ["Job", "Link", "LinkObserver"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# bulk work (a batch job's commands) goes before a due poll only while that poll is late by less
BULK_SLACK_S = 0.25
# ...and while the polls are later than that (a link with more polls than it can carry), it still
# takes one turn after this many polls: an overloaded link slows a batch job, it does not stop it
# (its commands would time out one by one), and costs the polls one frame in BULK_SHARE + 1
BULK_SHARE = 8


class Job(Protocol):
    @property
    def stale(self) -> bool: ...

    async def run(self, conn: ModbusConnection) -> None: ...


class LinkObserver(Protocol):
    def link_up(self, link: Link) -> None: ...

    def link_down(self, link: Link, detail: str) -> None: ...


class _Urgent:
    """An operation run on the next free connection, its result handed back by a future."""

    stale = False

    def __init__(self, op: Callable[[ModbusConnection], Awaitable[Any]]) -> None:
        self.op = op
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def run(self, conn: ModbusConnection) -> None:
        if self.future.done():  # the caller gave up waiting
            return
        try:
            result = await self.op(conn)
        except Exception as exc:
            if not self.future.done():
                self.future.set_exception(exc)
        else:
            if not self.future.done():
                self.future.set_result(result)


def _honour_cancel() -> None:
    """Raise if this task was cancelled but the cancellation got lost on the way.

    Python 3.11's ``asyncio.wait_for`` (which pymodbus awaits every request with) returns the
    result instead of raising when the awaited answer arrives in the same loop cycle as the
    cancellation; ``Task.cancelling()`` still remembers it, so a loop that checks it stops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class Link:
    def __init__(
        self,
        config: LinkConfig,
        options: ModbusConfig,
        observer: LinkObserver,
        connection_factory: Callable[[LinkConfig], ModbusConnection] = ModbusConnection,
    ) -> None:
        self.config = config
        self.name = config.name
        self.options = options
        self.observer = observer
        self.connection_factory = connection_factory
        self.rtu = config.kind != "tcp"
        self.stats = LinkStats(
            name=config.name, kind=config.kind,
            endpoint=config.serial_port or f"{config.host}:{config.port}",
            connections=config.in_flight_limit,
        )
        self.pace = PollPace(self.stats)  # told by the poller when each poll starts
        self._heap: list[tuple[float, int, Job]] = []
        self._urgent: deque[_Urgent] = deque()
        self._bulk: deque[_Urgent] = deque()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._handoff: asyncio.Queue[Job] = asyncio.Queue(maxsize=1)
        self._polls_before_bulk = 0  # late polls served while bulk work waited
        self._up: set[int] = set()
        self._ever_up: set[int] = set()
        self._is_up = False

    # -- queueing ---------------------------------------------------------------------------------
    def schedule(self, job: Job, due: float) -> None:
        """Run ``job`` at loop time ``due`` (or as soon after as a connection is free)."""
        heapq.heappush(self._heap, (due, next(self._seq), job))
        if due <= self._heap[0][0]:
            self._wake.set()

    async def urgent(self, op: Callable[[ModbusConnection], Awaitable[T]], timeout: float | None = None, *, bulk: bool = False) -> T:
        """Run ``op`` on the next free connection, before any due poll (``bulk``: after the due
        polls, in the link's spare time: a batch job's work).

        Fails at once with ``COMM_FAILURE`` while the link has no connection.
        """
        if not self._up:
            raise ModbusFailure(
                QualityReason.COMM_FAILURE,
                f"link {self.name} is down: {self.stats.last_error or 'not connected yet'}",
            )
        item = _Urgent(op)
        (self._bulk if bulk else self._urgent).append(item)
        self._wake.set()
        limit = timeout if timeout is not None else (self.config.timeout_s * (self.config.retries + 1) * 4 + 10)
        if bulk and timeout is None:
            limit = max(limit, 120.0)  # bulk work waits behind the polls: a busy link is not a failure
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(item.future)  # type: ignore[no-any-return]
        except TimeoutError:
            item.future.cancel()
            raise ModbusFailure(QualityReason.TIMEOUT, f"link {self.name} busy: not served within {limit:g} s") from None
        except asyncio.CancelledError:
            item.future.cancel()
            raise

    @property
    def is_up(self) -> bool:
        return self._is_up

    # -- running ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Dispatcher and workers, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(self.config.in_flight_limit):
                    group.create_task(self._worker(i), name=f"modbus:{self.name}:conn{i}")
                group.create_task(self._dispatch(), name=f"modbus:{self.name}:dispatch")
        finally:
            for item in (*self._urgent, *self._bulk):
                item.future.cancel()
            self._urgent.clear()
            self._bulk.clear()

    async def _next_job(self) -> Job:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._urgent:
                return self._urgent.popleft()
            timeout = None
            if self._heap:
                due, _, job = self._heap[0]
                now = loop.time()
                if due <= now:
                    if (now - due < BULK_SLACK_S or self._polls_before_bulk >= BULK_SHARE) and (item := self._next_bulk()) is not None:
                        self._polls_before_bulk = 0
                        return item
                    heapq.heappop(self._heap)
                    if job.stale:
                        continue
                    if self._bulk:
                        self._polls_before_bulk += 1
                    return job
                timeout = due - now
            if (item := self._next_bulk()) is not None:
                self._polls_before_bulk = 0
                return item
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _next_bulk(self) -> _Urgent | None:
        while self._bulk:
            item = self._bulk.popleft()
            if not item.future.done():  # a caller that gave up waiting takes no turn
                return item
        return None

    async def _dispatch(self) -> None:
        while True:
            _honour_cancel()
            job = await self._next_job()
            await self._handoff.put(job)

    def queued(self) -> int:
        """Jobs due and waiting for a connection (counted on demand: it walks the queue)."""
        now = asyncio.get_running_loop().time()
        return len(self._urgent) + len(self._bulk) + sum(1 for due, _, job in self._heap if due <= now and not job.stale)

    async def _worker(self, index: int) -> None:
        conn = self.connection_factory(self.config)
        backoff = self.options.reconnect_initial_s
        try:
            while True:
                if not conn.connected:
                    try:
                        await conn.connect()
                    except ModbusFailure as exc:
                        # a cancellation that pymodbus's connect swallowed (its wait_for) would
                        # otherwise be lost here, and the worker reconnect for ever after a stop
                        _honour_cancel()
                        self._connection_down(index, exc.detail)
                        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                        backoff = min(backoff * 2, self.options.reconnect_max_s)
                        continue
                    backoff = self.options.reconnect_initial_s
                    self._connection_up(index)
                _honour_cancel()
                job = await self._handoff.get()
                if job.stale:
                    continue
                try:
                    await job.run(conn)
                except Exception:  # a job never takes its worker down
                    log.exception("modbus job failed", extra={"link": self.name})
                _honour_cancel()
                if not conn.connected:
                    self._connection_down(index, self.stats.last_error or "connection lost")
        finally:
            conn.close()
            self._up.discard(index)

    def _connection_up(self, index: int) -> None:
        if index in self._ever_up:
            self.stats.reconnects += 1
        self._ever_up.add(index)
        self._up.add(index)
        self.stats.connections_up = len(self._up)
        if not self._is_up:
            self._is_up = True
            self.stats.state = "up"
            log.info("link up", extra={"link": self.name, "endpoint": self.stats.endpoint})
            self.observer.link_up(self)

    def _connection_down(self, index: int, detail: str) -> None:
        self._up.discard(index)
        self.stats.connections_up = len(self._up)
        self.stats.last_error = detail
        if not self._up and (self._is_up or self.stats.state == "connecting"):
            self._is_up = False
            self.stats.state = "down"
            log.warning("link down", extra={"link": self.name, "endpoint": self.stats.endpoint, "error": detail})
            self.observer.link_down(self, detail)

    # -- one request -----------------------------------------------------------------------------------
    async def call(
        self,
        conn: ModbusConnection,
        device: Counters,
        op: Callable[[ModbusConnection], Awaitable[T]],
    ) -> T:
        """One request with the link's gap, retries and backoff; statistics for link and device."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            wait = conn.next_send - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.stats.requests += 1
            device.requests += 1
            self.stats.in_flight += 1
            if self.stats.in_flight > self.stats.max_in_flight:
                self.stats.max_in_flight = self.stats.in_flight
            t0 = time.perf_counter()
            try:
                result = await op(conn)
            except ModbusFailure as failure:
                elapsed = time.perf_counter() - t0
                answered = elapsed if failure.device_answered else None
                self.stats.failed(failure.reason, failure.detail, answered)
                device.failed(failure.reason, failure.detail, answered)
                quiet = self.config.timeout_s if (self.rtu and failure.reason is QualityReason.TIMEOUT) else 0.0
                conn.next_send = loop.time() + quiet + self.config.inter_frame_gap_ms / 1000
                if not conn.connected:
                    raise
                if attempt < self.config.retries and failure.retryable:
                    await asyncio.sleep(self.options.retry_backoff_s * (2**attempt))
                    attempt += 1
                    continue
                raise
            finally:
                self.stats.in_flight -= 1
            elapsed = time.perf_counter() - t0
            self.stats.ok(elapsed)
            device.ok(elapsed)
            conn.next_send = loop.time() + self.config.inter_frame_gap_ms / 1000
            return result
