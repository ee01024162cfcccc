"""Runtime: dependency order, reverse stop, supervised tasks, failure policies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from scada.context import Context, Key, MissingKeyError
from scada.runtime import Component, Restart, Runtime, RuntimeError_, SupervisionPolicy

A: Key[str] = Key("a", str)
B: Key[str] = Key("b", str)

FAST = SupervisionPolicy(initial_backoff_s=0.01, max_backoff_s=0.02, restart_limit=3, window_s=60)


class Recorder(Component):
    def __init__(self, name: str, events: list[str], requires: tuple[Key[Any], ...] = (), provides: tuple[Key[Any], ...] = ()) -> None:
        self.name = name
        self.requires = requires
        self.provides = provides
        super().__init__()
        self.events = events

    async def start(self, ctx: Context) -> None:
        for key in self.provides:
            ctx[key] = self.name
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


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
    assert events == ["start db", "stop web", "stop db"]


async def test_failing_task_is_restarted_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    class Worker(Component):
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
    class Worker(Component):
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
    class Worker(Component):
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

    class Worker(Component):
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

        async def stop(self) -> None:
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
