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

Events are put in the interval of their ``source_ts``; intervals are closed ``delay_s`` after
they end, to let late polls arrive. Within an open interval readings may come in any order (a
reading older than the interval's first becomes its first).

Late readings (a gateway replaying its buffer after an outage, see ``TagChange.late``) revise
closed intervals where the meter had a *gap*: the aggregator keeps, per meter, each run of
closed intervals without a register reading together with the interval whose reading ended it
(the one that carried the gap's consumption, ``flag_gap``), and the baselines from before the
gap. A reading for an interval of such a run goes into that interval; at the next close the
run's records are recomputed from its baselines and the revised ones are emitted again (same
key: the backend replaces them), and the days they fall in are rebuilt from the stored
intervals (:meth:`take_rebuilds`). The gap's consumption then lands in the intervals where it
was measured, each exactly once. A reading resent (same time) changes nothing: register
readings are placed by time, and a sample inside the time span already counted in its interval
is taken as a resend. Runs are forgotten ``late_window_s`` after they ended.

A late reading for a closed interval outside every run (an interval whose readings were
already used) is ignored for deltas if it is older than a reading already used, else counted
in the oldest open interval; nothing is dropped.

The whole state (baselines, open intervals) is a JSON-able dict (:meth:`state`), saved with each
batch of closed records, so a restart continues the same intervals and the same baselines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tags import Quality, TagChange, TagValue, names

from .grid import IntervalGrid, epoch_us
from .records import ANALOGS, POINTS, REGISTERS, IntervalRecord, to_micro
from .rollup import DayRollup

__all__ = ["IntervalAggregator", "STATE_VERSION"]

STATE_VERSION = 2
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

    def insert(self, value: int, ts: int) -> None:
        """A reading in time order with those already taken (late ones may come after newer)."""
        if ts > self.last_ts:
            self.add(value, ts)
        elif ts < self.first_ts:
            step = self.first - value
            if step >= 0:
                self.progress += step
            else:
                self.reset = True
            self.first, self.first_ts = value, ts
        # else: within the span already taken: a resend, or a reading between two taken ones,
        # which for a register that only goes forward changes nothing

    def dump(self) -> list[Any]:
        return [self.first, self.last, self.progress, self.reset, self.first_ts, self.last_ts]

    @classmethod
    def load(cls, data: list[Any]) -> _Register:
        r = cls(int(data[0]), int(data[4]))
        r.last, r.progress, r.reset, r.last_ts = int(data[1]), int(data[2]), bool(data[3]), int(data[5])
        return r


class _Open:
    """One meter within one open interval."""

    __slots__ = ("samples", "good", "registers", "analogs", "span")

    def __init__(self) -> None:
        self.samples = 0
        self.good = 0
        self.registers: dict[str, _Register] = {}
        self.analogs: dict[str, list[float]] = {}  # point -> [min, sum, max, count]
        self.span: list[int] | None = None  # [first, last] source time (µs) of the samples counted

    def dump(self) -> dict[str, Any]:
        return {
            "n": self.samples,
            "g": self.good,
            "r": {k: r.dump() for k, r in self.registers.items()},
            "a": {k: list(a) for k, a in self.analogs.items()},
            "s": self.span,
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> _Open:
        o = cls()
        o.samples, o.good = int(data["n"]), int(data["g"])
        o.registers = {k: _Register.load(v) for k, v in data["r"].items()}
        o.analogs = {k: [float(x) for x in v] for k, v in data["a"].items()}
        span = data.get("s")
        o.span = [int(span[0]), int(span[1])] if span else None
        return o


class _Run:
    """Closed intervals of one meter without a register reading (a gap), and the interval whose
    reading ended it: what late readings may revise."""

    __slots__ = ("base", "first", "end", "accs", "dirty")

    def __init__(self, base: dict[str, list[int]], first: int) -> None:
        self.base = {k: list(v) for k, v in base.items()}  # the baselines before the gap
        self.first = first  # the gap's first interval
        self.end: int | None = None  # the interval with the reading that ended it; None: going on
        self.accs: dict[int, _Open] = {}  # the intervals of the run that had events
        self.dirty: set[int] = set()  # intervals that took late readings since the last close

    def holds(self, start: int) -> bool:
        return self.first <= start and (self.end is None or start <= self.end)

    def dump(self) -> list[Any]:
        return [self.base, self.first, self.end, {str(k): a.dump() for k, a in self.accs.items()}, sorted(self.dirty)]

    @classmethod
    def load(cls, data: list[Any]) -> _Run:
        run = cls({k: [int(x) for x in v] for k, v in data[0].items()}, int(data[1]))
        run.end = None if data[2] is None else int(data[2])
        run.accs = {int(k): _Open.load(v) for k, v in data[3].items()}
        run.dirty = {int(k) for k in data[4]}
        return run


class _Meter:
    """What is remembered about a meter across intervals."""

    __slots__ = (
        "baselines", "last_ts", "sample_ts", "sample_interval", "sample_good", "has_registers",
        "sample_counted", "sample_dup", "sample_points", "sample_acc", "runs", "last_closed",
    )

    def __init__(self) -> None:
        # register -> [reading (µ), its source time (µs), start of the interval it closed in]
        self.baselines: dict[str, list[int]] = {}
        self.last_ts: dict[str, int] = {}  # newest reading used, per register
        self.sample_ts = -1  # the poll being counted: events with this source time are one sample
        self.sample_interval = 0
        self.sample_good = False
        self.has_registers = False
        self.sample_counted = False  # the sample was counted (by a register event)
        self.sample_dup = False  # the sample lies within the span already counted: a resend
        self.sample_points: set[str] = set()  # points of the sample seen so far
        self.sample_acc: _Open | None = None  # where the sample was counted (not saved)
        self.runs: list[_Run] = []
        # the newest closed interval with readings: its start, its events and the baselines
        # before it (a gap that follows takes it in: the outage began within it)
        self.last_closed: tuple[int, _Open, dict[str, list[int]]] | None = None

    def run_for(self, start: int) -> _Run | None:
        for run in self.runs:
            if run.holds(start):
                return run
        return None

    def dump(self) -> dict[str, Any]:
        return {
            "b": self.baselines,
            "t": self.last_ts,
            "s": [self.sample_ts, self.sample_interval, self.sample_good, self.has_registers,
                  self.sample_counted, self.sample_dup],
            "r": [run.dump() for run in self.runs],
            "l": None if self.last_closed is None else [
                self.last_closed[0], self.last_closed[1].dump(), self.last_closed[2]
            ],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> _Meter:
        m = cls()
        m.baselines = {k: [int(x) for x in v] for k, v in data["b"].items()}
        m.last_ts = {k: int(v) for k, v in data["t"].items()}
        m.sample_ts, m.sample_interval, m.sample_good = int(data["s"][0]), int(data["s"][1]), bool(data["s"][2])
        m.has_registers = bool(data["s"][3])
        if len(data["s"]) > 4:
            m.sample_counted, m.sample_dup = bool(data["s"][4]), bool(data["s"][5])
        else:
            m.sample_counted = True
        m.runs = [_Run.load(r) for r in data.get("r", [])]
        last = data.get("l")
        if last is not None:
            m.last_closed = (int(last[0]), _Open.load(last[1]), {k: [int(x) for x in v] for k, v in last[2].items()})
        return m

    def head_run(self, start: int) -> _Run | None:
        """A run made of the newest closed interval with readings (a late reading for it came
        before any gap closed), or None."""
        last = self.last_closed
        if last is None or last[0] != start:
            return None
        run = _Run(last[2], start)
        run.end = start
        run.accs[start] = last[1]
        self.runs.append(run)
        return run


class IntervalAggregator:
    def __init__(
        self, grid: IntervalGrid, now_s: float, *, delay_s: float = 10.0, late_window_s: float = 2 * 86_400
    ) -> None:
        self.grid = grid
        self.delay_s = delay_s
        self.late_window_s = late_window_s
        self._open: dict[int, dict[str, _Open]] = {}
        self._meters: dict[str, _Meter] = {}
        self._revising: set[str] = set()  # meters with runs that took late readings
        self.days = DayRollup(grid.tz)
        # the first interval not closed yet, and the first one this process saw from its start:
        # intervals before it (the server was not running) are only closed if state was restored
        self._next_start = grid.start_of(now_s)
        self._resumed_from = self._next_start
        self.fed = 0
        self.ignored = 0
        self.late = 0  # readings that went into a closed interval (a revision)
        self.revised = 0  # records emitted again

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
        state = self._meters.get(meter)
        if state is None:
            state = self._meters[meter] = _Meter()
        self.fed += 1
        if start < self._next_start:
            run = state.run_for(start) or state.head_run(start)
            if run is not None:  # a gap's interval: revise it
                acc = run.accs.get(start)
                if acc is None:
                    acc = run.accs[start] = _Open()
                run.dirty.add(start)
                self._revising.add(meter)
                self.late += 1
                return self._take(state, acc, start, ts, point, new, fallback=False)
            if change.late and (point not in _REGISTERS or ts <= state.last_ts.get(point, -1)):
                # a replayed value for an interval already written, of a time already used
                self.ignored += 1
                return True
            start = self._next_start  # its interval is closed: count it in the oldest open one
        bucket = self._open.get(start)
        if bucket is None:
            bucket = self._open[start] = {}
        acc = bucket.get(meter)
        if acc is None:
            acc = bucket[meter] = _Open()
        return self._take(state, acc, start, ts, point, new, fallback=start != self.grid.start_of(ts / 1_000_000))

    def _take(self, state: _Meter, acc: _Open, start: int, ts: int, point: str, new: TagValue, *, fallback: bool) -> bool:
        good = new.quality is Quality.GOOD
        is_register = point in _REGISTERS
        if is_register:
            state.has_registers = True
        if ts != state.sample_ts:
            # one poll writes a meter's points with one source time: that is one sample; one
            # inside the span already counted in its interval is a resend (or a replay between
            # two counted samples) and is not counted again
            span = acc.span
            state.sample_ts, state.sample_interval = ts, start
            state.sample_dup = span is not None and span[0] <= ts <= span[1]
            state.sample_counted = False
            state.sample_points = set()
            state.sample_acc = acc
            if not state.sample_dup:
                if span is None:
                    acc.span = [ts, ts]
                elif ts < span[0]:
                    span[0] = ts
                else:
                    span[1] = ts
        seen = point in state.sample_points
        state.sample_points.add(point)
        # registers count the sample (analog points, which may be read in another block, count
        # only for meters without registers)
        if (is_register or not state.has_registers) and not state.sample_dup:
            if not state.sample_counted:
                state.sample_counted, state.sample_good = True, good
                acc.samples += 1
                acc.good += good
            elif state.sample_good and not good:
                state.sample_good = False
                counted = state.sample_acc
                if counted is not None:
                    counted.good -= 1
        if not good:
            return True
        value = new.value
        if is_register:
            micro = to_micro(value)
            last = state.last_ts.get(point, -1)
            if micro is None or (fallback and ts <= last):
                self.ignored += 1  # not a number, or older than a reading already used
                return True
            if ts > last:
                state.last_ts[point] = ts
            reg = acc.registers.get(point)
            if reg is None:
                acc.registers[point] = _Register(micro, ts)
            else:
                reg.insert(micro, ts)
        else:
            if state.sample_dup or seen:
                return True  # a resend: already in the statistics
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
        """Revise the gaps that took late readings, then close every interval that ended at
        least ``delay_s`` before ``now_s``.

        Each closed interval gives one record per meter of ``meters`` (default: every meter
        seen so far) and per meter that had events in it; a meter without events gets a record
        with ``samples = 0`` and no deltas. Intervals before this process started (the server
        was down) give no records, except those restored from a saved state.
        """
        records = self._revise()
        length = self.grid.length
        tracked = set(self._meters if meters is None else meters)
        closed_any = False
        while self._next_start + length + self.delay_s <= now_s:
            closed_any = True
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
        if closed_any:
            self._forget_runs()
        return records

    def take_days(self) -> list[IntervalRecord]:
        """Day rollups changed by the intervals closed since the last call (see
        :mod:`historian.rollup`)."""
        return self.days.take(self._next_start)

    def take_rebuilds(self) -> list[tuple[str, int, int]]:
        """Days (meter, start, end) to rebuild from the stored intervals: days of revised records."""
        return self.days.take_rebuilds()

    def _close_meter(self, meter: str, start: int, acc: _Open | None) -> IntervalRecord:
        state = self._meters.get(meter)
        if state is None:
            state = self._meters[meter] = _Meter()
        run = state.runs[-1] if state.runs and state.runs[-1].end is None else None
        if acc is None or not acc.registers:
            if run is None and state.has_registers:
                # the meter's readings stopped: a gap begins, with the interval they stopped in
                last = state.last_closed
                if last is not None:
                    run = _Run(last[2], last[0])
                    run.accs[last[0]] = last[1]
                else:
                    run = _Run(state.baselines, start)
                state.runs.append(run)
            if run is not None and acc is not None:
                run.accs[start] = acc
            return self._record(meter, start, acc, state.baselines)
        before = {k: list(v) for k, v in state.baselines.items()}
        if run is None:
            # readings again after intervals the server did not see (it was down): that too is
            # a gap a replay may fill
            since = max((b[2] for b in state.baselines.values()), default=None)
            if since is not None and since < start - self.grid.length:
                run = _Run(state.baselines, since + self.grid.length)
                state.runs.append(run)
        if run is not None:
            run.end = start
            run.accs[start] = acc
        state.last_closed = (start, acc, before)
        return self._record(meter, start, acc, state.baselines)

    def _record(self, meter: str, start: int, acc: _Open | None, baselines: dict[str, list[int]]) -> IntervalRecord:
        """The record of one meter's interval from its events and the baselines before it (which
        move to the interval's last readings)."""
        length = self.grid.length
        values: dict[str, int | float] = {"flag_gap": 0, "flag_reset": 0, "flag_first": 0}
        if acc is None:
            values["samples"] = 0
            values["good_samples"] = 0
            return IntervalRecord(meter, start, length, values)
        values["samples"] = acc.samples
        values["good_samples"] = acc.good
        gap_from: int | None = None
        for name, reg in acc.registers.items():
            delta = reg.progress
            base = baselines.get(name)
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
            baselines[name] = [reg.last, reg.last_ts, start]
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

    def _revise(self) -> list[IntervalRecord]:
        """Records of the gaps' intervals that took late readings, and of the interval after
        each whose baseline they moved; the meters' baselines follow."""
        out: list[IntervalRecord] = []
        for meter in sorted(self._revising):
            state = self._meters[meter]
            for run in state.runs:
                if not run.dirty:
                    continue
                base = {k: list(v) for k, v in run.base.items()}
                pending = False
                for start in sorted(run.accs):
                    acc = run.accs[start]
                    record = self._record(meter, start, acc, base)
                    if start in run.dirty:
                        out.append(record)
                        pending = True
                    elif pending and acc.registers:
                        out.append(record)
                        pending = False
                run.dirty.clear()
                for reg, b in base.items():
                    current = state.baselines.get(reg)
                    if current is None or current[2] <= b[2]:
                        state.baselines[reg] = b
                    if b[1] > state.last_ts.get(reg, -1):
                        state.last_ts[reg] = b[1]
        self._revising.clear()
        for record in out:
            self.days.rebuild(record.meter, record.start)
        self.revised += len(out)
        return out

    def _forget_runs(self) -> None:
        """Runs that ended more than ``late_window_s`` ago, and the older events of runs still
        going on, are forgotten: memory stays bounded however long a meter stays away."""
        horizon = self._next_start - self.late_window_s
        for state in self._meters.values():
            if not state.runs:
                continue
            state.runs = [r for r in state.runs if r.end is None or r.end >= horizon]
            for run in state.runs:
                for start in [s for s in run.accs if s < horizon and s not in run.dirty]:
                    del run.accs[start]

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

    def state_text(self, every: int = 500) -> Iterator[str]:
        """:meth:`state` as JSON text, ``json.dumps(self.state(), separators=(",", ":"))``, in
        pieces of about ``every`` meters (or open entries, or day rows), so that a caller can
        return to the event loop between them; the aggregator must not change meanwhile."""
        dumps = _COMPACT.encode
        head = dumps({"version": STATE_VERSION, "length": self.grid.length, "phase": self.grid.phase, "next_start": self._next_start})
        yield head[:-1] + ',"meters":{'
        yield from _joined(((m, s.dump()) for m, s in self._meters.items()), every, lambda item: dumps(item[0]) + ":" + dumps(item[1]))
        yield '},"open":{'
        for n, (start, bucket) in enumerate(self._open.items()):
            yield ("," if n else "") + dumps(str(start)) + ":{"
            yield from _joined(bucket.items(), every, lambda item: dumps(item[0]) + ":" + dumps(item[1].dump()))
            yield "}"
        yield '},"days":['
        yield from _joined(self.days.state(), every, dumps)
        yield "]}"

    def load_state(self, data: dict[str, Any], now_s: float) -> str:
        """Continue from a saved state. Returns what was restored, for the log.

        With a different interval length the open intervals and the gaps are dropped (they no
        longer fit the grid); the baselines are kept, so the next deltas still start from the
        last readings. A state of the previous version (no gaps kept) is taken as it is.
        """
        if data.get("version") not in (1, STATE_VERSION):
            return f"state version {data.get('version')!r} not understood: starting fresh"
        self._meters = {m: _Meter.load(s) for m, s in data["meters"].items()}
        self.days.load(data.get("days", []))
        self._resumed_from = self.grid.start_of(now_s)
        self._revising = {m for m, s in self._meters.items() if any(r.dirty for r in s.runs)}
        if data["length"] != self.grid.length or data["phase"] != self.grid.phase:
            self._open = {}
            self._next_start = self._resumed_from
            self._revising.clear()
            for state in self._meters.values():
                state.runs = []
            return f"baselines of {len(self._meters)} meters (interval changed: open intervals dropped)"
        self._open = {int(k): {m: _Open.load(o) for m, o in v.items()} for k, v in data["open"].items()}
        self._next_start = int(data["next_start"])
        if self._next_start < self._resumed_from:
            self._next_start = min([s for s in self._open if s >= self._next_start] + [self._resumed_from])
        return f"baselines of {len(self._meters)} meters, {len(self._open)} open interval(s)"


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _joined(items: Iterable[Any], every: int, text: Callable[[Any], str]) -> Iterator[str]:
    """``",".join(text(item) for item in items)`` in pieces of ``every`` items."""
    piece: list[str] = []
    first = True
    for item in items:
        piece.append(text(item))
        if len(piece) >= every:
            yield ("" if first else ",") + ",".join(piece)
            first, piece = False, []
    if piece:
        yield ("" if first else ",") + ",".join(piece)
