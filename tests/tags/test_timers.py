"""``tags.timers.run_every``: the interval is kept between the end of one step and the start of
the next (a slow step never overlaps the next), a failing step is logged and the timer goes on
(or, without ``log_failures``, the failure ends it for a supervisor), cancellation ends it even
during a step. Real time on the running loop; only lower bounds on the gaps are asserted, so a
loaded machine makes the test slower, never red."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from tags.timers import run_every

INTERVAL = 0.05
EARLY = 0.005  # the loop may wake a timer up to its clock resolution early


class Steps:
    """A step that records when it started and ended, and signals after ``until`` calls."""

    def __init__(self, *, until: int, duration: float = 0.0, fail_on: frozenset[int] = frozenset()) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.until = until
        self.duration = duration
        self.fail_on = fail_on
        self.enough = asyncio.Event()

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        self.starts.append(loop.time())
        n = len(self.starts)
        if n >= self.until:
            self.enough.set()
        try:
            if self.duration:
                await asyncio.sleep(self.duration)
            if n in self.fail_on:
                raise RuntimeError(f"round {n} failed")
        finally:
            self.ends.append(loop.time())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_the_interval_is_kept_from_the_end_of_one_step_to_the_next() -> None:
    steps = Steps(until=4, duration=INTERVAL)  # each step as slow as the interval itself
    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(run_every(INTERVAL, steps, name="t", first_delay_s=0.2))
    await asyncio.wait_for(steps.enough.wait(), 30)
    await stop(task)
    assert steps.starts[0] - started >= 0.2 - EARLY  # the first delay, not the interval
    for end, start in zip(steps.ends, steps.starts[1:], strict=False):
        assert start - end >= INTERVAL - EARLY  # no overlap: the wait begins when the step ends


async def test_a_failing_step_is_logged_and_the_timer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    steps = Steps(until=4, fail_on=frozenset({2}))
    with caplog.at_level(logging.WARNING, logger="tags.timers"):
        task = asyncio.create_task(run_every(INTERVAL, steps, name="nightly-report", first_delay_s=0))
        await asyncio.wait_for(steps.enough.wait(), 30)
        await stop(task)
    [record] = [r for r in caplog.records if r.name == "tags.timers"]
    assert record.getMessage() == "periodic step failed"
    assert record.timer == "nightly-report" and "round 2 failed" in record.error  # type: ignore[attr-defined]
    assert len(steps.starts) >= 4


async def test_without_log_failures_a_failure_ends_the_timer() -> None:
    steps = Steps(until=99, fail_on=frozenset({2}))
    with pytest.raises(RuntimeError, match="round 2 failed"):
        await asyncio.wait_for(run_every(INTERVAL, steps, name="t", first_delay_s=0, log_failures=False), 30)
    assert len(steps.starts) == 2


async def test_cancellation_ends_it_while_waiting_and_during_a_step() -> None:
    steps = Steps(until=1)
    task = asyncio.create_task(run_every(INTERVAL, steps, name="t", first_delay_s=0))
    await asyncio.wait_for(steps.enough.wait(), 30)
    await stop(task)
    assert task.cancelled()
    calls = len(steps.starts)
    await asyncio.sleep(3 * INTERVAL)
    assert len(steps.starts) == calls  # nothing runs after the cancellation
    # cancelled inside a step: the step's CancelledError is not a failure to log and go on from
    slow = Steps(until=1, duration=60)
    task = asyncio.create_task(run_every(INTERVAL, slow, name="t", first_delay_s=0))
    await asyncio.wait_for(slow.enough.wait(), 30)
    await stop(task)
    assert task.cancelled() and len(slow.starts) == 1 and len(slow.ends) == 1


@pytest.mark.parametrize("interval", [0, -1.0])
async def test_a_non_positive_interval_is_refused(interval: float) -> None:
    async def step() -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="interval must be positive"):
        await run_every(interval, step, name="t")
