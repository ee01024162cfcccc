"""Alarm engine figures: a gateway flood, a burst of individual alarms, acknowledgements, and
the cost of condition-tag traffic that raises nothing.

How it is measured: one process, one event loop, SQLite in WAL mode (synchronous=FULL) in a
temporary folder, the real TagDB and asset registry. A site of ``--meters`` electricity meters
is imported, ``--per-link`` meters per link. Delays are 0 and the clock is manual, so each
figure is the engine's own work: ``write_many`` of the tags, then ``AlarmEngine.settle()``
(evaluate, reconcile, one transaction for the batch, events, count tags), timed with
``perf_counter``; CPU is process time over the same span. Cases:

- flood: every meter's ``comm_ok`` and every link's go False in one batch → one alarm per link;
  then all recover;
- burst: ``--burst`` meters on healthy links lose communication in one batch (one alarm each,
  one transaction); ``--single`` of them are acknowledged one by one (one transaction each),
  the rest with ``acknowledge_many`` (one transaction);
- churn: every meter's ``power`` changes below its limit (``--rounds`` rounds): readings/s that
  raise nothing.

Run: ``python bench/alarms/run.py`` (``--meters 2000`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scada.alarms.classes import BUILTIN  # noqa: E402
from scada.alarms.clock import ManualClock  # noqa: E402
from scada.alarms.config import AlarmsConfig  # noqa: E402
from scada.alarms.engine import AlarmEngine  # noqa: E402
from scada.db import Database, async_url  # noqa: E402
from scada.site.assets import AssetRegistry  # noqa: E402
from scada.site.models import Building, Floor, Meter, Room, Site  # noqa: E402
from scada.users.audit import Actor  # noqa: E402
from tags import DataType, TagDB, TagMeta, TagWrite  # noqa: E402


async def make_site(db: Database, meters: int, per_link: int) -> None:
    """Rows straight into the registry's tables (the site importer audits row by row: slow)."""
    async with db.transaction() as s:
        for row in (Site(id="b", name="B", timezone="Asia/Shanghai"), Building(id="B1", site_id="b", name="B1"),
                    Floor(id="F1", building_id="B1", name="F1", level=1)):
            s.add(row)
            await s.flush()
        s.add_all(Room(id=f"R{i:05d}", floor_id="F1", name=str(i)) for i in range(meters))
        await s.flush()
        s.add_all(
            Meter(id=f"E{i:05d}", kind="electricity", role="tenant", room_id=f"R{i:05d}", building_id="B1", profile="p",
                  link=f"L{i // per_link:03d}", unit_id=i % per_link % 247 + 1, multiplier=Decimal(1),
                  initial_reading=Decimal(0), max_power_kw=Decimal(10), active=True)
            for i in range(meters)
        )


class Span:
    def __enter__(self) -> Span:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(async_url(f"sqlite:///{tmp}/bench.db"))
        await db.upgrade()
        await make_site(db, args.meters, args.per_link)
        assets = AssetRegistry(db)
        await assets.load()
        tagdb = TagDB()
        meters = sorted(assets.snapshot.meters)
        links = sorted({m.link for m in assets.snapshot.meters.values()})
        for m in meters:
            tagdb.register(TagMeta(f"{m}.comm_ok", DataType.BOOL))
            tagdb.register(TagMeta(f"{m}.power", DataType.FLOAT, unit="kW"))
        for link in links:
            tagdb.register(TagMeta(f"link:{link}.comm_ok", DataType.BOOL))
        config = AlarmsConfig.model_validate({"classes": {c: {"delay_on_s": 0.0, "delay_off_s": 0.0} for c in BUILTIN}})
        engine = AlarmEngine(db, tagdb, assets, config, clock=ManualClock())
        await engine.start()
        try:
            tagdb.write_many([TagWrite(f"{m}.comm_ok", True) for m in meters] + [TagWrite(f"link:{link}.comm_ok", True) for link in links])
            await engine.settle()

            with Span() as s:
                tagdb.write_many([TagWrite(f"{m}.comm_ok", False) for m in meters] + [TagWrite(f"link:{link}.comm_ok", False) for link in links])
                await engine.settle()
            standing = len(engine.active())
            print(f"flood: {args.meters} meters on {len(links)} links down in one batch -> {standing} standing alarms; "
                  f"{s.wall * 1000:.0f} ms wall, {s.cpu * 1000:.0f} ms CPU ({args.meters / s.wall:,.0f} condition changes/s)")
            with Span() as s:
                tagdb.write_many([TagWrite(f"{m}.comm_ok", True) for m in meters] + [TagWrite(f"link:{link}.comm_ok", True) for link in links])
                await engine.settle()
            print(f"flood recovery: {s.wall * 1000:.0f} ms wall, {s.cpu * 1000:.0f} ms CPU; "
                  f"standing {len(engine.active())} (cleared, unacknowledged)")
            for alarm in engine.active():
                await engine.acknowledge(alarm.id, Actor("bench", "api", "admin"))

            burst = meters[: args.burst]
            with Span() as s:
                tagdb.write_many([TagWrite(f"{m}.comm_ok", False) for m in burst])
                await engine.settle()
            print(f"burst: {len(burst)} individual alarms in one batch: {s.wall * 1000:.0f} ms wall, {s.cpu * 1000:.0f} ms CPU "
                  f"({len(burst) / s.wall:,.0f} alarms/s, {engine.transitions_written} transitions stored so far)")
            actor = Actor("bench", "api", "admin")
            ids = [a.id for a in engine.active()]
            single, bulk = ids[: args.single], ids[args.single :]
            with Span() as s:
                for alarm_id in single:
                    await engine.acknowledge(alarm_id, actor, "bench")
            print(f"acknowledge: {len(single)} one by one (read, update, transition, audit: one transaction each): "
                  f"{len(single) / s.wall:,.0f} acks/s, {s.cpu / len(single) * 1e6:.0f} µs CPU each (incl. the SQLite thread)")
            with Span() as s:
                results = await engine.acknowledge_many(bulk, actor, "bench")
            assert all(not isinstance(r, Exception) for _, r in results)
            print(f"acknowledge_many: {len(bulk)} in one transaction: {s.wall * 1000:.0f} ms wall, "
                  f"{len(bulk) / s.wall:,.0f} acks/s")

            rounds = args.rounds
            with Span() as s:
                for r in range(rounds):
                    tagdb.write_many([TagWrite(f"{m}.power", 1.0 + (r % 7) * 0.5) for m in meters])
                    await engine.settle()
            n = rounds * len(meters)
            print(f"churn: {n:,} power readings below the limit: {n / s.wall:,.0f} readings/s, "
                  f"{s.cpu / n * 1e6:.1f} µs CPU each (TagDB write + evaluation; nothing stored)")
        finally:
            await engine.close()
            await db.dispose()
    print(f"(python {platform.python_version()}, {platform.machine()}, SQLite)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--per-link", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--single", type=int, default=100, help="acknowledgements one by one (the rest in one go)")
    asyncio.run(main(parser.parse_args()))
