"""Subscriptions with bounded, coalescing queues: the one subscription type of the project
(tag changes from :class:`tags.TagDB`, alarm events from the alarm engine).

A publisher never waits for a subscriber. Each subscription has a FIFO of at most ``maxsize``
items; when it is full the subscription switches to an overflow map, keyed by what the item is
about (a tag name, an alarm), that keeps only the newest item of each key (replacing an entry
keeps its place; ``merge`` may fold the replaced item into the new one). When the reader has
emptied the FIFO, the overflow map's items move into it in their order. Memory is therefore
bounded by ``maxsize`` plus twice the number of keys, the newest state of every key is always
delivered, and every item that was replaced before delivery is counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from .model import TagChange

__all__ = [
    "Subscription",
    "TagFilter",
    "all_tags",
    "by_glob",
    "by_meters",
    "by_names",
    "by_points",
    "merge_tag_changes",
    "tag_change_key",
]

T = TypeVar("T")

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
        return name.rpartition(".")[2] in wanted  # names.split, inlined: this runs for every write

    return match


def by_meters(meter_ids: Iterable[str]) -> TagFilter:
    wanted = frozenset(meter_ids)

    def match(name: str) -> bool:
        return name.rpartition(".")[0] in wanted  # names.split, inlined: this runs for every write

    return match


def by_glob(*patterns: str) -> TagFilter:
    def match(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return match


def tag_change_key(change: TagChange) -> str:
    # a late observation never coalesces with a current one (it would hide the newest value)
    return change.name + "\x00late" if change.late else change.name


def merge_tag_changes(older: TagChange, newer: TagChange) -> TagChange:
    """The coalesced change spans from the oldest undelivered ``old`` to the newest ``new``."""
    return TagChange(newer.name, older.old, newer.new, older.changed or newer.changed, newer.late)


class Subscription(Generic[T]):
    """An async iterator of items. Use as ``async with publisher.subscribe(...) as sub``.

    ``on_close`` tells the publisher to stop sending; ``key`` names what an item is about (its
    coalescing key); ``merge(older, newer)``, when given, builds the item that replaces an
    undelivered one of the same key (by default the newer one alone)."""

    __slots__ = (
        "_on_close",
        "_key",
        "_merge",
        "maxsize",
        "name",
        "_fifo",
        "_overflow",
        "_waiter",
        "_closed",
        "delivered",
        "dropped",
        "overflowed",
    )

    def __init__(
        self,
        on_close: Callable[[Subscription[T]], None],
        *,
        key: Callable[[T], Hashable],
        merge: Callable[[T, T], T] | None = None,
        maxsize: int,
        name: str = "",
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._on_close = on_close
        self._key = key
        self._merge = merge
        self.maxsize = maxsize
        self.name = name
        self._fifo: deque[T] = deque()
        self._overflow: dict[Hashable, T] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0  # intermediate items replaced by a newer one before delivery
        self.overflowed = 0  # times the FIFO was full and coalescing kicked in

    # -- publisher side (synchronous, never blocks) -------------------------------------------
    def put(self, item: T) -> None:
        """Queue one item (for the publisher). Never blocks; coalesces once the FIFO is full."""
        if self._overflow or len(self._fifo) >= self.maxsize:
            overflow = self._overflow
            if not overflow:
                self.overflowed += 1
            key = self._key(item)
            previous = overflow.get(key)
            if previous is not None:
                self.dropped += 1
                if self._merge is not None:
                    item = self._merge(previous, item)
            overflow[key] = item  # replacing keeps the key's place in the queue
        else:
            self._fifo.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reader side -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._fifo) + len(self._overflow)

    def get_nowait(self) -> T | None:
        fifo = self._fifo
        if not fifo:
            if not self._overflow:
                return None
            # the overflow's items, in its order, become the FIFO at once: taking a dict's
            # first key one at a time is quadratic (each pop leaves a hole that the next
            # first-key lookup walks past; 200,000 coalesced changes took 20 s to drain).
            # Items moved out are no longer coalesced with newer ones, as in the FIFO.
            fifo.extend(self._overflow.values())
            self._overflow = {}
        self.delivered += 1
        return fifo.popleft()

    def drain(self, limit: int | None = None) -> list[T]:
        """Everything pending now (up to ``limit``), without waiting."""
        out: list[T] = []
        while limit is None or len(out) < limit:
            item = self.get_nowait()
            if item is None:
                break
            out.append(item)
        return out

    async def get(self) -> T:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self._closed:
                raise StopAsyncIteration
            await self.wait()

    async def wait(self) -> None:
        """Wait until an item is pending (or the subscription is closed), without taking it:
        for a reader that must take its items under a lock of its own, so that whoever holds
        that lock sees either all of them or none."""
        while not self.pending and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get_batch(self, limit: int = 1000) -> list[T]:
        """Wait for at least one item, then return all pending up to ``limit``."""
        first = await self.get()
        return [first, *self.drain(limit - 1)]

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unsubscribe. A reader waiting in ``get`` ends after the pending items."""
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> Subscription[T]:
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
