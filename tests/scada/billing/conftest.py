"""The prepaid test site (SQLite and PostgreSQL) with the back office on top, and a clock the
tests drive."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from scada.billing.config import BillingConfig
from scada.billing.service import BillingService
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.readings import Reading
from scada.site.models import Room
from scada.users.audit import Actor

from ..prepaid.conftest import Site, site  # noqa: F401  (the fixture)

TZ8 = dt.timezone(dt.timedelta(hours=8))
MANAGER = Actor("manager1", "api", "cashier")
SUPERVISOR = Actor("super1", "api", "supervisor")
AREAS = {"R1": Decimal("45.5"), "R2": Decimal("32.0"), "R3": Decimal("24.5")}


@dataclass
class Billing:
    site: Site
    svc: BillingService

    @property
    def engine(self) -> Any:
        return self.site.engine

    def at(self, t: dt.datetime) -> None:
        """Set the back office's clock."""
        self.svc.clock = lambda: t

    async def move_in(self, room: str, day: dt.datetime) -> None:
        """The account of ``room`` counts as opened at ``day`` (tests set history up this way)."""
        async with self.site.db.transaction() as s:
            await s.execute(update(Account).where(Account.open_room_id == room).values(opened_at=day.astimezone(dt.UTC)))

    async def bill_readings(self, readings: list[Reading], now: dt.datetime | None = None) -> None:
        """Bill readings through the live deduction path (the engine's biller), posted at ``now``."""
        async with self.site.engine._lock:
            async with self.site.db.transaction() as s:
                await self.site.engine.biller.bill(s, readings, now or dt.datetime.now(dt.UTC))

    async def account(self, room: str) -> Account:
        async with self.site.db.sessions() as s:
            a = await s.scalar(select(Account).where(Account.room_id == room).order_by(Account.id.desc()).limit(1))
            assert a is not None
            return a

    async def entries(self, room: str, kind: str | None = None) -> list[LedgerEntry]:
        a = await self.account(room)
        async with self.site.db.sessions() as s:
            q = select(LedgerEntry).where(LedgerEntry.account_id == a.id).order_by(LedgerEntry.id)
            if kind is not None:
                q = q.where(LedgerEntry.kind == kind)
            return list((await s.scalars(q)).all())


def billing_config(**kw: Any) -> BillingConfig:
    return BillingConfig.model_validate({"dunning": {"grace_days": 0}, **kw})


@pytest.fixture
async def billing(site: Site) -> AsyncIterator[Billing]:  # noqa: F811
    async with site.db.transaction() as s:
        for room, area in AREAS.items():
            await s.execute(update(Room).where(Room.id == room).values(area_m2=area))
    await site.assets.load()
    svc = BillingService(billing_config(), site.db, site.engine, site.assets)
    svc.attach()
    try:
        yield Billing(site, svc)
    finally:
        svc.detach()
