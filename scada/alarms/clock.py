"""Clocks for the alarm engine and the notifier: the system clock, and a manual one.

Delays, shelving expiry, retries and quiet hours all ask a :class:`Clock` for the time and for
a timer. :class:`SystemClock` is wall time. :class:`ManualClock` moves only when told to
(``advance``), so a simulation or a test can step through a 30-minute shelving or a night of
quiet hours at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC."""
        ...

    def timer(self, when: datetime) -> asyncio.Future[None]:
        """A future that completes once ``now() >= when``. Cancel it when no longer needed."""
        ...


def _fire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timer(self, when: datetime) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        delay = max(0.0, (when - self.now()).total_seconds())
        handle = loop.call_later(delay, _fire, fut)
        fut.add_done_callback(lambda _f: handle.cancel())
        return fut


class ManualClock:
    """Time stands still until :meth:`advance` or :meth:`set` moves it; due timers then fire."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware start time")
        self._timers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def timer(self, when: datetime) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if when <= self._now:
            fut.set_result(None)
        else:
            heapq.heappush(self._timers, (when, next(self._seq), fut))
        return fut

    def advance(self, delta: timedelta | float) -> datetime:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("time does not go backwards")
        return self.set(self._now + delta)

    def set(self, when: datetime) -> datetime:
        if when < self._now:
            raise ValueError("time does not go backwards")
        self._now = when
        while self._timers and self._timers[0][0] <= when:
            _fire(heapq.heappop(self._timers)[2])
        return self._now
