"""Billing in a process of its own (``prepaid.billing_in = "process"``, the default from 1,000 meters):
the stream's readings billed by the worker, its log records in the server's log, a worker killed
and replaced without a reading lost, a batch sent before the loop turns, a stop that waits for the
batch in the worker, batches sent ahead in order and an operation let in between them, readings
left when it cuts in billed after it, a trickle of readings billed in part batches, and a stop
that comes in the turn a part batch's wait ends."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest

from scada.db.engine import WRITE_LOCK_WAIT_S
from scada.prepaid import engine as engine_module
from scada.prepaid.billing_process import STOP_LOCK_WAIT_S
from scada.prepaid.engine import PART_BATCH_GAP_S, PrepaidEngine
from scada.prepaid.levels import Threshold
from scada.prepaid.readings import Reading
from tags import Quality, TagChange, TagValue

from . import conftest
from .conftest import T0, Site, write_meter
from .test_deduction import H, balance, deductions

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def process_engine(site: Site, tmp_path: Path, db_url: str, extra: str = "") -> PrepaidEngine:
    config = conftest.test_config(tmp_path, db_url, f'[prepaid]\nbilling_in = "process"\n{extra}')
    engine = PrepaidEngine(config, site.db, site.assets, site.tagdb)
    await engine.load()
    assert engine.billing_in_process
    return engine


@contextlib.asynccontextmanager
async def billing(site: Site, engine: PrepaidEngine) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(engine.run_billing(), name="billing")
    try:
        while not any(sub.name == "prepaid" for sub in site.tagdb.subscriptions):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the start's seed of what the tags held is billed
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.close()


async def until(condition: object, timeout_s: float = 30.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def baselines_of_e1_and_e3(site: Site, engine: PrepaidEngine) -> None:
    write_meter(site.tagdb, "E1", T0, 10.0)
    write_meter(site.tagdb, "E3", T0, 5.0)
    await until(lambda: engine.stats["processed"] >= 2)


def workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]  # not the resource tracker


async def test_the_streams_readings_are_billed_by_a_worker_process(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    before = {p.pid for p in workers()}
    async with billing(site, engine):
        write_meter(site.tagdb, "E1", T0, 10.0)
        await until(lambda: engine.stats["processed"] >= 1)
        write_meter(site.tagdb, "E1", T0 + H, 12.5)
        await until(lambda: engine.stats["billed"] >= 1)
        assert {p.pid for p in workers()} - before  # a process of its own did the work
        assert site.tagdb.read("room:R1.balance").value == Decimal("97.50")  # the outcome published here
    assert not {p.pid for p in workers()} - before  # the stop ends the worker
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("12.5"))]
    assert await balance(site) == 10_000 - 250


@SQLITE_ONLY
async def test_the_workers_log_records_reach_the_servers_log(
    site: Site, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    caplog.set_level(logging.WARNING)
    async with billing(site, engine):
        await engine.bill([Reading("E1", Decimal("10"), T0)])
        await engine.bill([Reading("E1", Decimal("8"), T0 + H)])  # backwards: held, and logged by the worker
    held = [r for r in caplog.records if r.getMessage() == "reading held for review"]
    assert len(held) == 1
    assert (held[0].meter, held[0].kind, held[0].name) == ("E1", "backwards", "scada.prepaid.deduction")  # type: ignore[attr-defined]
    assert held[0].process != os.getpid()
    assert site.tagdb.read("E1.review_hold").value is True  # the outcome's hold, published here


@SQLITE_ONLY
async def test_the_daily_costs_reach_the_worker(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000, thresholds=(Threshold(1, days=Decimal("3")),))
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        now = dt.datetime.now(dt.UTC)
        await engine.bill([Reading("E1", Decimal("0"), now - 5 * H)])
        await engine.bill([Reading("E1", Decimal("40"), now - H)])  # 40.00 today → ≥ 40/day
        assert site.tagdb.read("room:R1.alarm_level").value == 0  # no daily cost known yet
        await engine.refresh_daily_costs()
        await engine.bill([Reading("E1", Decimal("41"), now)])
        # 59.00 left at 41.00 a day is less than 3 days: the worker judged the level with the cost
        assert site.tagdb.read("room:R1.alarm_level").value == 1


@SQLITE_ONLY
async def test_a_killed_worker_is_replaced_and_no_reading_is_lost(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await engine.bill([Reading("E1", Decimal("10"), T0)])
        (worker,) = [p for p in workers()]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert await engine.bill([Reading("E1", Decimal("11"), T0 + H)]) is None  # kept for a retry
        assert engine.stats["failures"] == 1
        await engine.bill_pending()  # the retry (the engine's tick does this), in a new worker
        assert [p.pid for p in workers()] != [worker.pid]
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("11"))]


@SQLITE_ONLY
async def test_a_batch_is_on_its_way_before_the_loop_turns(site: Site, tmp_path: Path, db_url: str) -> None:
    """On a busy server a turn of the loop is a poll's worth of tag writes: the worker does not
    wait for one to get its next batch."""
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await engine.bill([Reading("E1", Decimal("10"), T0)])  # the worker is up
        assert engine._bill_batch is not None
        outcome = engine._bill_batch([Reading("E1", Decimal("12"), T0 + H)])
        con = sqlite3.connect(site.db.url.database or "")
        try:
            for _ in range(500):  # the loop's thread blocked: no turn of it until the row is there
                if con.execute("SELECT count(*) FROM prepaid_ledger WHERE kind = 'deduction'").fetchone()[0]:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the batch was not billed while the loop did not turn")
        finally:
            con.close()
        assert (await outcome).billed == 1


class WriteLockHolder:
    """Another writer of the SQLite file, on a thread: holds the write lock until released."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.holding, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()
        assert self.holding.wait(10)

    async def __aenter__(self) -> WriteLockHolder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join, 10)

    def _hold(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        self.holding.set()
        self.release.wait(60)
        con.execute("ROLLBACK")
        con.close()


@SQLITE_ONLY
async def test_a_cancelled_batch_holds_the_engines_lock_until_the_worker_is_done_with_it(
    site: Site, tmp_path: Path, db_url: str,
) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await engine.bill([Reading("E1", Decimal("10"), T0)])
        async with WriteLockHolder(site.db.url.database or ""):
            batch = asyncio.create_task(engine.bill([Reading("E1", Decimal("12"), T0 + H)]))
            await asyncio.sleep(0.5)  # in the worker, which waits for the write lock
            batch.cancel()
            await asyncio.sleep(0.5)
            # an operation on the account must not start while the worker may still commit
            assert not batch.done() and engine._lock.locked()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(batch, 30)
        assert not engine._lock.locked()
    # the worker took the lock once it was free and committed before the cancellation went on
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("12"))]


