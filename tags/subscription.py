"""Change subscriptions with bounded, coalescing queues.

A writer never waits for a subscriber. Each subscription has a FIFO of at most ``maxsize``
changes; when it is full the subscription switches to a per-tag overflow map that keeps only
the newest change of each tag (replacing an entry keeps its place). Memory is therefore bounded
by ``maxsize`` plus the number of tags the filter matches, the newest value of every tag is
always delivered, and every change that was replaced before delivery is counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .model import TagChange, TagValue

if TYPE_CHECKING:
    from .db import TagDB

__all__ = ["Subscription", "TagFilter", "all_tags", "by_glob", "by_meters", "by_names", "by_points"]

TagFilter = Callable[[str], bool]


def all_tags(_name: str) -> bool:
    return True


def by_names(names: Iterable[str]) -> TagFilter:
    wanted = frozenset(names)
    return wanted.__contains__


def by_points(points: Iterable[str]) -> TagFilter:
    """Tags ``<meter>.<point>`` whose point is one of ``points``."""
    wanted = frozenset(points)

    def match(name: str) -> bool:
        return name.rpartition(".")[2] in wanted

    return match


def by_meters(meter_ids: Iterable[str]) -> TagFilter:
    wanted = frozenset(meter_ids)

    def match(name: str) -> bool:
        return name.rpartition(".")[0] in wanted

    return match


def by_glob(*patterns: str) -> TagFilter:
    def match(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return match


class Subscription:
    """An async iterator of :class:`TagChange`. Use as ``async with db.subscribe(f) as sub``."""

    __slots__ = (
        "_db",
        "filter",
        "maxsize",
        "include_reported",
        "name",
        "_fifo",
        "_overflow",
        "_first",
        "_waiter",
        "_closed",
        "delivered",
        "dropped",
        "overflowed",
    )

    def __init__(
        self,
        db: TagDB,
        tag_filter: TagFilter,
        *,
        maxsize: int,
        include_reported: bool,
        name: str,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._db = db
        self.filter = tag_filter
        self.maxsize = maxsize
        self.include_reported = include_reported
        self.name = name
        self._fifo: deque[TagChange] = deque()
        self._overflow: dict[str, TagChange] = {}
        self._first: dict[str, tuple[TagValue | None, bool]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0  # intermediate changes replaced by a newer one before delivery
        self.overflowed = 0  # times the FIFO was full and coalescing kicked in

    # -- writer side (synchronous, never blocks) -------------------------------------------
    def _put(self, change: TagChange) -> None:
        if self._overflow or len(self._fifo) >= self.maxsize:
            overflow = self._overflow
            if not overflow:
                self.overflowed += 1
            name = change.name
            previous = overflow.get(name)
            if previous is not None:
                self.dropped += 1
                if name not in self._first:
                    # the coalesced event spans from the oldest undelivered "old" to the newest
                    self._first[name] = (previous.old, previous.changed)
            overflow[name] = change  # replacing keeps the tag's place in the queue
        else:
            self._fifo.append(change)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reader side -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._fifo) + len(self._overflow)

    def get_nowait(self) -> TagChange | None:
        if self._fifo:
            self.delivered += 1
            return self._fifo.popleft()
        if self._overflow:
            name = next(iter(self._overflow))
            self.delivered += 1
            change = self._overflow.pop(name)
            first = self._first.pop(name, None)
            if first is not None:
                old, changed = first
                change = TagChange(name, old, change.new, changed or change.changed)
            return change
        return None

    def drain(self, limit: int | None = None) -> list[TagChange]:
        """Everything pending now (up to ``limit``), without waiting."""
        out: list[TagChange] = []
        while limit is None or len(out) < limit:
            change = self.get_nowait()
            if change is None:
                break
            out.append(change)
        return out

    async def get(self) -> TagChange:
        while True:
            change = self.get_nowait()
            if change is not None:
                return change
            if self._closed:
                raise StopAsyncIteration
            await self.wait()

    async def wait(self) -> None:
        """Wait until a change is pending (or the subscription is closed), without taking it:
        for a reader that must take its changes under a lock of its own, so that whoever holds
        that lock sees either all of them or none."""
        while not self.pending and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get_batch(self, limit: int = 1000) -> list[TagChange]:
        """Wait for at least one change, then return all pending up to ``limit``."""
        first = await self.get()
        return [first, *self.drain(limit - 1)]

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TagChange:
        return await self.get()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unsubscribe. A reader waiting in ``get`` ends after the pending changes."""
        if self._closed:
            return
        self._closed = True
        self._db._unsubscribe(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "pending": self.pending,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "overflowed": self.overflowed,
        }
