"""Runtime: dependency order, reverse stop, lifespans, declared keys, supervised tasks, failure policies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scada.core.context import Context, Key, MissingKeyError
from scada.core.runtime import (
    Component,
    Restart,
    Runtime,
    RuntimeError_,
    SupervisionPolicy,
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
