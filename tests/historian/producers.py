"""Synthetic meters for historian tests: they write to a real TagDB the way the Modbus poller
does (one ``write_many`` per poll with one source time; BAD with ``comm_failure`` while the
device does not answer) and keep the exact register values they wrote, so tests can compare
interval sums with register differences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tags import Quality, QualityReason, TagDB, TagMeta, TagWrite

__all__ = ["SyntheticMeter", "TOU_HOURS", "tou_period"]

# a simple time-of-use calendar by local hour
TOU_HOURS = {
    "sharp": {19, 20},
    "peak": {8, 9, 10, 11, 17, 18, 21},
    "valley": {0, 1, 2, 3, 4, 5, 6, 23},
}


def tou_period(local_hour: int) -> str:
    for period, hours in TOU_HOURS.items():
        if local_hour in hours:
            return period
    return "flat"


class SyntheticMeter:
    ENERGY = ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley")
    ANALOG = ("power", "voltage", "current")

    def __init__(self, db: TagDB, meter_id: str, *, start_kwh: str = "1000.00", water: bool = False) -> None:
        self.db = db
        self.id = meter_id
        self.water = water
        self.registers: dict[str, Decimal] = {}
        points = ("volume_total",) if water else self.ENERGY + self.ANALOG
        for p in points + ("comm_ok",):
            db.register(TagMeta(f"{meter_id}.{p}", meter_id=meter_id, point=p))
        if water:
            self.registers["volume_total"] = Decimal(start_kwh)
        else:
            base = Decimal(start_kwh)
            self.registers = {"energy_total": base, "energy_sharp": base / 4, "energy_peak": base / 4,
                              "energy_flat": base / 4, "energy_valley": base / 4}
        self.online = True

    def consume(self, amount: Decimal | str, local_hour: int = 12) -> None:
        """Advance the device's registers (whether or not anyone reads them)."""
        amount = Decimal(amount)
        if self.water:
            self.registers["volume_total"] += amount
            return
        self.registers["energy_total"] += amount
        self.registers[f"energy_{tou_period(local_hour)}"] += amount

    def poll(self, ts: datetime, *, power: float = 1.5, voltage: float = 230.0, current: float = 6.5) -> None:
        """What the poller writes after reading the device at ``ts``."""
        if not self.online:
            names = [f"{self.id}.{p}" for p in self.registers] + ([] if self.water else [f"{self.id}.{p}" for p in self.ANALOG])
            self.db.set_quality(names, Quality.BAD, QualityReason.COMM_FAILURE, "no answer", source_ts=ts)
            self.db.write(f"{self.id}.comm_ok", False, source_ts=ts)
            return
        writes = [TagWrite(f"{self.id}.{p}", float(v), source_ts=ts) for p, v in self.registers.items()]
        if not self.water:
            writes += [
                TagWrite(f"{self.id}.power", power, source_ts=ts),
                TagWrite(f"{self.id}.voltage", voltage, source_ts=ts),
                TagWrite(f"{self.id}.current", current, source_ts=ts),
            ]
        writes.append(TagWrite(f"{self.id}.comm_ok", True, source_ts=ts))
        self.db.write_many(writes)


def at(base: datetime, **delta: float) -> datetime:
    return base + timedelta(**delta)


UTC = UTC
