"""Time-of-use schedules: which period (sharp, peak, flat, valley) a moment of the day is in.

:data:`DEFAULT_TOU` is the one place the default schedule is written down: a typical Chinese
residential/commercial day (periods of the site's local time)::

    00:00-08:00 valley   08:00-11:00 peak   11:00-17:00 flat   17:00-19:00 peak
    19:00-21:00 sharp    21:00-23:00 flat   23:00-24:00 valley

(sharp 2 h, peak 5 h, flat 8 h, valley 9 h). The simulator splits energy into the TOU registers
by it unless ``[simulator] tou`` sets another; the demo tariff uses the same hours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_TOU", "PERIODS", "TouSchedule"]

PERIODS = ("sharp", "peak", "flat", "valley")

DEFAULT_TOU: tuple[tuple[str, str], ...] = (
    ("00:00", "valley"),
    ("08:00", "peak"),
    ("11:00", "flat"),
    ("17:00", "peak"),
    ("19:00", "sharp"),
    ("21:00", "flat"),
    ("23:00", "valley"),
)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class TouSchedule:
    """Periods by local time of day: a sorted list of (start minute, period) from 00:00; with
    ``weekend`` another list for Saturdays and Sundays (a meter's downloaded table)."""

    def __init__(
        self,
        entries: Sequence[tuple[str, str]] = DEFAULT_TOU,
        timezone: str = "UTC",
        *,
        weekend: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.entries = self._parse(entries)
        self.weekend = self._parse(weekend) if weekend is not None else None
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone

    @classmethod
    def from_table(cls, table: dict[str, list[tuple[str, str]]], timezone: str) -> TouSchedule:
        """The schedule of a meter's TOU table (``{"workday": [...], "weekend": [...]}``); a
        meter does not know the holiday calendar, so holidays follow the weekday's table."""
        return cls(table["workday"], timezone, weekend=table.get("weekend"))

    def table(self, day_types: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """As a meter stores it: the switch points of each day type."""
        def hhmm(entries: list[tuple[int, str]]) -> list[tuple[str, str]]:
            return [(f"{m // 60:02d}:{m % 60:02d}", p) for m, p in entries]

        return {d: hhmm(self.weekend if d == "weekend" and self.weekend is not None else self.entries) for d in day_types}

    @staticmethod
    def _parse(entries: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
        parsed: list[tuple[int, str]] = []
        for i, (start, period) in enumerate(entries):
            m = _HHMM.match(start)
            if not m:
                raise ValueError(f"tou[{i}].start: expected HH:MM, found {start!r}")
            if period not in PERIODS:
                raise ValueError(f"tou[{i}].period: expected one of {', '.join(PERIODS)}, found {period!r}")
            parsed.append((int(m.group(1)) * 60 + int(m.group(2)), period))
        if not parsed or parsed[0][0] != 0:
            raise ValueError("tou: the first period must start at 00:00")
        if any(b[0] <= a[0] for a, b in zip(parsed, parsed[1:], strict=False)):
            raise ValueError("tou: start times must increase")
        return parsed

    def period_at(self, ts: float) -> tuple[str, float]:
        """The period at epoch ``ts`` and the epoch when it ends (the next boundary)."""
        local = datetime.fromtimestamp(ts, self.tz)
        minute = local.hour * 60 + local.minute
        entries = self.weekend if self.weekend is not None and local.isoweekday() >= 6 else self.entries
        index = 0
        for i, (start, _period) in enumerate(entries):
            if start <= minute:
                index = i
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if index + 1 < len(entries):
            next_start = entries[index + 1][0]
            boundary = midnight + timedelta(minutes=next_start)
        else:
            boundary = midnight + timedelta(days=1)
        # wall-clock arithmetic in local time; .timestamp() handles a DST shift on the way
        end = boundary.replace(tzinfo=None).replace(tzinfo=self.tz).timestamp()
        if end <= ts:  # a DST gap swallowed the boundary: move on by one minute
            end = ts + 60
        return entries[index][1], end
