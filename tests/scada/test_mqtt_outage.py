"""A gateway's 30-minute outage, replayed: 1,000 meters behind 10 Sparkplug B gateways on a real
Mosquitto, feeding a real TagDB, the historian (SQLite) and the prepaid engine (SQLite ledger).

Time is driven by the test (the gateways' clocks, the MQTT links', the historian's), so two
hours of 5-minute readings take seconds. Gateway 3 dies at 10:20 (its meters go bad), keeps its
meters' readings while away, is born again at 10:52:30 and replays them. Afterwards:

- history has every 15-minute interval of every meter exactly once, each holding exactly the
  consumption measured in it (the gap filled, no interval flagged as a gap), and each day's
  rollup is the sum of its intervals;
- the ten billed meters behind gateway 3 are billed their consumption exactly once (the replayed
  readings are older than the birth's reading, already billed: history only);
- the tags show the newest value, never a replayed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from historian import Historian, HistorianSettings, IntervalGrid, SqliteSettings, make_backend
from historian.backends.base import Aggregate
from historian.records import MICRO
from protocols.library import load_library
from protocols.modbus.poller import DeviceSpec
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.links import MqttLinks
from protocols.mqtt.simgw import SimDevice, SimGateway
from scada.db import Database, async_url
from scada.prepaid.accounts import OpenRequest
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.models import LedgerEntry
from scada.prepaid.reconcile import reconcile
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor
from tags import Quality, TagDB

from ..services import MosquittoServer
from ..simulation import until
from .prepaid.conftest import test_config as prepaid_config

pytestmark = pytest.mark.slow

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=TZ)
GATEWAYS, PER_GATEWAY, BILLED = 10, 100, 10
STEP_S = 300
PRICE = Decimal("0.5683")
ACTOR = Actor("t", "cli")


def billed_site() -> str:
    out = ['[site]\nid = "o"\nname = "O"\ntimezone = "Asia/Shanghai"\n[[buildings]]\nid = "B"\nname = "B"\n'
           '[[floors]]\nid = "F"\nbuilding = "B"\nlevel = 1\nname = "F"\n']
    for i in range(1, BILLED + 1):
        out.append(f'[[rooms]]\nid = "R{i}"\nfloor = "F"\nname = "{i}"\n'
                   f'[[meters]]\nid = "E-3-{i}"\nkind = "electricity"\nroom = "R{i}"\nprofile = "mqtt-electricity"\n'
                   f'link = "gw-3"\naddress = "m{i}"\n')
    return "".join(out)


class Plant:
    def __init__(self, broker: MosquittoServer, tmp: Path, db: Database) -> None:
        self.now = T0.timestamp()
        self.group = "o" + uuid.uuid4().hex[:8]
        self.db = db
        self.tagdb = TagDB()
        configs = [
            MqttLinkConfig.model_validate({"name": f"gw-{g}", "kind": "mqtt", "host": "127.0.0.1", "port": broker.port,
                                           "group_id": self.group, "keepalive_s": 5})
            for g in range(1, GATEWAYS + 1)
        ]
        self.mqtt = MqttLinks(self.tagdb, configs, load_library(), clock=lambda: datetime.fromtimestamp(self.now, UTC))
        self.mqtt.set_devices(
            DeviceSpec(f"E-{g}-{i}", "mqtt-electricity", f"gw-{g}", 0, address=f"m{i}")
            for g in range(1, GATEWAYS + 1) for i in range(1, PER_GATEWAY + 1)
        )
        self.kwh = {f"E-{g}-{i}": Decimal(1000 + i) for g in range(1, GATEWAYS + 1) for i in range(1, PER_GATEWAY + 1)}
        self.readings: dict[str, list[tuple[float, Decimal]]] = {m: [] for m in self.kwh}
        self.gateways = [
            SimGateway("127.0.0.1", broker.port, f"gw-{g}",
                       [SimDevice(f"m{i}", {"energy_total": float(self.kwh[f"E-{g}-{i}"])}) for i in range(1, PER_GATEWAY + 1)],
                       group=self.group, keepalive=5, clock=lambda: int(self.now * 1000))
            for g in range(1, GATEWAYS + 1)
        ]
        settings = HistorianSettings(interval_s=900, close_delay_s=10, spool_path=tmp / "spool.db")
        self.historian = Historian(settings, make_backend(SqliteSettings(tmp / "historian.db")), IntervalGrid(900, TZ),
                                   clock=lambda: self.now)
        self.sub = self.tagdb.subscribe(self.historian.wants, include_reported=True, include_late=True, maxsize=10**6)

    async def synced(self) -> None:
        """Wait until the links took every message the gateways sent, then let history follow."""
        for gw in self.gateways:
            await gw.flush()
        sent = sum(gw.published for gw in self.gateways)
        await until(lambda: sum(g.stats.requests for g in self.mqtt.gateways.values()) >= sent, 20, "messages taken")
        self.historian.feed(self.sub.drain())
        await self.historian.close_due()
        while await self.historian.forwarder.send_once():
            pass

    async def step(self) -> None:
        self.now += STEP_S
        for g, gw in enumerate(self.gateways, 1):
            for i in range(1, PER_GATEWAY + 1):
                meter = f"E-{g}-{i}"
                self.kwh[meter] += Decimal(i % 7 + 1) / 100
                self.readings[meter].append((self.now, self.kwh[meter]))
                gw.read(f"m{i}", {"energy_total": float(self.kwh[meter])}, int(self.now * 1000))
        await self.synced()

    def consumption(self, meter: str, start: int, end: int) -> int:
        before = [v for t, v in self.readings[meter] if t < start]
        upto = [v for t, v in self.readings[meter] if t < end]
        return int((upto[-1] - before[-1]) * MICRO)


@contextlib.asynccontextmanager
async def plant(broker: MosquittoServer, tmp: Path) -> AsyncIterator[tuple[Plant, PrepaidEngine]]:
    db = Database(async_url(f"sqlite:///{tmp / 'scada.db'}"))
    await db.upgrade()
    p = Plant(broker, tmp, db)
    await p.historian.open()
    config = prepaid_config(tmp, f"sqlite:///{tmp / 'scada.db'}")
    await apply_site(db, parse_toml(billed_site(), "<site>"), ACTOR)
    assets = AssetRegistry(db)
    await assets.load()
    engine = PrepaidEngine(config, db, assets, p.tagdb)
    await engine.load()
    await engine.tariffs.create("FLAT", "Flat", "electricity", TariffDefinition.model_validate({"price": str(PRICE)}), ACTOR)
    for i in range(1, BILLED + 1):
        await engine.open_account(OpenRequest(f"R{i}", engine.defaults(), electricity_tariff_id="FLAT", opening_minor=100_000), ACTOR)
    links = asyncio.create_task(p.mqtt.run(), name="mqtt")
    billing = asyncio.create_task(engine.run_billing(), name="billing")
    try:
        await until(lambda: all(b.connected for b in p.mqtt.brokers), 10, "broker")
        yield p, engine
    finally:
        for gw in p.gateways:
            await gw.stop()
        for task in (links, billing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        p.sub.close()
        await p.historian.shutdown(flush_timeout_s=2)
        await engine.supply.idle()
        engine.close()
        report = await reconcile(db, config.site.currency_minor_units)
        assert report.ok, [str(m) for m in report.mismatches]
        await db.dispose()


async def test_a_30_minute_outage_replayed_fills_history_once_and_bills_once(tmp_path: Path, mqtt_broker: MosquittoServer) -> None:
    async with plant(mqtt_broker, tmp_path) as (p, engine):
        for gw in p.gateways:
            await gw.start()
        await p.synced()
        first = {m: p.kwh[m] for m in p.kwh}  # the births: each meter's first reading (the billing baseline)
        for _ in range(4):  # 10:05 .. 10:20
            await p.step()
        gw3 = p.gateways[2]
        p.now += 1
        await gw3.kill()  # NDEATH: gateway 3's meters bad
        await until(lambda: p.tagdb.read("E-3-1.energy_total").quality is Quality.BAD, 5, "meters bad")
        p.now -= 1
        for _ in range(6):  # 10:25 .. 10:50: gateway 3 keeps its readings
            await p.step()
        assert len(gw3.buffer) == 6 * PER_GATEWAY
        p.now += 150
        await gw3.start()  # 10:52:30: born again (its meters' current values), then the replay
        await p.synced()
        p.now -= 150
        assert p.tagdb.read("E-3-1.energy_total").source_ts == datetime.fromtimestamp(T0.timestamp() + 3150, UTC)
        for _ in range(14):  # 10:55 .. 12:00
            await p.step()
        p.now += 900
        await p.synced()  # the interval 11:45-12:00 closes

        # history: every interval of every meter once, with the consumption measured in it
        start, end = int(T0.timestamp()) + 900, int(T0.timestamp()) + 2 * 3600
        backend = p.historian.backend
        frame = await backend.fetch_intervals(list(p.kwh), ["energy_total", "flag_gap"], start, end)
        assert len(frame) == len(p.kwh) * (end - start) // 900
        assert not frame.duplicated(["time", "meter"]).any()
        for row in frame.itertuples(index=False):
            assert (int(row.energy_total), int(row.flag_gap)) == (p.consumption(row.meter, row.time, row.time + 900), 0), row
        assert p.historian.aggregator.revised > 0
        day = int(datetime(2024, 5, 1, tzinfo=TZ).timestamp())
        days = await backend.fetch_days(list(p.kwh), [Aggregate("energy_total", "sum")], day, day + 86_400)
        intervals = await backend.fetch_intervals(list(p.kwh), ["energy_total"], day, day + 86_400)
        sums = intervals.groupby("meter")["energy_total"].sum()
        assert {r.meter: int(r.energy_total__sum) for r in days.itertuples(index=False)} == {m: int(v) for m, v in sums.items()}

        # billing: each billed meter's consumption since its first reading, exactly once
        await until(lambda: all(p.tagdb.read(f"room:R{i}.balance").value is not None for i in range(1, BILLED + 1)), 5, "balances")
        async with p.db.sessions() as s:
            rows = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "deduction"))).all()
        for i in range(1, BILLED + 1):
            meter = f"E-3-{i}"
            mine = sorted((r for r in rows if r.meter_id == meter), key=lambda r: r.reading_ts)
            used = p.kwh[meter] - first[meter]
            expected = (used * PRICE).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert -sum(r.amount_minor for r in mine) == int(expected * 100), meter
            assert mine[0].reading_from == first[meter] and mine[-1].reading_to == p.kwh[meter]
            # consecutive: each deduction starts where the one before ended (nothing billed twice)
            assert all(a.reading_to == b.reading_from for a, b in zip(mine, mine[1:], strict=False))
        # the displays show the newest value
        assert p.tagdb.read("E-3-1.energy_total").value == float(p.kwh["E-3-1"])
