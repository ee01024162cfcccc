"""A connection's handler ends its sender and receiver even when one of them loses a cancellation
(Python 3.11's ``wait_for`` drops one that arrives as its inner await completes): shutdown must
never wait for it for ever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from hmi import feed
from hmi.feed import _Client, _until_done


def client() -> _Client:
    return _Client(SimpleNamespace(), SimpleNamespace(name="viewer1"))  # type: ignore[arg-type]


async def swallows_first_cancel(woken: asyncio.Event) -> None:
    try:
        await woken.wait()
    except asyncio.CancelledError:
        pass  # as the lost cancellation: the task goes back to waiting for its next wake-up
    await woken.wait()


async def test_a_task_that_lost_its_cancellation_is_cancelled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "CLOSE_TIMEOUT_S", 0.05)
    sender = asyncio.create_task(swallows_first_cancel(asyncio.Event()))
    receiver = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    sender.cancel()
    receiver.cancel()
    assert await asyncio.wait_for(_until_done(client(), receiver, sender), 5) is False
    assert sender.cancelled() and receiver.cancelled()


async def test_a_task_that_ignores_every_cancellation_is_given_up_with_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(feed, "CLOSE_TIMEOUT_S", 0.02)
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await stop.wait()

    task: asyncio.Task[Any] = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    task.cancel()
    with caplog.at_level(logging.ERROR, logger="hmi.feed"):
        assert await asyncio.wait_for(_until_done(client(), task), 5) is False
    assert "ignore cancellation" in caplog.text and not task.done()
    stop.set()
    await task
