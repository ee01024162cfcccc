"""Interval boundaries aligned to the site's clock.

An interval of ``length`` seconds (1–60 minutes, a divisor of an hour) starts where the site's
wall clock shows a multiple of the length: 15-minute intervals start at :00, :15, :30, :45 of
local time. For nearly every zone this is the same grid in summer and winter (offsets and DST
steps are whole quarter hours); the phase is fixed from the zone's offset at a reference date,
so the grid never shifts under a running server.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timezone
from zoneinfo import ZoneInfo

__all__ = ["IntervalGrid", "epoch_s", "epoch_us", "from_epoch", "local_midnight", "phase_for"]

_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


def epoch_s(ts: datetime) -> float:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: historian times must carry a time zone")
    return ts.timestamp()


def epoch_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: historian times must carry a time zone")
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch(seconds: float, tz: ZoneInfo | timezone = UTC) -> datetime:
    return datetime.fromtimestamp(seconds, tz)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def phase_for(tz: ZoneInfo | timezone, length_s: int) -> int:
    """How far the site's clock is ahead of UTC, modulo ``length_s`` (at a fixed reference
    instant, so that a grid never moves)."""
    offset = _REFERENCE.astimezone(tz).utcoffset()
    return int(offset.total_seconds()) % length_s if offset is not None else 0


def local_midnight(day: date, tz: ZoneInfo | timezone) -> int:
    """Epoch seconds of the start of the local calendar day ``day`` (where midnight does not
    exist because the clock jumps, the moment of the jump)."""
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())


class IntervalGrid:
    """Interval starts as epoch seconds: ``start_of(t) <= t < start_of(t) + length``."""

    __slots__ = ("length", "tz", "phase")

    def __init__(self, length_s: int, tz: ZoneInfo | timezone = UTC) -> None:
        if length_s < 60 or 3600 % length_s or length_s % 60:
            raise ValueError(f"interval length must be whole minutes dividing an hour, got {length_s} s")
        self.length = length_s
        self.tz = tz
        self.phase = phase_for(tz, length_s)

    def start_of(self, t: float) -> int:
        s = int(t // 1)
        return s - (s + self.phase) % self.length

    def next_start(self, t: float) -> int:
        return self.start_of(t) + self.length

    def __repr__(self) -> str:
        return f"IntervalGrid({self.length}s, {self.tz})"