@SQLITE_ONLY
async def test_a_stop_waits_for_the_batch_in_the_worker(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine) as task:
        write_meter(site.tagdb, "E1", T0, 10.0)
        await until(lambda: engine.stats["processed"] >= 1)
        async with WriteLockHolder(site.db.url.database or ""):
            taken = engine.stats["readings"]
            write_meter(site.tagdb, "E1", T0 + H, 12.0)
            await until(lambda: engine.stats["readings"] > taken)  # handed to the worker, which waits for the lock
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.sleep(0.5)
            assert not task.done()  # the worker's transaction has not ended: the stop waits
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("12"))]


@SQLITE_ONLY
async def test_a_stop_gives_up_the_write_lock_for_the_batch_in_the_worker_soon(
    site: Site, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url)
    caplog.set_level(logging.WARNING)
    async with billing(site, engine) as task:
        write_meter(site.tagdb, "E1", T0, 10.0)
        await until(lambda: engine.stats["processed"] >= 1)
        async with WriteLockHolder(site.db.url.database or ""):  # held until the stop has ended
            taken = engine.stats["readings"]
            write_meter(site.tagdb, "E1", T0 + H, 12.0)
            await until(lambda: engine.stats["readings"] > taken)  # handed to the worker, which waits for the lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
    # the worker gave up STOP_LOCK_WAIT_S after the stop, not WRITE_LOCK_WAIT_S after it began to wait
    (given_up,) = [r for r in caplog.records if r.getMessage() == "SQLite write lock not taken"]
    assert given_up.given_up is True and given_up.process != os.getpid()  # type: ignore[attr-defined]
    assert STOP_LOCK_WAIT_S * 1000 <= given_up.waited_ms < WRITE_LOCK_WAIT_S * 1000  # type: ignore[attr-defined]
    assert await deductions(site) == []  # rolled back
    # nothing is lost: the next start bills the reading (from what the tag holds, as from a poll)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await until(lambda: engine.stats["billed"] >= 1)
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("12"))]


