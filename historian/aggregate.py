"""Interval aggregation from the tag change stream.

:class:`IntervalAggregator` is fed :class:`~tags.TagChange` events (changes *and* reports, so
every poll counts as a sample) for meter tags ``<meter>.<point>`` and, when an interval is over,
turns what it saw into one :class:`~historian.records.IntervalRecord` per meter. It does no I/O
and reads no clock: the caller says what time it is, so tests drive time.

Energy is exact by construction. Each register keeps a *baseline*: the last good reading of an
earlier interval. An interval's delta is (first reading − baseline) + the forward steps between
its own readings, which telescopes to (last reading − baseline): the deltas of any run of
intervals add up to the difference of the readings at its ends. Consequences:

- A meter that stops answering has intervals without a delta (unknown, not zero); when it
  answers again, the whole consumption of the gap lands in that interval, flagged ``flag_gap``
  with ``gap_from`` = the time of the reading it starts from. No profile is invented.
- A register that goes backwards (reset, replacement, rollover) is flagged ``flag_reset``; the
  backwards step counts nothing, consumption on either side of it still counts.
- A reading older than one already used (late, replayed) is ignored for deltas.

Events are put in the interval of their ``source_ts``; an event for an interval that is already
closed goes to the oldest open one, so nothing is dropped. Intervals are closed ``delay_s``
after they end, to let late polls arrive.

The whole state (baselines, open intervals) is a JSON-able dict (:meth:`state`), saved with each
batch of closed records, so a restart continues the same intervals and the same baselines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tags import Quality, TagChange, names

from .grid import IntervalGrid, epoch_us
from .records import ANALOGS, POINTS, REGISTERS, IntervalRecord, to_micro
from .rollup import DayRollup

__all__ = ["IntervalAggregator", "STATE_VERSION"]

STATE_VERSION = 1
_REGISTERS = frozenset(REGISTERS)
# a source timestamp this far ahead of the server's clock is not believed
_MAX_AHEAD_US = 60 * 1_000_000


class _Register:
    """One register within one open interval."""

    __slots__ = ("first", "last", "progress", "reset", "first_ts", "last_ts")

    def __init__(self, value: int, ts: int) -> None:
        self.first = self.last = value
        self.first_ts = self.last_ts = ts
        self.progress = 0  # sum of forward steps between readings of this interval
        self.reset = False

    def add(self, value: int, ts: int) -> None:
        step = value - self.last
        if step >= 0:
            self.progress += step
        else:
            self.reset = True
        self.last = value
        self.last_ts = ts

    def dump(self) -> list[Any]:
        return [self.first, self.last, self.progress, self.reset, self.first_ts, self.last_ts]

    @classmethod
    def load(cls, data: list[Any]) -> _Register:
        r = cls(int(data[0]), int(data[4]))
        r.last, r.progress, r.reset, r.last_ts = int(data[1]), int(data[2]), bool(data[3]), int(data[5])
        return r


class _Open:
    """One meter within one open interval."""

    __slots__ = ("samples", "good", "registers", "analogs")

    def __init__(self) -> None:
        self.samples = 0
        self.good = 0
        self.registers: dict[str, _Register] = {}
        self.analogs: dict[str, list[float]] = {}  # point -> [min, sum, max, count]

    def dump(self) -> dict[str, Any]:
        return {
            "n": self.samples,
            "g": self.good,
            "r": {k: r.dump() for k, r in self.registers.items()},
            "a": {k: list(a) for k, a in self.analogs.items()},
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> _Open:
        o = cls()
        o.samples, o.good = int(data["n"]), int(data["g"])
        o.registers = {k: _Register.load(v) for k, v in data["r"].items()}
        o.analogs = {k: [float(x) for x in v] for k, v in data["a"].items()}
        return o


class _Meter:
    """What is remembered about a meter across intervals."""

    __slots__ = ("baselines", "last_ts", "sample_ts", "sample_interval", "sample_good", "has_registers")

    def __init__(self) -> None:
        # register -> [reading (µ), its source time (µs), start of the interval it closed in]
        self.baselines: dict[str, list[int]] = {}
        self.last_ts: dict[str, int] = {}  # newest reading used, per register
        self.sample_ts = -1  # the poll being counted: events with this source time are one sample
        self.sample_interval = 0
        self.sample_good = False
        self.has_registers = False

    def dump(self) -> dict[str, Any]:
        return {
            "b": self.baselines,
            "t": self.last_ts,
            "s": [self.sample_ts, self.sample_interval, self.sample_good, self.has_registers],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> _Meter:
        m = cls()
        m.baselines = {k: [int(x) for x in v] for k, v in data["b"].items()}
        m.last_ts = {k: int(v) for k, v in data["t"].items()}
        m.sample_ts, m.sample_interval, m.sample_good = int(data["s"][0]), int(data["s"][1]), bool(data["s"][2])
        m.has_registers = bool(data["s"][3])
        return m


class IntervalAggregator:
    def __init__(self, grid: IntervalGrid, now_s: float, *, delay_s: float = 10.0) -> None:
        self.grid = grid
        self.delay_s = delay_s
        self._open: dict[int, dict[str, _Open]] = {}
        self._meters: dict[str, _Meter] = {}
        self.days = DayRollup(grid.tz)
        # the first interval not closed yet, and the first one this process saw from its start:
        # intervals before it (the server was not running) are only closed if state was restored
        self._next_start = grid.start_of(now_s)
        self._resumed_from = self._next_start
        self.fed = 0
        self.ignored = 0

    # -- intake --------------------------------------------------------------------------------
    def feed(self, change: TagChange) -> bool:
        """Take one change or report. Returns False when the tag is not one the historian reads."""
        name = change.name
        meter, point = names.split(name)
        if point not in POINTS or not meter or ":" in meter:
            return False
        new = change.new
        server = epoch_us(new.server_ts)
        # a source time without a zone, or far ahead of ours, is not believed
        ts = epoch_us(new.source_ts) if new.source_ts.tzinfo is not None else server
        if ts > server + _MAX_AHEAD_US:
            ts = server
        start = self.grid.start_of(ts / 1_000_000)
        if start < self._next_start:
            start = self._next_start  # its interval is closed: count it in the oldest open one
        bucket = self._open.get(start)
        if bucket is None:
            bucket = self._open[start] = {}
        acc = bucket.get(meter)
        if acc is None:
            acc = bucket[meter] = _Open()
        state = self._meters.get(meter)
        if state is None:
            state = self._meters[meter] = _Meter()
        self.fed += 1
        good = new.quality is Quality.GOOD
        is_register = point in _REGISTERS
        if is_register:
            state.has_registers = True
        # one poll writes a meter's registers with one source time: that is one sample (analog
        # points, which may be read in another block, count only for meters without registers)
        if is_register or not state.has_registers:
            if state.sample_ts != ts:
                state.sample_ts, state.sample_interval, state.sample_good = ts, start, good
                acc.samples += 1
                acc.good += good
            elif state.sample_good and not good:
                state.sample_good = False
                counted = self._open.get(state.sample_interval, {}).get(meter)
                if counted is not None:
                    counted.good -= 1
        if not good:
            return True
        value = new.value
        if is_register:
            micro = to_micro(value)
            if micro is None or ts <= state.last_ts.get(point, -1):
                self.ignored += 1  # not a number, or older than a reading already used
                return True
            state.last_ts[point] = ts
            reg = acc.registers.get(point)
            if reg is None:
                acc.registers[point] = _Register(micro, ts)
            else:
                reg.add(micro, ts)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self.ignored += 1
                return True
            x = float(value)
            stats = acc.analogs.get(point)
            if stats is None:
                acc.analogs[point] = [x, x, x, 1.0]
            else:
                if x < stats[0]:
                    stats[0] = x
                if x > stats[2]:
                    stats[2] = x
                stats[1] += x
                stats[3] += 1
        return True

    # -- closing -------------------------------------------------------------------------------
    @property
    def next_due_s(self) -> float:
        """When the oldest open interval may be closed (epoch s)."""
        return self._next_start + self.grid.length + self.delay_s

    @property
    def meters(self) -> frozenset[str]:
        return frozenset(self._meters)

    def close_due(self, now_s: float, meters: Iterable[str] | None = None) -> list[IntervalRecord]:
        """Close every interval that ended at least ``delay_s`` before ``now_s``.

        Each closed interval gives one record per meter of ``meters`` (default: every meter
        seen so far) and per meter that had events in it; a meter without events gets a record
        with ``samples = 0`` and no deltas. Intervals before this process started (the server
        was down) give no records, except those restored from a saved state.
        """
        length = self.grid.length
        tracked = set(self._meters if meters is None else meters)
        records: list[IntervalRecord] = []
        while self._next_start + length + self.delay_s <= now_s:
            start = self._next_start
            bucket = self._open.pop(start, {})
            if start >= self._resumed_from or bucket:
                for meter in sorted(tracked | bucket.keys()):
                    record = self._close_meter(meter, start, bucket.get(meter))
                    self.days.add(record)
                    records.append(record)
            self._next_start = start + length
            if self._next_start < self._resumed_from:
                # the server was down: skip to the next restored interval or to the restart
                self._next_start = min([s for s in self._open if s >= self._next_start] + [self._resumed_from])
        return records

    def take_days(self) -> list[IntervalRecord]:
        """Day rollups changed by the intervals closed since the last call (see
        :mod:`historian.rollup`)."""
        return self.days.take(self._next_start)

    def _close_meter(self, meter: str, start: int, acc: _Open | None) -> IntervalRecord:
        length = self.grid.length
        values: dict[str, int | float] = {"flag_gap": 0, "flag_reset": 0, "flag_first": 0}
        if acc is None:
            values["samples"] = 0
            values["good_samples"] = 0
            return IntervalRecord(meter, start, length, values)
        state = self._meters.get(meter)
        if state is None:
            state = self._meters[meter] = _Meter()
        values["samples"] = acc.samples
        values["good_samples"] = acc.good
        gap_from: int | None = None
        for name, reg in acc.registers.items():
            delta = reg.progress
            base = state.baselines.get(name)
            if base is None:
                values["flag_first"] = 1
            else:
                if reg.first >= base[0]:
                    delta += reg.first - base[0]
                else:
                    values["flag_reset"] = 1  # backwards across the interval boundary
                if base[2] < start - length:  # no reading in the interval before this one
                    since = base[1] // 1_000_000
                    gap_from = since if gap_from is None else min(gap_from, since)
            if reg.reset:
                values["flag_reset"] = 1
            values[name] = delta
            state.baselines[name] = [reg.last, reg.last_ts, start]
        if gap_from is not None:
            values["flag_gap"] = 1
            values["gap_from"] = gap_from
        for point in ANALOGS:
            stats = acc.analogs.get(point)
            if stats is not None:
                values[f"{point}_min"] = stats[0]
                values[f"{point}_avg"] = stats[1] / stats[3]
                values[f"{point}_max"] = stats[2]
        return IntervalRecord(meter, start, length, values)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "length": self.grid.length,
            "phase": self.grid.phase,
            "next_start": self._next_start,
            "meters": {m: s.dump() for m, s in self._meters.items()},
            "open": {str(start): {m: o.dump() for m, o in bucket.items()} for start, bucket in self._open.items()},
            "days": self.days.state(),
        }

    def load_state(self, data: dict[str, Any], now_s: float) -> str:
        """Continue from a saved state. Returns what was restored, for the log.

        With a different interval length the open intervals are dropped (they no longer fit
        the grid); the baselines are kept, so the next deltas still start from the last
        readings.
        """
        if data.get("version") != STATE_VERSION:
            return f"state version {data.get('version')!r} not understood: starting fresh"
        self._meters = {m: _Meter.load(s) for m, s in data["meters"].items()}
        self.days.load(data.get("days", []))
        self._resumed_from = self.grid.start_of(now_s)
        if data["length"] != self.grid.length or data["phase"] != self.grid.phase:
            self._open = {}
            self._next_start = self._resumed_from
            return f"baselines of {len(self._meters)} meters (interval changed: open intervals dropped)"
        self._open = {int(k): {m: _Open.load(o) for m, o in v.items()} for k, v in data["open"].items()}
        self._next_start = int(data["next_start"])
        if self._next_start < self._resumed_from:
            self._next_start = min([s for s in self._open if s >= self._next_start] + [self._resumed_from])
        return f"baselines of {len(self._meters)} meters, {len(self._open)} open interval(s)"
