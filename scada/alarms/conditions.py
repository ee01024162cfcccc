"""Delay-on / delay-off: the debounced condition of every alarm point.

A raw condition (from :mod:`sources`) must hold for the class's ``delay_on_s`` before the
condition counts as active, and be gone for ``delay_off_s`` before it counts as cleared. A
condition that flips back before its delay has run changes nothing, which is what keeps a
chattering contact or a flapping link from raising an alarm at every flip.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from scada.alarms.alarm import AlarmKey
from scada.alarms.classes import AlarmClass
from scada.alarms.sources import Reading

__all__ = ["Condition", "ConditionTable"]


@dataclass(slots=True)
class Condition:
    raw: bool | None = None  # as the tag says now (None: not known yet)
    active: bool | None = None  # debounced: what the alarm follows
    due: datetime | None = None  # when ``raw`` becomes ``active`` unless it flips back first
    value: str = ""
    detail: str = ""
    changed_at: datetime | None = None  # when ``active`` last changed


class ConditionTable:
    def __init__(self, classes: dict[str, AlarmClass]) -> None:
        self.classes = classes
        self._conditions: dict[AlarmKey, Condition] = {}
        self._deadlines: list[tuple[datetime, int, AlarmKey]] = []
        self._seq = itertools.count()

    def get(self, key: AlarmKey) -> Condition | None:
        return self._conditions.get(key)

    def active(self, key: AlarmKey) -> bool | None:
        c = self._conditions.get(key)
        return c.active if c is not None else None

    def raw(self, key: AlarmKey) -> bool | None:
        c = self._conditions.get(key)
        return c.raw if c is not None else None

    def update(self, reading: Reading, now: datetime) -> bool:
        """Apply a reading. Returns True when the debounced condition changed now."""
        c = self._conditions.get(reading.key)
        if c is None:
            c = self._conditions[reading.key] = Condition()
        if reading.active is None:
            if c.raw is not None and reading.value:
                c.value = reading.value  # keep showing the latest value inside the deadband
            return False
        c.value, c.detail = reading.value, reading.detail
        if reading.active == c.raw and c.active is not None:
            return False
        c.raw = reading.active
        if c.raw == c.active:
            c.due = None  # flipped back within the delay: nothing happens
            return False
        cls = self.classes[reading.key.alarm_class]
        if c.active is None and not c.raw:
            delay = 0.0  # first reading, and it is normal: nothing to wait for
        else:
            delay = cls.delay_on_s if c.raw else cls.delay_off_s
        if delay <= 0:
            return self._settle(c, now)
        if c.due is None:
            c.due = now + timedelta(seconds=delay)
            heapq.heappush(self._deadlines, (c.due, next(self._seq), reading.key))
        return False

    def _settle(self, c: Condition, now: datetime) -> bool:
        c.due = None
        if c.active == c.raw:
            return False
        c.active = c.raw
        c.changed_at = now
        return True

    def next_deadline(self) -> datetime | None:
        while self._deadlines:
            due, _, key = self._deadlines[0]
            c = self._conditions.get(key)
            if c is not None and c.due == due:
                return due
            heapq.heappop(self._deadlines)  # superseded
        return None

    def pop_due(self, now: datetime) -> list[AlarmKey]:
        """Settle every condition whose delay has run; returns the keys that changed."""
        out: list[AlarmKey] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            due, _, key = heapq.heappop(self._deadlines)
            c = self._conditions.get(key)
            if c is not None and c.due == due and self._settle(c, now):
                out.append(key)
        return out

    def force(self, key: AlarmKey, active: bool, now: datetime, *, detail: str = "") -> bool:
        """Set a condition at once, without delay (its source is gone, e.g. a removed meter)."""
        c = self._conditions.setdefault(key, Condition())
        c.raw = active
        c.detail = detail
        return self._settle(c, now)

    def forget(self, key: AlarmKey) -> None:
        self._conditions.pop(key, None)

    def __len__(self) -> int:
        return len(self._conditions)
