"""What the historian stores: one interval record per meter and interval, and raw points.

Cumulative registers (energy in kWh, water volume in m³) are kept as exact integers of
millionths (``to_micro``): a reading of ``1234.56`` kWh is ``1_234_560_000``. Interval deltas
are differences of those integers, so the deltas of consecutive intervals add up exactly to the
difference of the readings, on every backend, however many are summed. Analog statistics
(power, voltage, current) are plain floats.

An interval record's ``values`` maps stored field names to numbers; a field that is absent is
unknown (no good reading), which is different from zero:

- ``<register>``: the register's delta over the interval (µkWh / µm³, int);
- ``<analog>_min``, ``<analog>_avg``, ``<analog>_max``: over the good samples (float);
- ``samples``, ``good_samples``: polls seen for the meter and how many were good;
- ``flag_gap`` (0/1): the deltas include consumption from before this interval — the meter (or
  the server) was away for at least one whole interval and the consumption of the gap lands in
  the interval where readings return; ``gap_from`` is the time (epoch s) of the reading the
  deltas start from;
- ``flag_reset`` (0/1): a register went backwards (reset, replacement, rollover); the backwards
  step is not counted and no consumption is invented for it;
- ``flag_first`` (0/1): no earlier reading was known; the deltas count from the first reading
  in this interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "ANALOGS",
    "ANALOG_FIELDS",
    "FLAG_FIELDS",
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "INTERVAL_FIELDS",
    "IntervalRecord",
    "MICRO",
    "POINTS",
    "RawPoint",
    "REGISTERS",
    "from_micro",
    "to_micro",
]

MICRO = 1_000_000

# cumulative registers: interval value = delta of the register
REGISTERS: tuple[str, ...] = (
    "energy_total",
    "energy_sharp",
    "energy_peak",
    "energy_flat",
    "energy_valley",
    "volume_total",
)
# analog points: interval values = min / avg / max of the good samples
ANALOGS: tuple[str, ...] = ("power", "voltage", "current")
# every meter point the aggregator reads
POINTS: frozenset[str] = frozenset(REGISTERS + ANALOGS)

ANALOG_FIELDS: tuple[str, ...] = tuple(f"{a}_{s}" for a in ANALOGS for s in ("min", "avg", "max"))
FLAG_FIELDS: tuple[str, ...] = ("flag_gap", "flag_reset", "flag_first")
INT_FIELDS: tuple[str, ...] = REGISTERS + ("samples", "good_samples") + FLAG_FIELDS + ("gap_from",)
FLOAT_FIELDS: tuple[str, ...] = ANALOG_FIELDS
INTERVAL_FIELDS: tuple[str, ...] = INT_FIELDS + FLOAT_FIELDS


def to_micro(value: Any) -> int | None:
    """A register reading as an exact integer of millionths, or None when it is not a number.

    ``Decimal(str(value))`` takes the reading as written (``0.1`` is 0.1, not the binary float
    nearest to it); digits beyond the sixth decimal are rounded half-even.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return int(d.scaleb(6).to_integral_value(ROUND_HALF_EVEN))


def from_micro(value: int) -> Decimal:
    return Decimal(value).scaleb(-6)


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """One meter over one interval ``[start, start + length)`` (epoch seconds, UTC)."""

    meter: str
    start: int
    length: int
    values: dict[str, int | float]

    def to_json(self) -> list[Any]:
        return [self.meter, self.start, self.length, self.values]

    @classmethod
    def from_json(cls, data: list[Any]) -> IntervalRecord:
        meter, start, length, values = data
        return cls(str(meter), int(start), int(length), dict(values))


@dataclass(frozen=True, slots=True)
class RawPoint:
    """One logged sample of a tag: ``ts`` in epoch microseconds, ``quality`` 0 bad / 1 uncertain
    / 2 good. ``value`` is None when the tag holds no number (never read)."""

    tag: str
    ts: int
    value: float | None
    quality: int

    def to_json(self) -> list[Any]:
        return [self.tag, self.ts, self.value, self.quality]

    @classmethod
    def from_json(cls, data: list[Any]) -> RawPoint:
        tag, ts, value, quality = data
        return cls(str(tag), int(ts), None if value is None else float(value), int(quality))
