"""What every back-office operation needs: the database, the prepaid engine, the site, the
settings, and the sources of what waits for a bill (:class:`PendingLines`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.config import BillingConfig
from scada.db import Database
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import format_minor
from scada.site.assets import AssetRegistry, AssetSnapshot
from scada.users.audit import Actor

__all__ = ["BillingContext", "PendingLines"]


class PendingLines(Protocol):
    """A source of amounts that wait for an account's bill, kept by a part above the back office
    (the meter topology's apportioned shares settled ``on the bill``).

    The billing run calls :meth:`post_pending` for each account it bills, inside its own
    transaction (the account's row is locked): the source posts what the account owes up to the
    billed month (``period``, ``YYYY-MM``) as ledger entries dated ``at`` (the month's last
    instant), marks those items taken in the same session, and returns the new entries. Each item
    is posted once: a second call finds nothing left; a preview's transaction is rolled back."""

    async def post_pending(self, s: AsyncSession, account: Account, period: str, at: dt.datetime, actor: Actor) -> list[LedgerEntry]: ...


@dataclass(frozen=True)
class BillingContext:
    db: Database
    engine: PrepaidEngine
    assets: AssetRegistry
    cfg: BillingConfig
    pending: list[PendingLines] = field(default_factory=list)  # asked by every billing run, in order

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
