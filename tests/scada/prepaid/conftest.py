"""A small site with a real database (SQLite and PostgreSQL), a tag database and an engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scada.config import ScadaConfig, parse_config
from scada.db import Database
from scada.prepaid.accounts import AccountSettings, OpenRequest
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.readings import Reading
from scada.prepaid.reconcile import reconcile
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor
from tags import TagDB, TagMeta, TagWrite

SITE = """
[site]
id = "t"
name = "Test"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B"
name = "B"

[[floors]]
id = "B-F1"
building = "B"
level = 1
name = "F1"

[[rooms]]
id = "R1"
floor = "B-F1"
name = "R1"

[[rooms]]
id = "R2"
floor = "B-F1"
name = "R2"

[[rooms]]
id = "R3"
floor = "B-F1"
name = "R3"

[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "p"
link = "gw"
unit_id = 1
max_power_kw = "10"

[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "p"
link = "gw"
unit_id = 2
max_power_kw = "10"

[[meters]]
id = "W2"
kind = "water"
room = "R2"
profile = "w"
link = "gw"
unit_id = 3

[[meters]]
id = "E3"
kind = "electricity"
room = "R3"
profile = "p"
link = "gw"
unit_id = 4
max_power_kw = "10"
multiplier = "40"
"""

CASHIER = Actor("cashier1", "api", "cashier")
TZ_OFFSET = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ_OFFSET)  # a Monday morning, local time


def test_config(tmp_path: Path, db_url: str, extra: str = "") -> ScadaConfig:
    text = f"""
[site]
name = "Test"
timezone = "Asia/Shanghai"
[database]
url = "{db_url}"
[prepaid.friendly_credit]
windows = []
weekends = false
{extra}
"""
    return parse_config(text, "<test>", tmp_path)


@dataclass
class Site:
    db: Database
    config: ScadaConfig
    assets: AssetRegistry
    tagdb: TagDB
    engine: PrepaidEngine

    def new_engine(self, **kwargs: Any) -> PrepaidEngine:
        """A second engine on the same database (a restart)."""
        return PrepaidEngine(self.config, self.db, self.assets, self.tagdb, **kwargs)

    async def flat_tariff(self, tariff_id: str = "FLAT", price: str = "0.5", commodity: str = "electricity") -> None:
        await self.engine.tariffs.create(tariff_id, tariff_id, commodity, TariffDefinition.model_validate({"price": price}), CASHIER)

    async def open(self, room: str = "R1", *, opening: int = 10_000, tariff: str = "FLAT", water: str | None = None, readings: dict[str, str] | None = None, **settings: Any) -> Any:
        base = self.engine.defaults()
        st = AccountSettings(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **settings})
        req = OpenRequest(room, st, electricity_tariff_id=tariff, water_tariff_id=water, opening_minor=opening,
                          readings={k: Decimal(v) for k, v in (readings or {}).items()})
        return await self.engine.open_account(req, CASHIER)

    async def feed(self, meter: str, values: Iterable[tuple[dt.datetime, str]]) -> None:
        for ts, value in values:
            await self.engine.bill([Reading(meter, Decimal(value), ts)])


def write_meter(tagdb: TagDB, meter: str, ts: dt.datetime, total: float, registers: dict[str, float] | None = None, **kw: Any) -> None:
    """Write a meter's registers as the poller does: one batch, one source timestamp."""
    writes = [TagWrite(f"{meter}.energy_total", total, source_ts=ts, **kw)]
    for period, value in (registers or {}).items():
        writes.append(TagWrite(f"{meter}.energy_{period}", value, source_ts=ts, **kw))
    tagdb.write_many(writes)


def register_meter_tags(tagdb: TagDB, meters: Iterable[str]) -> None:
    for m in meters:
        for point in ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "volume_total"):
            tagdb.register(TagMeta(f"{m}.{point}", meter_id=m, point=point))


@pytest.fixture
async def site(tmp_path: Path, db: Database, db_url: str) -> AsyncIterator[Site]:
    config = test_config(tmp_path, db_url)
    await apply_site(db, parse_toml(SITE, "<site>"), Actor("t", "cli"))
    assets = AssetRegistry(db)
    await assets.load()
    tagdb = TagDB()
    register_meter_tags(tagdb, assets.snapshot.meters)
    engine = PrepaidEngine(config, db, assets, tagdb)
    await engine.load()
    try:
        yield Site(db, config, assets, tagdb, engine)
    finally:
        await engine.supply.idle()
        engine.close()
    # every test leaves a ledger that reconciles
    report = await reconcile(db, config.site.currency_minor_units)
    assert report.ok, [str(m) for m in report.mismatches]
