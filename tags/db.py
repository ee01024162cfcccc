"""The in-memory current-value table.

``TagDB`` is the only place that replaces a tag's value. Each write builds a new frozen
:class:`TagValue`, swaps it in and hands a :class:`TagChange` to every matching subscription's
own queue; nothing here awaits a subscriber.

Writes from a source that may deliver old observations after new ones (a gateway replaying
its buffer after an outage) use ``keep_newest=True``: an observation whose source timestamp is
older than the current value's does not replace it; it goes, as a change marked ``late``, only
to the subscriptions that asked for late observations (``include_late``: history, billing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from .model import Quality, QualityReason, TagChange, TagMeta, TagValue, Value, _fast_init, utcnow
from .subscription import (
    Subscription,
    TagFilter,
    all_tags,
    merge_tag_changes,
    tag_change_key,
)

__all__ = ["TagDB", "TagWrite", "UnknownTagError"]

log = logging.getLogger(__name__)


# a current value that is no observation of the source (registered, never written): anything
# the source says is newer than that
_NOT_OBSERVED = frozenset({QualityReason.NO_VALUE, QualityReason.NOT_FED})


class UnknownTagError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown tag {self.name!r}"


@_fast_init
@dataclass(frozen=True, slots=True)
class TagWrite:
    """One item of a batch write."""

    name: str
    value: Value
    quality: Quality = Quality.GOOD
    reason: QualityReason = QualityReason.NONE
    detail: str = ""
    source_ts: datetime | None = None


Route = tuple[Subscription[TagChange], bool, bool]  # (subscription, include_reported, include_late)


class _Entry:
    __slots__ = ("meta", "current", "published", "routes", "generation")

    def __init__(self, meta: TagMeta, current: TagValue) -> None:
        self.meta = meta
        self.current = current
        # the value last published as a change; deadband compares against this, not against
        # the previous sample, so a slow drift is still published once it exceeds the band
        self.published = current
        # the subscriptions whose filter takes this tag, as of the TagDB's routing generation
        # (filters run once per tag and generation, not on every write)
        self.routes: tuple[Route, ...] = ()
        self.generation = -1


class TagDB:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        # (subscription, its filter, whether it wants unchanged reports, whether it wants late
        # observations), in subscription order
        self._subs: list[tuple[Subscription[TagChange], TagFilter, bool, bool]] = []
        self._generation = 0  # bumped when subscriptions change or a filter's answers may have
        self.writes = 0
        self.changes = 0
        self.late = 0
        # bumped when a tag is added or removed: what is derived from the set of names can be
        # kept until it moves (the set itself is a million names on a 50,000-meter site)
        self.registrations = 0

    # -- registration --------------------------------------------------------------------
    def register(self, meta: TagMeta, initial: TagValue | None = None) -> None:
        """Add a tag. Re-registering an existing tag updates its metadata, keeps its value."""
        self.register_many((meta,), initial)

    def register_many(self, metas: Iterable[TagMeta], initial: TagValue | None = None) -> None:
        """:meth:`register` for several tags: the new ones share one first value, ``initial`` or
        "no value yet" (a value is immutable), as if registered at the same moment. A poller
        registers a dozen tags per meter, half a million at 50,000 meters."""
        entries = self._entries
        added = 0
        for meta in metas:
            entry = entries.get(meta.name)
            if entry is not None:
                entry.meta = meta
                continue
            if initial is None:
                now = utcnow()
                initial = TagValue(None, Quality.BAD, now, now, QualityReason.NO_VALUE)
            entries[meta.name] = _Entry(meta, initial)
            added += 1
        self.registrations += added

    def unregister(self, name: str) -> None:
        if self._entries.pop(name, None) is not None:
            self.registrations += 1

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, tag_filter: TagFilter = all_tags) -> Iterator[str]:
        return (n for n in self._entries if tag_filter(n))

    def metas(self, tag_filter: TagFilter = all_tags) -> Iterator[TagMeta]:
        """The registered tags' metadata (what ``names`` and ``meta`` give, in one pass)."""
        return (e.meta for n, e in self._entries.items() if tag_filter(n))

    def meta(self, name: str) -> TagMeta:
        try:
            return self._entries[name].meta
        except KeyError:
            raise UnknownTagError(name) from None

    # -- reads ----------------------------------------------------------------------------
    def read(self, name: str) -> TagValue:
        try:
            return self._entries[name].current
        except KeyError:
            raise UnknownTagError(name) from None

    def get(self, name: str) -> TagValue | None:
        entry = self._entries.get(name)
        return entry.current if entry is not None else None

    def snapshot(self, tag_filter: TagFilter = all_tags) -> dict[str, TagValue]:
        return {n: e.current for n, e in self._entries.items() if tag_filter(n)}

    # -- writes ---------------------------------------------------------------------------
    def write(
        self,
        name: str,
        value: Value,
        quality: Quality = Quality.GOOD,
        reason: QualityReason = QualityReason.NONE,
        *,
        detail: str = "",
        source_ts: datetime | None = None,
        keep_newest: bool = False,
    ) -> bool:
        """Store a new observation. Returns True when it was published as a change.

        A non-good write with ``value=None`` keeps the last known value (so the HMI can show
        it greyed out) and only changes quality. With ``keep_newest`` an observation older than
        the current value is published as late only (see the module docstring).
        """
        now = utcnow()
        return self._write(name, value, quality, reason, detail, source_ts or now, now, keep_newest)

    def write_many(self, writes: Iterable[TagWrite], *, keep_newest: bool = False) -> int:
        """Write a batch with one server timestamp. Returns the number of changes."""
        now = utcnow()
        n = 0
        for w in writes:
            if self._write(w.name, w.value, w.quality, w.reason, w.detail, w.source_ts or now, now, keep_newest):
                n += 1
        return n

    def write_values(self, values: Iterable[tuple[str, Value]]) -> int:
        """Write good ``(name, value)`` pairs with one timestamp (the source's and the server's):
        :meth:`write_many` without a :class:`TagWrite` per value. Returns the number of changes."""
        now = utcnow()
        n = 0
        write = self._write
        for name, value in values:
            if write(name, value, Quality.GOOD, QualityReason.NONE, "", now, now):
                n += 1
        return n

    def set_quality(
        self,
        names: Iterable[str],
        quality: Quality,
        reason: QualityReason,
        detail: str = "",
        source_ts: datetime | None = None,
    ) -> int:
        """Mark tags (e.g. every tag of an offline device) without changing their values."""
        now = utcnow()
        n = 0
        for name in names:
            if self._write(name, None, quality, reason, detail, source_ts or now, now):
                n += 1
        return n

    def _routes(self, name: str, entry: _Entry) -> tuple[Route, ...]:
        entry.routes = tuple((sub, reported, late) for sub, wants, reported, late in self._subs if wants(name))
        entry.generation = self._generation
        return entry.routes

    def _write(
        self,
        name: str,
        value: Value,
        quality: Quality,
        reason: QualityReason,
        detail: str,
        source_ts: datetime,
        server_ts: datetime,
        keep_newest: bool = False,
    ) -> bool:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownTagError(name)
        self.writes += 1
        old = entry.current
        if keep_newest and source_ts < old.source_ts and old.reason not in _NOT_OBSERVED:
            self._late(name, old, value, quality, reason, detail, source_ts, server_ts)
            return False
        if quality is Quality.GOOD:
            reason = QualityReason.NONE  # a good value has no quality problem; detail may
            # still say something about the value (e.g. why a meter is held for review)
        elif value is None:
            value = old.value
        new = TagValue(value, quality, source_ts, server_ts, reason, detail)
        entry.current = new
        published = entry.published
        pv = published.value
        if quality is not published.quality or reason is not published.reason:
            changed = True
        elif pv.__class__ is value.__class__ and entry.meta.deadband is None:
            changed = pv != value  # the common case, inlined: same type, no deadband
        else:
            changed = not _same_value(pv, value, entry.meta.deadband)
        routes = entry.routes if entry.generation == self._generation else self._routes(name, entry)
        if changed:
            entry.published = new
            self.changes += 1
            if routes:
                event = TagChange(name, published, new, True)
                for sub, _reported, _late in routes:
                    sub.put(event)
        elif routes:
            event = TagChange(name, published, new, False)
            for sub, reported, _late in routes:
                if reported:
                    sub.put(event)
        return changed

    def _late(
        self,
        name: str,
        current: TagValue,
        value: Value,
        quality: Quality,
        reason: QualityReason,
        detail: str,
        source_ts: datetime,
        server_ts: datetime,
    ) -> None:
        """An observation older than the current value: history and billing may take it; the
        current value (what displays and OPC UA show) stays."""
        self.late += 1
        if quality is Quality.GOOD:
            reason = QualityReason.NONE
        event = TagChange(name, current, TagValue(value, quality, source_ts, server_ts, reason, detail), True, True)
        entry = self._entries[name]
        routes = entry.routes if entry.generation == self._generation else self._routes(name, entry)
        for sub, _reported, include_late in routes:
            if include_late:
                sub.put(event)

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(
        self,
        tag_filter: TagFilter = all_tags,
        *,
        maxsize: int = 10_000,
        include_reported: bool = False,
        include_late: bool = False,
        name: str = "",
    ) -> Subscription[TagChange]:
        """A new subscription; close it (or leave its ``async with``) to unsubscribe.

        With ``include_reported`` the subscriber also gets writes that did not change the
        value or quality (fresh timestamps), e.g. to count samples; with ``include_late`` also
        observations older than the current value (``TagChange.late``), which did not replace
        it. Past ``maxsize`` pending changes, a tag's undelivered changes coalesce into one
        spanning them all (late ones apart from current ones).
        """
        sub: Subscription[TagChange] = Subscription(
            self._unsubscribe, key=tag_change_key, merge=merge_tag_changes, maxsize=maxsize, name=name
        )
        self._subs.append((sub, tag_filter, include_reported, include_late))
        self._generation += 1
        return sub

    def _unsubscribe(self, sub: Subscription[TagChange]) -> None:
        self._subs = [route for route in self._subs if route[0] is not sub]
        self._generation += 1

    def refilter(self) -> None:
        """Ask every subscription's filter again. A filter is asked once per tag (and again
        after a subscribe or unsubscribe); one whose answers depend on state of its own (the
        meters of a site that was reloaded) calls this when that state changed."""
        self._generation += 1

    @property
    def subscriptions(self) -> tuple[Subscription[TagChange], ...]:
        return tuple(route[0] for route in self._subs)

    def stats(self) -> dict[str, object]:
        return {
            "tags": len(self._entries),
            "writes": self.writes,
            "changes": self.changes,
            "late": self.late,
            "subscriptions": [route[0].stats() for route in self._subs],
        }


def _same_value(old: Value, new: Value, deadband: float | None) -> bool:
    if old is None or new is None:
        return old is new
    if (
        deadband
        and isinstance(old, (int, float))
        and isinstance(new, (int, float))
        and not isinstance(old, bool)
        and not isinstance(new, bool)
    ):
        return abs(new - old) < deadband
    return old == new and type(old) is type(new)
