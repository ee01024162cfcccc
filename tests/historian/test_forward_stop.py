"""The forwarder stops when cancelled even if the cancellation was swallowed by the call it was in.

On Python 3.11, ``asyncio.wait_for`` returns the inner call's result when that call ends at the
moment the task is cancelled; the cancellation request is then spent but the task still counts it
(``Task.cancelling()``). A forwarder that went on to wait for its next wake-up never stopped, and
a shutdown logged "task did not stop in time" (seen in a full run of the suite).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from historian.forward import Forwarder


class SwallowingForwarder(Forwarder):
    """``send_once`` behaves as a write whose ``wait_for`` swallowed a cancellation: the task is
    cancelled, the CancelledError is caught inside, and 0 (nothing waiting) is returned."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None), cast(Any, None))
        self.calls = 0

    async def send_once(self) -> int | None:
        self.calls += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # what wait_for does on 3.11 when the inner call finished at the same time
        return 0


async def test_a_swallowed_cancellation_still_stops_the_forwarder() -> None:
    forwarder = SwallowingForwarder()
    task = asyncio.create_task(forwarder.run())
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the forwarder went on waiting for its next wake-up after being cancelled"
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert forwarder.calls == 1
