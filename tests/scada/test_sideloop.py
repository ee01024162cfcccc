"""SideLoop: a coroutine on a loop of its own thread, its result, its error, its cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from scada.core.sideloop import SideLoop


async def test_runs_on_its_own_thread_and_returns_the_result() -> None:
    async def where() -> tuple[str, str | None]:
        await asyncio.sleep(0)
        task = asyncio.current_task()
        return threading.current_thread().name, task.get_name() if task else None

    async with SideLoop("side-test") as side:
        thread, task = await side.run(where(), name="side:work")
    assert thread == "side-test"
    assert task == "side:work"


async def test_an_error_reaches_the_caller() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("no such meter")

    async with SideLoop("side-test") as side:
        with pytest.raises(ValueError, match="no such meter"):
            await side.run(fails())
        assert await side.run(asyncio.sleep(0, "still running")) == "still running"


async def test_its_awaits_do_not_wait_for_the_callers_loop() -> None:
    """The caller's loop blocked (a busy server): the side coroutine's awaits still return."""
    turns = 0

    async def many_awaits() -> int:
        nonlocal turns
        for _ in range(100):
            await asyncio.sleep(0)
            turns += 1
        return turns

    async with SideLoop("side-test") as side:
        task = asyncio.create_task(side.run(many_awaits()))
        await asyncio.sleep(0)  # the task hands the coroutine over
        deadline = time.monotonic() + 10
        while turns < 100 and time.monotonic() < deadline:
            time.sleep(0.001)  # the caller's loop does not turn here
        assert turns == 100
        assert await task == 100


async def test_cancelling_the_caller_cancels_the_work_and_waits_for_its_end() -> None:
    events: list[str] = []
    entered = threading.Event()

    async def work() -> None:
        try:
            entered.set()
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # a rollback takes a while
            events.append("rolled back")

    async with SideLoop("side-test") as side:
        task = asyncio.create_task(side.run(work()))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the caller's cancellation returns only once the side coroutine has ended
        assert events == ["rolled back"]


async def test_leaving_runs_closing_on_the_side_loop_and_ends_the_thread() -> None:
    seen: list[str] = []

    async def closing() -> None:
        seen.append(threading.current_thread().name)

    side = SideLoop("side-test", closing=closing)
    async with side:
        thread = side._thread
        assert thread is not None and thread.is_alive()
    assert seen == ["side-test"]
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="not running"):
        await side.run(asyncio.sleep(0))
