"""The physics of one simulated meter: load over the day, energy and volume that only grow
while supply is on, time-of-use registers, relay or valve, and what its registers read.

Time is the simulator's clock (epoch seconds, possibly sped up or driven by a test). State is
integrated lazily: whenever a register is read or the supply switched, the meter catches up
from its last update to "now", splitting the interval at TOU boundaries and at every simulated
minute (the load's noise changes once a minute). The load follows true time (the tenant's day);
the TOU registers follow the meter's own table and clock, as a real meter's do: a meter whose
clock drifts books energy into the wrong periods until its clock is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tags import Value

from ..params import BlockError, ClockBlock, TouTableBlock
from ..profile import PointSpec, Profile
from .tou import TouSchedule

__all__ = ["ELECTRIC_CURVE", "MeterSpec", "SimMeter", "WATER_CURVE"]

# share of the meter's peak load by hour of day (linear between hours): a residential day with
# a morning bump and an evening peak
ELECTRIC_CURVE = (
    0.35, 0.30, 0.28, 0.27, 0.27, 0.30, 0.45, 0.80, 0.90, 0.60, 0.50, 0.55,
    0.65, 0.55, 0.50, 0.50, 0.60, 0.85, 1.20, 1.40, 1.35, 1.10, 0.80, 0.50,
)
# water: showers in the morning and the evening, almost nothing at night
WATER_CURVE = (
    0.02, 0.01, 0.01, 0.01, 0.02, 0.10, 0.60, 1.00, 0.70, 0.30, 0.20, 0.30,
    0.50, 0.30, 0.20, 0.20, 0.30, 0.50, 0.80, 0.90, 0.70, 0.50, 0.20, 0.05,
)
_ACCUMULATORS = {
    "energy_total": "total", "energy_sharp": "sharp", "energy_peak": "peak", "energy_flat": "flat",
    "energy_valley": "valley", "energy_reverse": "reverse", "volume_total": "volume",
    "volume_reverse": "volume_reverse",
}
# cumulative quantities are kept as whole micro-units (1e-6 kWh or m3) so that a register cut
# to its resolution is exact at any size (a float near 4e7 kWh cannot hold 0.01 kWh exactly)
_MICRO = 1_000_000
_NOMINAL_V = 220.0


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A meter the simulator serves: where (link, unit, circuit) and with which profile."""

    id: str
    profile: str
    link: str
    unit_id: int
    circuit: int | None = None
    max_power_kw: float | None = None
    initial_reading: float = 0.0
    address: str | None = None  # a DL/T 645 meter's 12 digits


