"""How long an apportionment preview and run, and a day's losses, take for a large site.

How it is measured: one process, one event loop, SQLite files in a temporary directory (WAL,
``synchronous=FULL``, as the server runs them). ``--rooms`` rooms, each with an area, an open
account (a flat tariff) and a meter hanging below one utility meter ``U``; a common meter ``C``.
The historian (a SQLite backend, hourly intervals) holds a month of ``C`` (720 intervals) and
one day of every room's meter and of ``U`` (24 intervals each), written straight into its
backend before the clock starts. Timed, each once after one warm-up:

- ``preview``: a rule sharing ``C``'s month among all rooms by area at each room's own tariff
  (the source's sum from the day rollups, every account's days open, the largest-remainder
  split of the quantity and of the money, each share priced with ``price_consumption``);
- ``run``: the same, posted: one ledger entry per room, the run and its shares, one
  transaction through the prepaid engine (levels judged, views published);
- ``losses``: ``U``'s loss over the day (its consumption and every child's, one history query).

``scada reconcile``'s check runs afterwards and must be clean. Figures are wall-clock seconds
(and shares per second for the run). Run: ``python bench/topology/run.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from historian import Historian, HistorianSettings, IntervalGrid, IntervalRecord, SqliteSettings, make_backend  # noqa: E402
from historian.rollup import day_rollups  # noqa: E402
from scada.config import parse_config  # noqa: E402
from scada.db import Database, async_url  # noqa: E402
from scada.history.service import HistoryService  # noqa: E402
from scada.prepaid.engine import PrepaidEngine  # noqa: E402
from scada.prepaid.models import Account, LedgerEntry  # noqa: E402
from scada.prepaid.reconcile import reconcile  # noqa: E402
from scada.prepaid.tariff_definition import TariffDefinition  # noqa: E402
from scada.site.assets import AssetRegistry  # noqa: E402
from scada.site.models import Building, Floor, Meter, MeterParent, Room, Site  # noqa: E402
from scada.site.tree import ALWAYS  # noqa: E402
from scada.topology.apportion import RuleSpec  # noqa: E402
from scada.topology.service import Topology  # noqa: E402
from scada.users.audit import Actor  # noqa: E402
from tags import TagDB  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NOV = dt.datetime(2026, 11, 1, tzinfo=TZ)
DEC = dt.datetime(2026, 12, 1, tzinfo=TZ)
DAY = dt.datetime(2026, 11, 5, tzinfo=TZ)
ACTOR = Actor("bench", "cli")


def hourly(meter: str, start: dt.datetime, hours: int, kwh: str) -> list[IntervalRecord]:
    micro = int(Decimal(kwh) * 1_000_000)
    t0 = int(start.timestamp())
    return [IntervalRecord(meter, t0 + 3600 * h, 3600, {"energy_total": micro, "samples": 1, "good_samples": 1})
            for h in range(hours)]


async def build(tmp: Path, rooms: int) -> tuple[Database, Topology, PrepaidEngine, Historian]:
    config = parse_config('[site]\nname = "Bench"\ntimezone = "Asia/Shanghai"\n[prepaid.friendly_credit]\nwindows = []\nweekends = false\n',
                          "<bench>", tmp)
    db = Database(async_url(f"sqlite:///{tmp / 'scada.db'}"))
    await db.upgrade()
    opened = dt.datetime(2026, 10, 1, tzinfo=TZ)
    async with db.transaction() as s:
        s.add(Site(id="b", name="Bench", timezone="Asia/Shanghai"))
        await s.flush()
        s.add(Building(id="B", site_id="b", name="B"))
        await s.flush()
        s.add(Floor(id="F", building_id="B", name="F", level=1))
        await s.flush()
        s.add_all(Room(id=f"R{i:05d}", floor_id="F", name=f"R{i}", area_m2=Decimal(20 + i % 40)) for i in range(rooms))
        await s.flush()
        common = {"kind": "electricity", "building_id": "B", "multiplier": Decimal(1), "initial_reading": Decimal(0), "active": True}
        s.add(Meter(id="U", role="utility", profile="", link="", unit_id=0, manual=True, **common))
        s.add(Meter(id="C", role="common", profile="acrel-ddsy1352", link="gw", unit_id=1, **common))
        s.add_all(Meter(id=f"E{i:05d}", role="tenant", room_id=f"R{i:05d}", profile="acrel-ddsy1352", link="gw", unit_id=2 + i % 200,
                        circuit=i, **common) for i in range(rooms))
        await s.flush()
        s.add_all(MeterParent(meter_id=m, parent_id="U", valid_from=ALWAYS, recorded_at=opened, recorded_by="bench", reason="")
                  for m in ["C", *(f"E{i:05d}" for i in range(rooms))])
    assets = AssetRegistry(db)
    await assets.load()
    engine = PrepaidEngine(config, db, assets, TagDB())
    await engine.tariffs.create("FLAT", "Flat", "electricity", TariffDefinition.model_validate({"price": "0.60"}), ACTOR)
    async with db.transaction() as s:
        for i in range(rooms):
            a = Account(room_id=f"R{i:05d}", open_room_id=f"R{i:05d}", state="open", opened_at=opened, opened_by="bench",
                        electricity_tariff_id="FLAT", thresholds=[], balance_minor=1_000_000, remainder=Decimal(0),
                        credit_limit_minor=0, emergency_credit_minor=0, updated_at=opened, contact_name="", language="en",
                        protected=True, friendly_credit=True, auto_reconnect=True, alarm_level=0, supply_state="on",
                        reconnect_pending=False)
            s.add(a)
            await s.flush()
            s.add(LedgerEntry(account_id=a.id, ts=opened, kind="opening", amount_minor=1_000_000, balance_after_minor=1_000_000,
                              actor="bench", source="cli", reason="opening"))
    await engine.load()
    backend = make_backend(SqliteSettings(tmp / "historian.db"))
    historian = Historian(HistorianSettings(interval_s=3600, spool_path=tmp / "spool.db"), backend, IntervalGrid(3600, TZ))
    await historian.open()
    records = hourly("C", NOV, 720, "2.5")
    records += [r for i in range(rooms) for r in hourly(f"E{i:05d}", DAY, 24, "0.25")] + hourly("U", DAY, 24, "0")
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, TZ))
    history = HistoryService(historian, assets, TZ)
    topology = Topology(config, db, assets, engine.tagdb, history=lambda: history, prepaid=lambda: engine,
                        clock=lambda: dt.datetime(2026, 12, 2, 9, tzinfo=TZ))
    return db, topology, engine, historian


async def main(rooms: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        db, topology, engine, historian = await build(Path(d), rooms)
        try:
            spec = RuleSpec("bench", "C", "area", {"building": "B"}, None, "tariff", "balance", "monthly")
            rule = (await topology.apportionment.create_rule(spec, ACTOR)).id
            await topology.apportionment.preview(rule, NOV, DEC)  # warm-up (tariff timelines, caches)
            t = time.perf_counter()
            preview = await topology.apportionment.preview(rule, NOV, DEC)
            t_preview = time.perf_counter() - t
            t = time.perf_counter()
            result = await topology.apportionment.run(rule, "2026-11", ACTOR)
            t_run = time.perf_counter() - t
            t = time.perf_counter()
            [loss] = await topology.losses(DAY, DAY + dt.timedelta(days=1), "U")
            t_losses = time.perf_counter() - t
            report = await reconcile(db, 2)
            assert report.ok, [str(m) for m in report.mismatches][:5]
            assert not result.replayed and len(preview.split.shares) == rooms
        finally:
            await historian.shutdown(1)
            await engine.supply.idle()
            engine.close()
            await db.dispose()
    return {
        "rooms": rooms, "preview_s": round(t_preview, 3), "run_s": round(t_run, 3), "shares_per_s": round(rooms / t_run),
        "losses_s": round(t_losses, 3), "children": rooms + 1, "quantity": format(preview.split.quantity, "f"),
        "python": platform.python_version(),
        "children_consumption": format(loss.children_total, "f") if loss.children_total is not None else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=2000)
    args = parser.parse_args()
    figures = asyncio.run(main(args.rooms))
    for key, value in figures.items():
        print(f"{key:22} {value}")
    out = Path(__file__).resolve().parents[2] / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "topology.json").write_text(json.dumps(figures, indent=1))
