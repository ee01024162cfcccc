"""Register readings and their plausibility: what may be billed, what is held for review.

Consumption is the difference of a cumulative register. A new reading is judged against the
meter's last billed reading:

- older than (or as old as) the last billed reading: a replay, skipped;
- the same value: nothing to bill;
- lower: a reset or a rollover (the register wrapped past its maximum), held for review;
- higher by more than the meter's maximum power allows over the elapsed time: a jump, held;
- otherwise billed.

A held reading bills nothing until an operator accepts it or records a reset/replacement.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass
from decimal import Decimal

from scada.prepaid.money import exact

__all__ = ["Assessment", "Reading", "Verdict", "assess", "parse_reading", "rollover_moduli"]

ENERGY_REGISTERS = ("sharp", "peak", "flat", "valley")
_SCALE = Decimal(3_600_000_000)  # µs per hour


@dataclass(frozen=True, slots=True)
class Reading:
    """One good reading of a meter: the cumulative total and, if the meter has them and all
    were good, the per-period registers (``{"sharp": ..., "peak": ..., ...}``)."""

    meter_id: str
    value: Decimal
    ts: dt.datetime
    registers: dict[str, Decimal] | None = None


class Verdict(enum.Enum):
    BASELINE = "baseline"  # no billed reading yet: this one is the start
    SKIP = "skip"  # replay, stale or unchanged
    BILL = "bill"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Assessment:
    verdict: Verdict
    kind: str | None = None  # for HOLD: backwards | rollover | jump
    detail: str = ""
    delta: Decimal = Decimal(0)  # register units; for a rollover, the wrapped difference


def parse_reading(value: object) -> Decimal | None:
    """A tag value as an exact decimal: floats through ``str`` (the poller scales registers so
    that ``str(value)`` is the exact reading); booleans, None, NaN and infinities are not readings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(str(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _resolution(value: Decimal, last: Decimal) -> Decimal:
    """The register's step: the finest of the new reading (as the poller wrote it) and the
    last one without trailing zeros (the database may pad them: 100.00000000)."""
    exps = []
    for v in (value, last.normalize()):
        e = v.as_tuple().exponent
        assert isinstance(e, int)
        exps.append(e)
    return Decimal(1).scaleb(min(min(exps), 0))


def rollover_moduli(last: Decimal, resolution: Decimal) -> list[Decimal]:
    """Register spans a counter can wrap at: 16 and 32 bit counts, or a decimal display."""
    digits = len(str(int(last))) if last >= 1 else 1
    out = {Decimal(2**16) * resolution, Decimal(2**32) * resolution, Decimal(10) ** digits}
    return sorted(m for m in out if m > last)


def assess(
    last_value: Decimal | None,
    last_ts: dt.datetime | None,
    reading: Reading,
    *,
    max_power_kw: Decimal | None,
    multiplier: Decimal = Decimal(1),
    margin: Decimal = Decimal(1),
) -> Assessment:
    """Judge ``reading`` against the last billed reading (see the module docstring)."""
    if last_value is None or last_ts is None:
        return Assessment(Verdict.BASELINE)
    if reading.ts <= last_ts:
        return Assessment(Verdict.SKIP, detail="not newer than the last billed reading")
    value = reading.value
    if value == last_value:
        return Assessment(Verdict.SKIP, detail="unchanged")
    with exact():
        elapsed = reading.ts - last_ts
        micros = (elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds
        if value > last_value:
            # the common case first, without the helpers below: forwards and within the meter's
            # power (the first test of ``plausible``); anything else is judged in full below
            delta = value - last_value
            if max_power_kw is None or delta * multiplier * _SCALE <= max_power_kw * margin * micros:
                return Assessment(Verdict.BILL, delta=delta)
        # energy is compared in kWh × µs/h to stay exact: consumption ≤ power × elapsed hours,
        # plus two register steps of slack (a reading may be one step ahead of its timestamp)
        scale = Decimal(3_600_000_000)
        resolution: Decimal | None = None

        def step() -> Decimal:
            nonlocal resolution
            if resolution is None:
                resolution = _resolution(value, last_value)
            return resolution

        def plausible(quantity: Decimal) -> bool:
            if max_power_kw is None:
                return True
            energy, limit = quantity * multiplier * scale, max_power_kw * margin * micros
            # the slack (never negative) is worked out only when it can matter
            return energy <= limit or energy <= limit + 2 * step() * multiplier * scale

        if value < last_value:
            for modulus in rollover_moduli(last_value, step()):
                wrapped = value + modulus - last_value
                if plausible(wrapped):
                    return Assessment(
                        Verdict.HOLD, "rollover",
                        f"register went from {last_value} to {value}: a wrap at {modulus} would mean +{wrapped}",
                        wrapped,
                    )
            return Assessment(
                Verdict.HOLD, "backwards", f"register went back from {last_value} to {value} (reset or replacement?)",
            )
        delta = value - last_value
        if not plausible(delta):
            seconds = (reading.ts - last_ts).total_seconds()
            return Assessment(
                Verdict.HOLD, "jump",
                f"register jumped +{delta} in {seconds:.0f} s, more than {max_power_kw} kW × margin {margin} allows",
                delta,
            )
        return Assessment(Verdict.BILL, delta=delta)