async def test_batches_go_ahead_in_order_and_an_operation_gets_in_between(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    engine = await process_engine(site, tmp_path, db_url, "batch_limit = 1")
    async with billing(site, engine):
        await engine.bill([Reading("E1", Decimal("0"), T0)])
        # eight readings of one meter, a batch each: only billed in order is each one billed
        chunks = [[Reading("E1", Decimal(i), T0 + i * H)] for i in range(1, 9)]
        seen: list[int] = []
        first_billed = asyncio.Event()
        after = engine._after

        def billed(outcome: Any) -> None:
            after(outcome)
            first_billed.set()

        engine._after = billed  # type: ignore[method-assign]

        async def operation() -> None:  # an account operation that comes while the batches go
            await first_billed.wait()
            async with engine._lock:
                seen.append(engine.stats["batches"])

        op = asyncio.create_task(operation())
        await engine._bill_chunks(chunks)
        await op
    assert engine.stats["billed"] == 8
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal(i), Decimal(i + 1)) for i in range(8)]
    assert seen and seen[0] <= 4  # the batch billed, the one in flight and the one sent meanwhile: not all eight
    assert await balance(site) == 100_000 - 800


@SQLITE_ONLY
async def test_the_streams_next_readings_are_taken_while_a_batch_is_in_the_worker(site: Site, tmp_path: Path, db_url: str) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.open("R3", opening=100_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await baselines_of_e1_and_e3(site, engine)
        async with WriteLockHolder(site.db.url.database or ""):
            taken = engine.stats["readings"]
            write_meter(site.tagdb, "E1", T0 + H, 11.0)
            await until(lambda: engine.stats["readings"] == taken + 1)  # sent: the worker waits for the lock with it
            write_meter(site.tagdb, "E3", T0 + H, 5.1)  # × 40: 4 kW, under its 10
            # taken from the stream and sent behind it, not left until the first batch is done
            await until(lambda: engine.stats["readings"] == taken + 2, timeout_s=5)
            assert engine.stats["billed"] == 0
        await until(lambda: engine.stats["billed"] == 2)
    assert [(r.meter_id, r.reading_to) for r in await deductions(site)] == [("E1", Decimal("11")), ("E3", Decimal("5.1"))]


@SQLITE_ONLY
async def test_readings_left_when_an_operation_cuts_in_are_billed_without_waiting_for_the_next_poll(
    site: Site, tmp_path: Path, db_url: str,
) -> None:
    """The stream's readings are taken a batch at a time; an operation that wants the engine's
    lock stops the sending, and those left go after it without a new change on the stream."""
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.open("R3", opening=10_000)
    engine = await process_engine(site, tmp_path, db_url, "batch_limit = 1")
    async with billing(site, engine):
        await baselines_of_e1_and_e3(site, engine)
        async with WriteLockHolder(site.db.url.database or ""):  # the worker waits with the first batch
            write_meter(site.tagdb, "E1", T0 + H, 11.0)
            await until(lambda: engine.stats["readings"] == 3)
            write_meter(site.tagdb, "E3", T0 + H, 5.1)  # taken together: one sent behind it, one left
            write_meter(site.tagdb, "E1", T0 + 2 * H, 12.0)
            await until(lambda: engine.stats["readings"] == 4)
            operation = asyncio.create_task(engine._lock.acquire())  # the sending stops for it
            await asyncio.sleep(0.2)
        await operation
        engine._lock.release()
        await until(lambda: engine.stats["billed"] == 3, timeout_s=10)  # no further write comes
    assert sorted((r.meter_id, r.reading_to) for r in await deductions(site)) == [
        ("E1", Decimal("11")), ("E1", Decimal("12")), ("E3", Decimal("5.1")),
    ]


@SQLITE_ONLY
async def test_a_trickle_of_readings_is_billed_a_few_times_a_second_not_a_transaction_each(
    site: Site, tmp_path: Path, db_url: str,
) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    await site.open("R3", opening=100_000)
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine):
        await baselines_of_e1_and_e3(site, engine)
        batches = engine.stats["batches"]
        started = asyncio.get_running_loop().time()
        for i in range(1, 41):  # a poll response every 25 ms for a second
            write_meter(site.tagdb, "E1" if i % 2 else "E3", T0 + i * H, (10.0 if i % 2 else 5.0) + i / 100)
            await asyncio.sleep(0.025)
        await until(lambda: engine.stats["billed"] == 40)
        took = asyncio.get_running_loop().time() - started
    # a part batch at most every PART_BATCH_GAP_S; sent as they came, it was a batch a reading (40)
    assert engine.stats["batches"] - batches <= min(took / PART_BATCH_GAP_S + 2, 20)
    assert len(await deductions(site)) == 40


