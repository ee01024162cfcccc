"""Subscriptions to alarm changes (the HMI's WebSocket feed, the OPC UA server).

Like tag subscriptions: the engine never waits for a subscriber. Each has a FIFO of at most
``maxsize`` events; past that it keeps only the newest event of each occurrence (its current
state is never lost, intermediate transitions are counted in ``dropped``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .model import AlarmEvent

__all__ = ["AlarmSubscription"]


class AlarmSubscription:
    def __init__(self, on_close: Callable[[AlarmSubscription], None], maxsize: int = 10_000, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.name = name
        self._on_close = on_close
        self._fifo: deque[AlarmEvent] = deque()
        self._overflow: dict[int, AlarmEvent] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0

    def _put(self, event: AlarmEvent) -> None:
        if self._overflow or len(self._fifo) >= self.maxsize:
            if self._overflow.pop(event.alarm.id, None) is not None:
                self.dropped += 1
            self._overflow[event.alarm.id] = event  # newest at the end
        else:
            self._fifo.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def pending(self) -> int:
        return len(self._fifo) + len(self._overflow)

    def get_nowait(self) -> AlarmEvent | None:
        if self._fifo:
            self.delivered += 1
            return self._fifo.popleft()
        if self._overflow:
            alarm_id = next(iter(self._overflow))
            self.delivered += 1
            return self._overflow.pop(alarm_id)
        return None

    def drain(self, limit: int | None = None) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        while limit is None or len(out) < limit:
            event = self.get_nowait()
            if event is None:
                break
            out.append(event)
        return out

    async def get(self) -> AlarmEvent:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get_batch(self, limit: int = 1000) -> list[AlarmEvent]:
        first = await self.get()
        return [first, *self.drain(limit - 1)]

    def __aiter__(self) -> AlarmSubscription:
        return self

    async def __anext__(self) -> AlarmEvent:
        return await self.get()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> AlarmSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
