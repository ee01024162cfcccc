"""What every back-office operation needs: the database, the prepaid engine, the site, the settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from scada.billing.config import BillingConfig
from scada.db import Database
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.money import format_minor
from scada.site.assets import AssetRegistry, AssetSnapshot

__all__ = ["BillingContext"]


@dataclass(frozen=True)
class BillingContext:
    db: Database
    engine: PrepaidEngine
    assets: AssetRegistry
    cfg: BillingConfig

    @property
    def tz(self) -> ZoneInfo:
        return self.engine.tz

    @property
    def minor_units(self) -> int:
        return self.engine.minor_units

    @property
    def rounding(self) -> str:
        return self.engine.cfg.rounding

    @property
    def snapshot(self) -> AssetSnapshot:
        return self.assets.snapshot

    def fmt(self, minor: int) -> str:
        return format_minor(minor, self.minor_units)

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.tz).date()

    def local_date(self, t: dt.datetime) -> dt.date:
        return t.astimezone(self.tz).date()

    def commodity_of(self, meter_id: str | None, tariff_id: str | None) -> str:
        """A deduction's commodity: its meter's kind, else its tariff's."""
        if meter_id is not None:
            m = self.snapshot.meters.get(meter_id)
            if m is not None:
                return m.kind
        if tariff_id is not None:
            c = self.engine.tariffs.commodity(tariff_id)
            if c is not None:
                return c
        return "electricity"