def _hash01(*parts: int) -> float:
    """A deterministic pseudo-random number in [0, 1) from integers (cheap, no RNG state)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x ^= (p + 0x632BE59BD9B4E019 + (x << 6) + (x >> 2)) & 0xFFFFFFFFFFFFFFFF
        x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return (x & 0xFFFFFFFF) / 2**32


def _curve(curve: tuple[float, ...], hour: float) -> float:
    i = int(hour) % 24
    frac = hour - int(hour)
    return curve[i] + (curve[(i + 1) % 24] - curve[i]) * frac


class SimMeter:
    """One simulated meter. ``supply_on`` is the relay (closed) or the valve (open)."""

    def __init__(self, spec: MeterSpec, profile: Profile, tou: TouSchedule, now: float, seed: int = 0) -> None:
        self.spec = spec
        self.profile = profile
        self.tou = tou
        self.water = profile.kind == "water"
        self.seed = _stable_hash(spec.id) ^ seed
        # the meter's peak load: a share of its rating, varied per meter
        spread = 0.7 + 0.6 * _hash01(self.seed, 1)
        if self.water:
            self.peak = 0.4 * spread  # m3/h
        else:
            rating = spec.max_power_kw if spec.max_power_kw else 8.0
            self.peak = 0.18 * rating * spread  # kW
        self.three_phase = not self.water and "dtsy" in profile.name
        self.acc: dict[str, int] = dict.fromkeys(_ACCUMULATORS.values(), 0)
        self.acc["volume" if self.water else "total"] = round(spec.initial_reading * _MICRO)
        self._carry = 0.0  # the fraction of a micro-unit not yet counted
        self.supply_on = True
        self.stuck = False  # a relay/valve that accepts commands but does not move
        self.override: float | None = None  # constant load (kW or m3/h) set by the control API
        self.pinned: dict[str, Value] = {}  # points held at a value set by the control API
        self.t = now
        # parameter blocks as the meter stores them (registers); the clock is kept as an offset
        self.blocks: dict[str, list[int]] = {}
        self.clock_offset = 0.0  # seconds the meter's clock is ahead of true time
        self.refuse_writes = False  # answers parameter writes with an exception (control API)
        for name, block in profile.parameters.items():
            if isinstance(block, TouTableBlock):
                self.blocks[name] = block.encode(tou.table(block.day_types))
            elif not isinstance(block, ClockBlock):
                self.blocks[name] = [0] * block.words

    # -- parameter blocks ----------------------------------------------------------------------
    def _tou_block(self) -> TouTableBlock | None:
        return next((b for b in self.profile.parameters.values() if isinstance(b, TouTableBlock)), None)

    def meter_time(self, now: float) -> datetime:
        """The meter's own clock: local time, off by ``clock_offset``."""
        return datetime.fromtimestamp(now + self.clock_offset, self.tou.tz).replace(tzinfo=None, microsecond=0)

    def read_block(self, name: str, now: float) -> list[int]:
        block = self.profile.parameters[name]
        if isinstance(block, ClockBlock):
            return block.encode(self.meter_time(now))
        return list(self.blocks[name])

    def write_block(self, name: str, registers: list[int], now: float) -> None:
        """Store a written block. Raises :class:`BlockError` for registers the meter refuses."""
        block = self.profile.parameters[name]
        value = block.decode(registers)  # refuses what does not decode
        if isinstance(block, ClockBlock):
            assert isinstance(value, datetime)
            true_local = datetime.fromtimestamp(now, self.tou.tz).replace(tzinfo=None)
            self.advance(now)  # consumption up to now by the old clock's periods
            self.clock_offset = round((value - true_local).total_seconds())
            return
        if isinstance(block, TouTableBlock):
            assert isinstance(value, dict)
            try:
                schedule = TouSchedule.from_table(value, self.tou.timezone)
            except (KeyError, ValueError) as exc:
                raise BlockError(f"{name}: {exc}") from None
            self.advance(now)  # consumption up to now by the old table, from now on by the new one
            self.tou = schedule
        self.blocks[name] = list(registers)

    def set_tou(self, table: dict[str, list[tuple[str, str]]], now: float) -> None:
        """Set the meter's TOU table as if programmed on site (the control API)."""
        block = self._tou_block()
        if block is None:
            raise KeyError(f"profile {self.profile.name} has no time-of-use table")
        try:
            registers = block.encode(table)
        except BlockError as exc:
            raise ValueError(str(exc)) from None
        self.write_block(block.name, registers, now)

    def drift(self, seconds: float, now: float) -> None:
        if not any(isinstance(b, ClockBlock) for b in self.profile.parameters.values()):
            raise KeyError(f"profile {self.profile.name} has no clock")
        self.advance(now)
        self.clock_offset = float(seconds)

    def blocks_json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, block in self.profile.parameters.items():
            if isinstance(block, ClockBlock):
                continue
            try:
                out[name] = block.as_json(block.decode(self.blocks[name]))  # type: ignore[arg-type]
            except BlockError as exc:
                out[name] = {"error": str(exc)}
        return out

    # -- load -----------------------------------------------------------------------------------
    def rate_at(self, ts: float) -> float:
        """Load in kW (electricity) or flow in m3/h (water) at ``ts`` if supply were on."""
        if self.override is not None:
            return self.override
        local_hour = self._local_hour(ts)
        shape = _curve(WATER_CURVE if self.water else ELECTRIC_CURVE, local_hour)
        noise = 0.8 + 0.4 * _hash01(self.seed, int(ts // 60))
        return round(self.peak * shape * noise, 4)

    def _local_hour(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, self.tou.tz)
        return local.hour + local.minute / 60 + local.second / 3600

    def advance(self, now: float) -> None:
        """Integrate consumption from the last update to ``now``."""
        t = self.t
        if now <= t:
            return
        self.t = now
        if not self.supply_on:
            return
        # minute by minute; a long catch-up (a clock jump, a restart after days) in coarser
        # slices: the load curve is smooth over an hour, and TOU boundaries still split
        gap = now - t
        max_step = 60.0 if gap <= 2 * 86_400 else 900.0 if gap <= 14 * 86_400 else 3600.0
        # the periods are the meter's: by its table and by its own clock, drifted or not
        offset = self.clock_offset
        while t < now:
            period, boundary = self.tou.period_at(t + offset)
            boundary -= offset
            # split at the TOU boundary and at the next whole minute (noise changes there)
            step_end = min(now, boundary, (math.floor(t / max_step) + 1) * max_step)
            rate = self.rate_at((t + step_end) / 2)
            amount = rate * (step_end - t) / 3600.0 * _MICRO + self._carry
            whole = int(amount)
            self._carry = amount - whole
            if self.water:
                self.acc["volume"] += whole
            else:
                self.acc["total"] += whole
                self.acc[period] += whole
            t = step_end

    def current_rate(self, now: float) -> float:
        return self.rate_at(now) if self.supply_on else 0.0

    # -- commands and manual changes --------------------------------------------------------------
    def switch(self, on: bool, now: float) -> None:
        """Close/open the relay (or open/close the valve), unless it is stuck."""
        self.advance(now)
        if not self.stuck:
            self.supply_on = on

    def set_point(self, point: str, value: Value, now: float) -> None:
        """Overwrite a register's true value.

        A cumulative register (energy, volume) takes the value and goes on growing from it: a
        reset, a replacement or a rollover. The relay/valve status switches the supply. Any
        other point is held at the value (``None`` releases it to the model again).
        """
        if point not in self.profile.points:
            raise KeyError(f"point {point!r} is not in profile {self.profile.name}")
        self.advance(now)
        if point in _ACCUMULATORS and value is not None:
            self.acc[_ACCUMULATORS[point]] = round(float(value) * _MICRO)
        elif point in ("relay_closed", "valve_open") and value is not None:
            self.supply_on = bool(value)
        elif value is None:
            self.pinned.pop(point, None)
        else:
            self.pinned[point] = value

    # -- what the registers hold ------------------------------------------------------------------
    def value(self, point: Any, now: float) -> Value:
        """The true engineering value of ``point`` at ``now`` (after :meth:`advance`)."""
        name = point.name
        if name in self.pinned:
            return self.pinned[name]
        if name in _ACCUMULATORS:
            return _floor_to(self.acc[_ACCUMULATORS[name]], point)
        if name in ("relay_closed", "valve_open"):
            return self.supply_on
        if name in ("pt_ratio", "ct_ratio"):
            return 1  # a simulated meter sits on no instrument transformers
        kind = getattr(point, "type", "")
        if kind in ("date", "time"):  # a DL/T 645 meter's clock, in the site's time
            local = datetime.fromtimestamp(now, self.tou.tz)
            return local.strftime("%Y-%m-%d" if kind == "date" else "%H:%M:%S")
        if name == "flow":
            return round(self.current_rate(now), 3)
        if name == "power":
            return round(self.current_rate(now), 3)
        if name == "voltage":
            return round(_NOMINAL_V + 4.0 * (_hash01(self.seed, int(now // 10), 7) - 0.5), 1)
        if name == "power_factor":
            return round(0.93 + 0.05 * _hash01(self.seed, int(now // 60), 3), 3) if self.current_rate(now) else 1.0
        if name == "current":
            kw = self.current_rate(now)
            volts = _NOMINAL_V * (3 if self.three_phase else 1)
            return round(kw * 1000 / (volts * 0.95), 2)
        return 0 if not point.is_bool else False

    def snapshot(self, now: float) -> dict[str, Any]:
        """Every point's true value and the state, for ``GET /meters/{id}``."""
        self.advance(now)
        return {
            "id": self.spec.id,
            "profile": self.profile.name,
            "link": self.spec.link,
            "unit_id": self.spec.unit_id,
            **({"address": self.spec.address, "protocol": "dlt645"} if self.spec.address is not None else {}),
            "circuit": self.spec.circuit,
            "kind": self.profile.kind,
            "supply_on": self.supply_on,
            ("valve_open" if self.water else "relay_closed"): self.supply_on,
            "stuck": self.stuck,
            "load": {"m3_per_h" if self.water else "kw": self.override, "mode": "fixed" if self.override is not None else "curve"},
            "points": {name: self.value(p, now) for name, p in self.profile.points.items()},
            "registers": {
                name: self.profile.points[name].encode(self.value(self.profile.points[name], now))
                for name in self.profile.points
            },
            "sim_time": now,
            "tou_table": self._tou_json(),
            "clock": ({"time": self.meter_time(now).isoformat(), "drift_s": self.clock_offset}
                      if any(isinstance(b, ClockBlock) for b in self.profile.parameters.values()) else None),
            "parameters": self.blocks_json(now),
            "refuse_writes": self.refuse_writes,
        }

    def _tou_json(self) -> Any:
        block = self._tou_block()
        if block is None:
            return None
        return block.as_json(block.decode(self.blocks[block.name]))

    def state(self) -> dict[str, Any]:
        return {
            "acc": dict(self.acc),
            "supply_on": self.supply_on, "t": self.t,
            "blocks": {k: list(v) for k, v in self.blocks.items()}, "clock_offset": self.clock_offset,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.acc.update({k: int(v) for k, v in state.get("acc", {}).items() if k in self.acc})
        self.supply_on = bool(state.get("supply_on", True))
        self.t = float(state.get("t", self.t))
        self.clock_offset = float(state.get("clock_offset", 0.0))
        for name, registers in state.get("blocks", {}).items():
            block = self.profile.parameters.get(name)
            if block is None or len(registers) != block.words:
                continue
            try:
                self.write_block(name, [int(r) for r in registers], self.t)
            except BlockError:
                continue


def _floor_to(micro: int, point: PointSpec) -> float:
    """A cumulative value (micro-units) as the register shows it: cut to its resolution."""
    if point.data_type in ("f32", "f64"):
        places = point.decimals if point.decimals is not None else 3
    else:
        places = point.decimals or 0
    step = round(_MICRO * (10.0**-places if point.data_type in ("f32", "f64") else point.scale))
    return round((micro // step) * step / _MICRO, places)


def _stable_hash(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h
