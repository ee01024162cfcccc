"""Runtime: dependency order, reverse stop, lifespans, declared keys, supervised tasks, failure policies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy
import sqlalchemy.exc

from scada.core.context import Context, Key, MissingKeyError
from scada.core.runtime import (
    Component,
    Restart,
    Runtime,
    RuntimeError_,
    SupervisionPolicy,
    database_locked,
    watch_loop_lag,
)

A: Key[str] = Key("a", str)
B: Key[str] = Key("b", str)
C: Key[str] = Key("c", str)

FAST = SupervisionPolicy(initial_backoff_s=0.01, max_backoff_s=0.02, restart_limit=3, window_s=60)


class Recorder(Component):
    def __init__(
        self,
        name: str,
        events: list[str],
        requires: tuple[Key[Any], ...] = (),
        provides: tuple[Key[Any], ...] = (),
        optional: tuple[Key[Any], ...] = (),
    ) -> None:
        self.name = name
        self.requires = requires
        self.provides = provides
        self.optional = optional
        super().__init__()
        self.events = events

    async def start(self, ctx: Context) -> None:
        for key in self.provides:
            ctx[key] = self.name
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        await self.start(ctx)
        try:
            yield
        finally:
            await self.stop()


class Starter(Component):
    """A component whose lifespan is a ``start`` method (the tests' shorthand)."""

    async def start(self, ctx: Context) -> None:
        return None

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        await self.start(ctx)
        yield


async def test_start_in_dependency_order_stop_in_reverse() -> None:
    events: list[str] = []
    web = Recorder("web", events, requires=(B,))
    db = Recorder("db", events, provides=(A,))
    engine = Recorder("engine", events, requires=(A,), provides=(B,))
    rt = Runtime([web, engine, db], policy=FAST)
    await rt.start()
    assert events == ["start db", "start engine", "start web"]
    assert rt.ctx[B] == "engine"
    await rt.stop()
    assert events[3:] == ["stop web", "stop engine", "stop db"]
    with pytest.raises(MissingKeyError, match="'a'"):
        rt.ctx[A]


async def test_shuffled_components_start_in_dependency_order_and_stop_in_reverse() -> None:
    rng = random.Random(7)
    for _ in range(20):
        events: list[str] = []
        parts = [
            Recorder("web", events, requires=(C,), optional=(B,)),
            Recorder("db", events, provides=(A,)),
            Recorder("engine", events, requires=(A,), provides=(B,)),
            Recorder("tags", events, provides=(C,)),
            Recorder("opcua", events, requires=(C,), optional=(B, Key("absent", str))),
        ]
        rng.shuffle(parts)
        rt = Runtime(parts, policy=FAST)
        order = [c.name for c in rt.components]
        assert order.index("db") < order.index("engine") < order.index("web")
        assert order.index("engine") < order.index("opcua") and order.index("tags") < order.index("opcua")
        await rt.start()
        await rt.stop()
        assert events == [f"start {n}" for n in order] + [f"stop {n}" for n in reversed(order)]
        # the order comes from the declarations, not from the list's order
        assert order == [c.name for c in Runtime(sorted(parts, key=lambda c: c.name), policy=FAST).components]


async def test_reading_an_undeclared_key_fails_start_up_naming_both() -> None:
    events: list[str] = []

    class Sneaky(Recorder):
        async def start(self, ctx: Context) -> None:
            ctx[A]  # the provider started first, but this component never said it needs A

    parts = [Recorder("db", events, provides=(A,)), Recorder("tags", events, provides=(B,)), Sneaky("web", events, requires=(B,))]
    rt = Runtime(parts, policy=FAST)
    with pytest.raises(RuntimeError_, match="component 'web' reads context key 'a', which it does not declare"):
        await rt.start()
    assert events == ["start db", "start tags", "stop tags", "stop db"]  # what started is stopped


async def test_setting_an_undeclared_key_fails_start_up() -> None:
    class Greedy(Recorder):
        async def start(self, ctx: Context) -> None:
            ctx[B] = "x"

    rt = Runtime([Greedy("db", [], provides=(A,))], policy=FAST)
    with pytest.raises(RuntimeError_, match="component 'db' sets context key 'b', which it does not declare"):
        await rt.start()


async def test_tasks_are_cancelled_before_the_teardown_runs() -> None:
    seen: list[str] = []

    class Owner(Component):
        name = "owner"

        @contextlib.asynccontextmanager
        async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
            self.task = self.tasks.spawn(lambda: asyncio.Event().wait(), "loop")
            yield
            seen.append("cancelled" if self.task.done() else "still running")

    rt = Runtime([Owner()], policy=FAST)
    await rt.start()
    await rt.stop()
    assert seen == ["cancelled"]


def test_missing_provider_and_cycles_are_refused() -> None:
    with pytest.raises(RuntimeError_, match="requires 'a'"):
        Runtime([Recorder("x", [], requires=(A,))])
    with pytest.raises(RuntimeError_, match="cycle"):
        Runtime([Recorder("x", [], requires=(A,), provides=(B,)), Recorder("y", [], requires=(B,), provides=(A,))])
    with pytest.raises(RuntimeError_, match="provided by both"):
        Runtime([Recorder("x", [], provides=(A,)), Recorder("y", [], provides=(A,))])


async def test_failed_start_stops_what_started() -> None:
    events: list[str] = []

    class Broken(Recorder):
        async def start(self, ctx: Context) -> None:
            raise OSError("port in use")

    rt = Runtime([Recorder("db", events, provides=(A,)), Broken("web", events, requires=(A,))], policy=FAST)
    code = await rt.run(install_signals=False)
    assert code == 1
    # a lifespan whose setup failed cleans up after itself; the runtime stops what had started
    assert events == ["start db", "stop db"]


async def test_failing_task_is_restarted_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    class Worker(Starter):
        name = "worker"

        async def start(self, ctx: Context) -> None:
            self.tasks.spawn(self.work, "loop")

        async def work(self) -> None:
            runs.append(1)
            if len(runs) < 3:
                raise ValueError("flaky")
            await asyncio.Event().wait()

    rt = Runtime([Worker()], policy=FAST)
    await rt.start()
    for _ in range(100):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(runs) == 3
    assert any("restarting" in r.message and getattr(r, "component", "") == "worker" for r in caplog.records)
    await rt.stop()
    assert rt.exit_code == 0


async def test_task_that_keeps_failing_stops_the_process() -> None:
    class Worker(Starter):
        name = "worker"

        async def start(self, ctx: Context) -> None:
            self.tasks.spawn(self.work, "loop")

        async def work(self) -> None:
            raise ValueError("always")

    rt = Runtime([Worker()], policy=FAST)
    code = await asyncio.wait_for(rt.run(install_signals=False), 5)
    assert code == 1
    assert "failed 4 times" in rt.stop_reason


async def test_fatal_policy_stops_at_first_failure(caplog: pytest.LogCaptureFixture) -> None:
    class Worker(Starter):
        name = "ledger"

        async def start(self, ctx: Context) -> None:
            self.tasks.spawn(self.work, "writer", restart=Restart.FATAL)

        async def work(self) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("disk full")

    caplog.set_level(logging.CRITICAL)
    rt = Runtime([Worker()], policy=FAST)
    code = await asyncio.wait_for(rt.run(install_signals=False), 5)
    assert code == 1
    assert "ledger:writer failed" in rt.stop_reason
    assert any(r.levelno == logging.CRITICAL and getattr(r, "task", "") == "writer" for r in caplog.records)


async def test_stop_cancels_owned_tasks_and_names_them() -> None:
    started = asyncio.Event()

    class Worker(Starter):
        name = "poller"

        async def start(self, ctx: Context) -> None:
            self.task = self.tasks.spawn(self.work, "link-1")

        async def work(self) -> None:
            started.set()
            await asyncio.Event().wait()

    worker = Worker()
    rt = Runtime([worker], policy=FAST)
    await rt.start()
    await started.wait()
    assert worker.task.get_name() == "poller:link-1"
    await rt.stop()
    assert worker.task.cancelled()
    assert worker.tasks.running == 0


async def test_component_that_hangs_on_stop_is_bounded() -> None:
    class Stuck(Component):
        name = "stuck"

        @contextlib.asynccontextmanager
        async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
            yield
            await asyncio.Event().wait()

    rt = Runtime([Stuck()], stop_timeout_s=0.1, policy=FAST)
    await rt.start()
    await rt.stop()
    assert rt.exit_code == 1


def test_context_keys_are_set_once() -> None:
    ctx = Context()
    ctx[A] = "x"
    with pytest.raises(KeyError, match="already set"):
        ctx[A] = "y"
    assert ctx.get(B) is None and ctx.get(B, "d") == "d"


async def test_stop_requested_while_starting_starts_no_more() -> None:
    events: list[str] = []
    rt: Runtime

    class Slow(Recorder):
        async def start(self, ctx: Context) -> None:
            await super().start(ctx)
            rt.request_stop("signal SIGTERM")  # as the signal handler would, mid-start

    rt = Runtime([Slow("db", events, provides=(A,)), Recorder("web", events, requires=(A,))], policy=FAST)
    code = await asyncio.wait_for(rt.run(install_signals=False), 5)
    assert code == 0
    assert events == ["start db", "stop db"]


# -- start-up against a locked database, and loop stalls --------------------------------------
class LockHolder:
    """Another writer on a real SQLite file: holds the write lock (``BEGIN IMMEDIATE``) until released."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.release = threading.Event()
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO log (who) VALUES ('holder')")
        self.holding.set()
        self.release.wait(30)
        con.execute("COMMIT")
        con.close()


class LockedWriter(Component):
    """Writes one row at start through SQLAlchemy with a short busy timeout, as a component's
    start-up write does; tells ``on_failure`` each time it met the lock."""

    name = "payments"
    provides = (A,)

    def __init__(self, path: str, on_failure: Any = None) -> None:
        super().__init__()
        self.engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
        self.failures = 0
        self.on_failure = on_failure

    def _write(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sqlalchemy.text("INSERT INTO log (who) VALUES ('payments')"))

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        self.tasks.spawn(asyncio.Event().wait, "idle")  # a task spawned before the write fails
        try:
            await asyncio.to_thread(self._write)
        except Exception:
            self.failures += 1
            if self.on_failure is not None:
                self.on_failure(self.failures)
            raise
        ctx[A] = "payments"
        yield


def _log_db(tmp_path: Any) -> str:
    path = str(tmp_path / "locked.db")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, who TEXT)")
    con.commit()
    con.close()
    return path


def _rows(path: str) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT who FROM log ORDER BY id")]
    finally:
        con.close()


async def test_a_start_that_met_a_locked_database_is_tried_again(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = _log_db(tmp_path)
    holder = LockHolder(path)
    holder.thread.start()
    assert await asyncio.to_thread(holder.holding.wait, 10)
    # the other writer commits after the second failed try: the third one gets the lock
    writer = LockedWriter(path, on_failure=lambda n: holder.release.set() if n == 2 else None)
    rt = Runtime([writer], policy=FAST, start_retries=(0.01,) * 2 + (0.5,) * 20)
    caplog.set_level(logging.WARNING)
    await rt.start()
    try:
        assert rt.ctx[A] == "payments"
        assert writer.failures >= 2  # more if the holder's commit is slow (a busy machine)
        assert _rows(path) == ["holder", "payments"]  # written once, after the other writer
        retries = [r for r in caplog.records if r.message == "component start met a locked database; trying again"]
        assert [(getattr(r, "component", ""), getattr(r, "attempt", 0)) for r in retries] == [
            ("payments", n) for n in range(1, writer.failures + 1)
        ]
        assert writer.tasks.running == 1  # the failed tries' tasks were cancelled, the last one's runs
    finally:
        await rt.stop()
        holder.release.set()
        holder.thread.join(10)


async def test_a_start_still_locked_after_every_retry_fails(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = _log_db(tmp_path)
    holder = LockHolder(path)
    holder.thread.start()
    assert await asyncio.to_thread(holder.holding.wait, 10)
    writer = LockedWriter(path)
    events: list[str] = []
    rt = Runtime([writer, Recorder("db", events, provides=(B,))], policy=FAST, start_retries=(0.01, 0.01))
    caplog.set_level(logging.WARNING)
    try:
        with pytest.raises(RuntimeError_, match="payments failed to start: .*database is locked"):
            await rt.start()
        assert writer.failures == 3  # the first try and two more
        assert writer.tasks.running == 0
        critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert [(getattr(r, "component", ""), getattr(r, "attempt", 0)) for r in critical] == [("payments", 3)]
        assert "stop db" in events  # what had started is stopped
    finally:
        holder.release.set()
        holder.thread.join(10)
    assert _rows(path) == ["holder"]


async def test_a_start_failing_otherwise_is_not_tried_again() -> None:
    tries: list[int] = []

    class Broken(Starter):
        name = "broken"

        async def start(self, ctx: Context) -> None:
            tries.append(1)
            raise sqlite3.OperationalError("no such table: log")

    rt = Runtime([Broken()], policy=FAST, start_retries=(0.01, 0.01))
    with pytest.raises(RuntimeError_, match="no such table"):
        await rt.start()
    assert tries == [1]


def test_database_locked_sees_through_sqlalchemy_and_chains() -> None:
    locked = sqlite3.OperationalError("database is locked")
    wrapped = sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, locked)
    assert database_locked(locked) and database_locked(wrapped)
    try:
        try:
            raise wrapped
        except Exception as exc:
            raise RuntimeError("payments: load failed") from exc
    except RuntimeError as outer:
        assert database_locked(outer)
    assert not database_locked(sqlite3.OperationalError("disk I/O error"))
    assert not database_locked(ValueError("database is locked"))


async def test_a_stall_of_the_event_loop_is_logged_with_the_component_starting(caplog: pytest.LogCaptureFixture) -> None:
    class Blocking(Starter):
        name = "opcua"

        async def start(self, ctx: Context) -> None:
            await asyncio.sleep(0.2)  # let the watcher take its first look
            time.sleep(0.6)  # a start-up step that keeps the loop busy (what the watcher is for)

    rt = Runtime([Blocking()], policy=FAST, lag_threshold_s=0.3)
    caplog.set_level(logging.WARNING)

    async def stop_when_started() -> None:
        while not rt._started:
            await asyncio.sleep(0.01)
        rt.request_stop("test")

    stopper = asyncio.create_task(stop_when_started())
    assert await rt.run(install_signals=False) == 0
    await stopper
    stalls = [r for r in caplog.records if r.message == "event loop stalled"]
    assert stalls and getattr(stalls[0], "during", "") == "starting opcua" and getattr(stalls[0], "lag_ms", 0) >= 300


async def test_a_stall_that_ends_in_a_stop_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The stop can cancel the watcher before the timer that came due during the stall was
    answered (the busy CI machine's order of events): the stall is logged all the same."""
    caplog.set_level(logging.WARNING)
    watcher = asyncio.create_task(watch_loop_lag(0.3, period_s=0.25, doing=lambda: "starting opcua"))
    await asyncio.sleep(0)  # the watcher takes its first look
    time.sleep(0.6)
    watcher.cancel()  # before the loop ran again: the watcher's timer has not been answered
    with pytest.raises(asyncio.CancelledError):
        await watcher
    stalls = [r for r in caplog.records if r.message == "event loop stalled"]
    assert [getattr(r, "during", "") for r in stalls] == ["starting opcua"] and getattr(stalls[0], "lag_ms", 0) >= 300


async def test_a_task_spawned_after_start_begins_once_every_component_started() -> None:
    events: list[str] = []

    class Feeder(Starter):
        name = "feeder"
        provides = (A,)

        async def start(self, ctx: Context) -> None:
            async def feed() -> None:
                events.append("feeding")
                await asyncio.Event().wait()

            self.tasks.spawn(feed, "feed", after_start=True)
            ctx[A] = "feeder"

    class Slow(Starter):
        name = "slow"
        requires = (A,)

        async def start(self, ctx: Context) -> None:
            for _ in range(20):  # many returns to the loop: a task free to run would have begun
                await asyncio.sleep(0)
            events.append("slow started")

    rt = Runtime([Slow(), Feeder()], policy=FAST)
    await rt.start()
    try:
        while "feeding" not in events:
            await asyncio.sleep(0.01)
        assert events == ["slow started", "feeding"]
    finally:
        await rt.stop()


async def test_tasks_spawned_after_start_are_cancelled_before_any_component_stops() -> None:
    events: list[str] = []

    class Feeder(Starter):
        name = "feeder"
        provides = (A,)

        async def start(self, ctx: Context) -> None:
            async def feed() -> None:
                try:
                    await asyncio.Event().wait()
                finally:
                    events.append("feed cancelled")

            self.tasks.spawn(feed, "feed", after_start=True)
            ctx[A] = "feeder"

    consumer = Recorder("consumer", events, requires=(A,))
    rt = Runtime([consumer, Feeder()], policy=FAST)
    await rt.start()
    await asyncio.sleep(0)  # the feeder's task is running
    await rt.stop()
    assert events == ["start consumer", "feed cancelled", "stop consumer"]
