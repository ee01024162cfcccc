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
log records the batch wrote, which the server's logging then handles as its own. Exactly-once
holds as before: the reading's deduction, its idempotency key and the meter's cursor commit in one
transaction of the worker's; a worker that dies (killed, out of memory) leaves a transaction that
never committed, :class:`BillingUnavailable` for the caller (it keeps the readings for a retry) and
a new worker for the next batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from scada.core.gctune import freeze_startup, tune_for_server
from scada.db import Database
from scada.prepaid.deduction import Biller, BillOutcome
from scada.prepaid.money import Rounding
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import MeterInfo

__all__ = ["BillingFailed", "BillingProcess", "BillingSettings", "BillingUnavailable"]

log = logging.getLogger(__name__)


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
    moved). One batch at a time: :meth:`bill` cancelled waits until the worker's transaction
    has ended (committed or rolled back) before it raises.
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
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._sent_meters: Mapping[str, MeterInfo] | None = None
        self._sent_daily: int | None = None

    async def __aenter__(self) -> BillingProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self.settings,),
            )
            self._sent_meters, self._sent_daily = None, None  # a new worker knows nothing yet
        return self._executor

    async def bill(self, readings: Sequence[Reading], now: dt.datetime) -> BillOutcome:
        """The batch's :class:`~scada.prepaid.deduction.BillOutcome`, committed by the worker."""
        meters = self._meters()
        version, daily = self._daily_cost()
        pool = self._pool()
        job = _Job(
            [(r.meter_id, r.value, r.ts, r.registers) for r in readings], now,
            meters if meters is not self._sent_meters else None,
            dict(daily) if version != self._sent_daily else None,
        )
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, _run_job, job)
        except RuntimeError as exc:  # the pool broke since (a worker that died): a new one next time
            self._discard()
            raise BillingUnavailable(f"billing process: {exc}") from exc
        try:
            status, payload, records = await _to_the_end(future)
        except concurrent.futures.process.BrokenProcessPool as exc:
            self._discard()
            log.error("billing process ended; a new one bills the next batch", extra={"readings": len(readings)})
            raise BillingUnavailable("billing process ended") from exc
        self._sent_meters, self._sent_daily = meters, version
        for record in records:
            logging.getLogger(record.name).handle(record)
        if status == "ok":
            assert isinstance(payload, BillOutcome)
            return payload
        if status == "unavailable":
            raise BillingUnavailable(payload)
        raise BillingFailed(payload)

    def _discard(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the worker (after the batch it bills, if any)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


async def _to_the_end(future: asyncio.Future[Any]) -> Any:
    """``await future``; cancelled, wait for the job's end all the same (a transaction in the
    worker runs on: the engine's lock must not be let go before it has ended), then raise."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue
        raise


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


_worker: _Worker | None = None


def _start_worker(settings: BillingSettings) -> None:
    global _worker
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the server stops its
    # worker itself, after the batch in flight (a worker killed mid-batch only rolls it back)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tune_for_server()  # the server's collector settings: billing allocates as fast as the server
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    _worker = _Worker(settings)
    freeze_startup()


def _exit_with_parent(parent: int) -> None:
    """A server killed outright (SIGKILL) never stops its worker, and the worker's end of the job
    queue never sees it go: the worker goes once it has another parent."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)  # nothing of the server's is left to tell; a transaction in flight rolls back


def _run_job(job: _Job) -> tuple[str, Any, list[logging.LogRecord]]:
    assert _worker is not None, "the billing worker was not started"
    return _worker.run(job)
