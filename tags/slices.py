"""Long work on the event loop, cut into short slices.

A step that keeps the loop for seconds holds up every other task, and with them any
transaction one of them has open: on SQLite that transaction holds the write lock across its
awaits, so a stall of a few seconds became a lock held long enough for other writers to give
up ("database is locked"). Loops over every room or meter of a large site (start-up loads,
publishing) call :meth:`Slicer.pause` between steps instead.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SLICE_S", "Slicer"]

SLICE_S = 0.02  # the longest stretch of such work between returns to the event loop


class Slicer:
    """Call :meth:`pause` between steps: it returns to the event loop once ``budget_s`` of work
    went by since the last return (the other tasks run, then the work goes on). :attr:`slices`
    counts the stretches."""

    __slots__ = ("budget_s", "slices", "_since")

    def __init__(self, budget_s: float | None = None) -> None:
        self.budget_s = SLICE_S if budget_s is None else budget_s
        self.slices = 1
        self._since = time.monotonic()

    async def pause(self) -> None:
        if time.monotonic() - self._since >= self.budget_s:
            await asyncio.sleep(0)
            self.slices += 1
            self._since = time.monotonic()
