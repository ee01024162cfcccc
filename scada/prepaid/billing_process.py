"""Billing's transactions in a process of their own.

Every part of the server shares one interpreter. At site scale (50,000 meters) the server's
process ran at one core's worth, and billing — priced readings, ledger rows, cursors and balances,
about half of the prepaid path's CPU — got what the poller, OPC UA, the HMI and the historian left
of it: the deductions fell behind the readings. :class:`BillingProcess` runs
:meth:`scada.prepaid.deduction.Biller.bill` in a worker process (started with ``spawn``: the server's
threads and loop are not copied) with a database engine of its own; the server's process keeps
what touches the tag stream (grouping the registers into readings, publishing the new balances,
supply decisions) and the engine's lock, retries and the isolation of a failing meter.

A job carries the batch's readings; the site's meters go along once and again after the asset
registry changed, the accounts' daily costs (days-based balance levels) once and after each
refresh. The worker's answer is the batch's :class:`~scada.prepaid.deduction.BillOutcome` with the
log records the batch wrote, which the server's logging then handles as its own. Jobs and answers
are pickles on a socket pair that the server's event loop writes and reads itself: passing them
through a pool's threads, each of which had to win the interpreter's lock from a loop that is
never idle, took 25-40 ms a batch each way at 1,000 meters a round. Exactly-once
holds as before: the reading's deduction, its idempotency key and the meter's cursor commit in one
transaction of the worker's; a worker that dies (killed, out of memory) leaves a transaction that
never committed, :class:`BillingUnavailable` for the caller (it keeps the readings for a retry) and
a new worker for the next batch.

A batch the server stopped waiting for (cancelled: the server stops) is billed all the same if its
transaction can be; but on SQLite it waits for the write lock at most :data:`STOP_LOCK_WAIT_S`
more, not the full ``WRITE_LOCK_WAIT_S`` (10 s) of each batch in the worker one after the other,
which could make a stop outlast the server's ``stop_timeout_s``. A batch that gives up is rolled
back; its meters are billed from their next reading after the start, as after any failed batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from scada.core.gctune import freeze_startup, tune_for_server
from scada.db import Database
from scada.db.engine import give_up_lock_waits_when
from scada.prepaid.deduction import Biller, BillOutcome
from scada.prepaid.money import Rounding
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import MeterInfo

__all__ = ["BillingFailed", "BillingProcess", "BillingSettings", "BillingUnavailable"]

log = logging.getLogger(__name__)

# how much longer a batch the server stopped waiting for may wait for SQLite's write lock
STOP_LOCK_WAIT_S = 2.0


class BillingUnavailable(Exception):
    """The batch was not billed and may be tried again as it is: the database failed (the
    worker's first line of the error) or the worker process ended."""


class BillingFailed(Exception):
    """The batch was not billed: an error of the batch itself (its message carries the worker's
    traceback); trying it again as it is fails again."""


@dataclass(frozen=True)
class BillingSettings:
    """What the worker builds its biller from (the engine's own settings)."""

    url: URL
    minor_units: int
    rounding: str
    tz: ZoneInfo
    margin: Decimal
    log_level: int


@dataclass(frozen=True)
class _Job:
    readings: list[tuple[str, Decimal, dt.datetime, dict[str, Decimal] | None]]
    now: dt.datetime
    meters: Mapping[str, MeterInfo] | None  # the site's meters: sent when they changed
    daily_cost: dict[int, Decimal] | None  # sent when refreshed


class BillingProcess:
    """``async with BillingProcess(settings, meters, daily_cost) as p: outcome = await p.bill(readings, now)``.

    ``meters()`` gives the site's current meters (sent when it returns another object than the
    last sent), ``daily_cost()`` a version and the accounts' daily costs (sent when the version
    moved). :meth:`bill` sends the batch before it returns; batches sent one after another are
    billed in that order, one at a time. Awaiting a batch cancelled waits until the worker's
    transaction has ended (committed or rolled back) before it raises.
    """

    def __init__(
        self,
        settings: BillingSettings,
        meters: Callable[[], Mapping[str, MeterInfo]],
        daily_cost: Callable[[], tuple[int, dict[int, Decimal]]],
    ) -> None:
        self.settings = settings
        self._meters = meters
        self._daily_cost = daily_cost
        self._channel: _Channel | None = None
        self._sent_meters: Mapping[str, MeterInfo] | None = None
        self._sent_daily: int | None = None

    async def __aenter__(self) -> BillingProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def bill(self, readings: Sequence[Reading], now: dt.datetime) -> asyncio.Future[BillOutcome]:
        """The batch's :class:`~scada.prepaid.deduction.BillOutcome`, committed by the worker.
        The job is on its way when this returns (no turn of the loop in between: on a busy
        loop a turn can be a poll's worth of tag writes)."""
        channel: _Channel | None = None
        try:
            answer, channel = self._send(readings, now)
        except Exception as exc:  # the worker could not be started (or the job not be made)
            answer = asyncio.get_running_loop().create_future()
            answer.set_exception(BillingUnavailable(f"billing process: {exc}") if isinstance(exc, OSError) else exc)
        return asyncio.get_running_loop().create_task(self._outcome(answer, channel), name="prepaid:billing answer")

    def _send(self, readings: Sequence[Reading], now: dt.datetime) -> tuple[asyncio.Future[Any], _Channel]:
        channel = self._channel
        if channel is None or channel.broken:
            channel = self._channel = _Channel(self.settings)
            self._sent_meters, self._sent_daily = None, None  # a new worker knows nothing yet
        meters = self._meters()
        version, daily = self._daily_cost()
        job = _Job(
            [(r.meter_id, r.value, r.ts, r.registers) for r in readings], now,
            meters if meters is not self._sent_meters else None,
            dict(daily) if version != self._sent_daily else None,
        )
        answer = channel.send(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        # the worker takes its jobs in order: the next job can count on what this one carries
        self._sent_meters, self._sent_daily = meters, version
        return answer, channel

    @staticmethod
    async def _outcome(answer: asyncio.Future[Any], channel: _Channel | None) -> BillOutcome:
        try:
            status, payload, records = await _to_the_end(answer, channel.hurry if channel is not None else None)
        except asyncio.CancelledError:
            if answer.done() and not answer.cancelled() and answer.exception() is None:
                _handle(answer.result()[2])  # what the batch logged (a lock given up) is told all the same
            raise
        _handle(records)
        if status == "ok":
            assert isinstance(payload, BillOutcome)
            return payload
        if status == "unavailable":
            raise BillingUnavailable(payload)
        raise BillingFailed(payload)

    async def close(self) -> None:
        """Stop the worker (after the batches sent, if any)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


def _handle(records: list[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)


async def _to_the_end(future: asyncio.Future[Any], hurry: Callable[[], None] | None = None) -> Any:
    """``await future``; cancelled, wait for the job's end all the same (a transaction in the
    worker runs on: the engine's lock must not be let go before it has ended), then raise;
    ``hurry`` is called first (the worker stops waiting for the lock sooner)."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if hurry is not None and not future.done():
            hurry()
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue
        raise


_FRAME = struct.Struct("!Q")  # a message's length; then the message (a pickle)


class _Channel:
    """A worker process and a socket pair to it: jobs out, answers back in the same order. The
    server's side is the event loop's (non-blocking writes, a reader callback): no thread of the
    server's has to win the interpreter's lock from a busy loop to pass a job or an answer on."""

    def __init__(self, settings: BillingSettings) -> None:
        self.loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("spawn")
        # [jobs sent when a batch was last cancelled, the time.monotonic() from which they give up
        # waiting for the lock]: shared memory, read by the worker between its tries for the lock
        # (its socket still holds the jobs before it; CLOCK_MONOTONIC is the machine's, not the process's)
        self.hurried = context.RawArray("d", 2)
        self.jobs_sent = 0
        self.process = context.Process(
            target=_serve, args=(settings, theirs, self.hurried), name="scada-billing", daemon=True,
        )
        try:
            self.process.start()
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.answers: deque[asyncio.Future[Any]] = deque()
        self.broken = False
        self.closing = False
        self._out = bytearray()  # what the socket did not take yet
        self._in = bytearray()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(ours.fileno(), self._readable)
        self.loop.add_reader(self.process.sentinel, self._exited)

    def send(self, message: bytes) -> asyncio.Future[Any]:
        """Send a job; the future gives the worker's answer (:class:`BillingUnavailable` if the
        worker ends first)."""
        answer: asyncio.Future[Any] = self.loop.create_future()
        if self.broken:
            answer.set_exception(BillingUnavailable("billing process ended"))
            return answer
        self.answers.append(answer)
        self.jobs_sent += 1
        data = _FRAME.pack(len(message)) + message
        if not self._out:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._break()
                return answer
            if sent == len(data):
                return answer
            data = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self._out += data
        return answer

    def hurry(self) -> None:
        """The jobs sent so far wait for SQLite's write lock at most :data:`STOP_LOCK_WAIT_S` more."""
        self.hurried[1] = time.monotonic() + STOP_LOCK_WAIT_S  # the time before the jobs it is for
        self.hurried[0] = self.jobs_sent

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._break()
            return
        del self._out[:sent]
        if not self._out:
            self.loop.remove_writer(self.sock.fileno())

    def _readable(self) -> bool:
        """Read what the socket has (answers are handed out as they are complete); False once
        it had nothing more."""
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # the worker has gone
            self._break()
            return False
        buf = self._in
        buf += data
        while len(buf) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(buf)
            end = _FRAME.size + size
            if len(buf) < end:
                break
            message = buf[_FRAME.size:end]
            del buf[:end]
            if not self.answers:  # an answer to no job: nothing the worker says can be trusted
                self._break()
                return False
            answer = self.answers.popleft()
            if answer.done():
                continue
            try:
                answer.set_result(pickle.loads(message))
            except Exception as exc:  # committed, but its outcome is lost: the caller bills again (and finds it billed)
                answer.set_exception(exc)
        return True

    def _exited(self) -> None:
        """The worker process has ended: what it answered before is still read, then the rest
        is unavailable."""
        self.loop.remove_reader(self.process.sentinel)
        self.process.join()
        drained = False
        while not drained:  # to the end of what it wrote before it went
            drained = self.broken or not self._readable()
        self._break()
        self.ended.set_result(None)

    def _break(self) -> None:
        """The worker ended (or the socket failed): every batch still waiting is unavailable."""
        if self.broken:
            return
        self.broken = True
        self._stop_io()
        self.sock.close()
        if not self.closing:
            log.error("billing process ended; a new one bills the next batch", extra={"batches": len(self.answers)})
        while self.answers:
            self.answers.popleft().set_exception(BillingUnavailable("billing process ended"))

    def _stop_io(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if self._out:
            self.loop.remove_writer(self.sock.fileno())
            self._out.clear()

    async def close(self) -> None:
        """The worker bills what it was sent, sees the end of its input and leaves."""
        self.closing = True
        while self._out and not self.broken:  # a job half written would be lost: it goes first
            await asyncio.sleep(0.01)
        if not self.broken:
            self.sock.shutdown(socket.SHUT_WR)
        while self.answers and not self.broken:  # their batches are billed all the same; their answers are read
            await asyncio.wait([self.answers[-1]])
        self._break()
        await self.ended


# -- in the worker process -------------------------------------------------------------------------

class _Directory:
    """The biller's meter lookups over the meters the server sent."""

    def __init__(self) -> None:
        self.meters: Mapping[str, MeterInfo] = {}
        self._predecessors: dict[str, str] = {}

    def load(self, meters: Mapping[str, MeterInfo]) -> None:
        self.meters = meters
        self._predecessors = {m.replaced_by: m.id for m in meters.values() if m.replaced_by}

    def meter(self, meter_id: str) -> MeterInfo | None:
        return self.meters.get(meter_id)

    def predecessor(self, meter_id: str) -> str | None:
        return self._predecessors.get(meter_id)


class _Records(logging.Handler):
    """Keeps the records a job writes, ready to be pickled back to the server."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None
        self.records.append(record)


class _Worker:
    def __init__(self, settings: BillingSettings) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.db = Database(settings.url, pool_size=1, driver_in_place=True)
        self.meters = _Directory()
        self.daily_cost: dict[int, Decimal] = {}
        self.biller = Biller(TariffStore(self.db), Rounding(settings.minor_units, settings.rounding),  # type: ignore[arg-type]
                             settings.tz, self.meters, margin=settings.margin, daily_cost=self.daily_cost.get)
        self.records = _Records()
        root = logging.getLogger()
        root.handlers[:] = [self.records]
        root.setLevel(settings.log_level)

    def run(self, job: _Job) -> tuple[str, Any, list[logging.LogRecord]]:
        if job.meters is not None:
            self.meters.load(job.meters)
        if job.daily_cost is not None:
            self.daily_cost.clear()
            self.daily_cost.update(job.daily_cost)
        readings = [Reading(m, v, ts, regs) for m, v, ts, regs in job.readings]
        self.records.records = []
        try:
            outcome = self.loop.run_until_complete(self._bill(readings, job.now))
            result: tuple[str, Any] = ("ok", outcome)
        except (DBAPIError, OSError) as exc:
            result = ("unavailable", str(exc).splitlines()[0][:200])
        except Exception:  # the batch's own error: its traceback goes back with it
            result = ("failed", traceback.format_exc())
        return (*result, self.records.records)

    async def _bill(self, readings: list[Reading], now: dt.datetime) -> BillOutcome:
        async with self.db.transaction() as s:
            return await self.biller.bill(s, readings, now)


def _serve(settings: BillingSettings, sock: socket.socket, hurried: Any) -> None:
    """The worker process: jobs from ``sock``, one at a time, each answered on it; ``hurried`` is
    :attr:`_Channel.hurried`."""
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the server stops its
    # worker itself, after the batches it sent (a worker killed mid-batch only rolls it back)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tune_for_server()  # the server's collector settings: billing allocates as fast as the server
    parent = os.getppid()
    worker = _Worker(settings)
    jobs = 0  # received, this one included
    give_up_lock_waits_when(lambda: jobs <= hurried[0] and time.monotonic() >= hurried[1])
    freeze_startup()
    sock.setblocking(True)
    while True:
        message = _receive(sock)
        # the end of the input: the server stopped it, or the server is gone (killed outright:
        # its jobs still in the socket are not billed for a server that will not hear of them)
        if message is None or os.getppid() != parent:
            return
        jobs += 1
        answer = pickle.dumps(worker.run(pickle.loads(message)), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            sock.sendall(_FRAME.pack(len(answer)) + answer)
        except OSError:  # the server is gone
            return


def _receive(sock: socket.socket) -> bytearray | None:
    """The next message, or None at the end of the input (a message cut short included)."""
    head = _read_exactly(sock, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        try:
            n = sock.recv_into(view[got:])
        except OSError:  # reset: the server is gone
            return None
        if n == 0:
            return None
        got += n
    return buf