@SQLITE_ONLY
async def test_a_stop_that_comes_as_a_part_batchs_wait_ends_stops_the_billing(
    site: Site, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop in the same loop turn as the change that ends a part batch's wait: the billing
    ends. (On Python 3.11, ``asyncio.wait_for`` returned the wait's result and swallowed the
    cancel: the billing went on after its stop, its tasks owned by nobody.)"""
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    await site.open("R3", opening=100_000)
    monkeypatch.setattr(engine_module, "PART_BATCH_GAP_S", 30.0)  # the wait is surely on when the stop comes
    engine = await process_engine(site, tmp_path, db_url)
    async with billing(site, engine) as task:
        await baselines_of_e1_and_e3(site, engine)  # a part batch: the next one waits its time
        write_meter(site.tagdb, "E1", T0 + H, 11.0)
        await asyncio.sleep(0.05)  # collected; the billing waits for more or for its time
        assert engine.stats["processed"] == 2 and len(engine._pending) == 1
        write_meter(site.tagdb, "E3", T0 + H, 5.1)  # ends the wait ...
        task.cancel()  # ... in the turn the stop comes
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the billing went on after its stop"


async def test_take_readings_with_a_limit_leaves_the_rest_collected(site: Site) -> None:
    engine = site.engine

    def total(meter: str, ts: dt.datetime, value: float) -> TagChange:
        return TagChange(f"{meter}.energy_total", None, TagValue(value, Quality.GOOD, ts, ts), True)

    engine.ingest([total("E1", T0, 10.0), total("E3", T0, 5.0), total("E1", T0 + H, 11.0)])
    assert [(r.meter_id, r.value) for r in engine.take_readings(2)] == [("E1", Decimal("10")), ("E3", Decimal("5"))]
    assert [(r.meter_id, r.value) for r in engine.take_readings(5)] == [("E1", Decimal("11"))]
    assert engine.take_readings(5) == []


PARENT = """
import asyncio, datetime as dt, logging, sys
from decimal import Decimal
from zoneinfo import ZoneInfo
from scada.db import async_url
from scada.prepaid.billing_process import BillingProcess, BillingSettings

async def main() -> None:
    settings = BillingSettings(async_url("sqlite:///" + sys.argv[1]), 2, "half_up", ZoneInfo("UTC"), Decimal(1), logging.INFO)
    process = BillingProcess(settings, lambda: {}, lambda: (0, {}))
    await process.bill([], dt.datetime.now(dt.UTC))  # the worker is up and has answered
    print("ready", flush=True)
    await asyncio.sleep(120)

if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_the_worker_leaves_when_the_server_is_killed(tmp_path: Path) -> None:
    """A server killed outright (SIGKILL) cannot stop its worker: the worker sees its parent gone."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT, encoding="utf-8")
    out = tmp_path / "parent.out"  # a file, not a pipe: the worker holds its parent's stdout open
    with out.open("wb") as stdout:
        server = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(tmp_path / "w.db"), stdout=stdout, cwd=Path(__file__).resolve().parents[3],
        )
    worker: psutil.Process | None = None
    try:
        await until(lambda: out.read_bytes() == b"ready\n", timeout_s=60)
        (worker,) = [p for p in psutil.Process(server.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        server.kill()
        await server.wait()
        await asyncio.to_thread(worker.wait, 10)  # psutil.TimeoutExpired if it stays
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        if worker is not None and worker.is_running():
            worker.kill()
