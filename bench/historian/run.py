"""Historian: interval points ingested per second on each backend, and the time to query one
month of 15-minute data for 1,000 meters aggregated by day.

How it is measured (one process, one event loop, on this machine's 2 cores shared with the
database server):

- Data: 1,000 electricity meters × 30 days × 96 intervals = 2,880,000 interval records, each as
  the aggregator makes them (5 energy deltas, min/avg/max of power, voltage and current, sample
  counts, flags: 19 fields).
- Ingest: the records are written to the backend in batches of 5,000 (the forwarder's batch
  size), one batch after the other, as the forwarder sends them; points/s = records / wall time.
  SQLite: its own file, WAL, ``INSERT OR REPLACE`` per batch. InfluxDB: Debian's 1.6.7 started
  by the bench on a private port, written through our v1 path (aiohttp, line protocol,
  precision s). Also: the same load through the whole store-and-forward path (spool append of
  one interval's records per transaction, then the forwarder draining the spool).
- Query: ``run_query`` for ``energy_total`` of every meter (1,000 groups) over the month,
  ``interval=1d``, ``agg=sum`` — 30,000 rows as a DataFrame — and the same for the 1,000 meters
  as one building; median of 3 runs, after one warm-up. Whole days come from the day rollups the
  historian keeps (written here from the same records); for comparison, the same query
  aggregating the 2,880,000 intervals in the backend instead.
- Aggregation: tag changes per second through ``IntervalAggregator.feed`` (1,000 meters × 8
  points per poll).

Run: ``python bench/historian/run.py`` (``--days`` and ``--meters`` scale it down).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from historian import (  # noqa: E402
    HistoryQuery,
    InfluxSettings,
    IntervalAggregator,
    IntervalGrid,
    IntervalRecord,
    SqliteSettings,
    make_backend,
    parse_interval,
    run_query,
)
from historian.backends.base import DAY, Backend, Bucketing  # noqa: E402
from historian.forward import Forwarder  # noqa: E402
from historian.rollup import day_rollups  # noqa: E402
from historian.spool import Spool  # noqa: E402
from tags import Quality, TagChange, TagValue  # noqa: E402
from tests.services import InfluxServer, build_dir  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, tzinfo=TZ)
BATCH = 5_000


def interval_records(meters: int, days: int) -> list[list[IntervalRecord]]:
    """One list of records per interval, in time order."""
    out = []
    start0 = int(T0.timestamp())
    for k in range(days * 96):
        start = start0 + 900 * k
        batch = []
        for m in range(meters):
            e = 1000 + (k * 7 + m) % 5000
            values: dict[str, int | float] = {
                "energy_total": e * 4, "energy_sharp": e, "energy_peak": e, "energy_flat": e, "energy_valley": e,
                "power_min": 0.5, "power_avg": 1.25 + m % 3, "power_max": 4.0,
                "voltage_min": 221.0, "voltage_avg": 229.5, "voltage_max": 236.0,
                "current_min": 0.1, "current_avg": 5.5, "current_max": 17.0,
                "samples": 15, "good_samples": 15, "flag_gap": 0, "flag_reset": 0, "flag_first": 0,
            }
            batch.append(IntervalRecord(f"E-{m:04d}", start, 900, values))
        out.append(batch)
    return out


async def ingest(backend: Backend, intervals: list[list[IntervalRecord]]) -> float:
    flat = [r for batch in intervals for r in batch]
    t0 = time.perf_counter()
    for i in range(0, len(flat), BATCH):
        await backend.write_intervals(flat[i:i + BATCH])
    return len(flat) / (time.perf_counter() - t0)


async def ingest_through_spool(backend: Backend, intervals: list[list[IntervalRecord]], spool_path: Path) -> float:
    spool = Spool(spool_path, max_points=10_000_000, chunk_points=BATCH)
    await spool.open()
    forwarder = Forwarder(spool, backend, batch_points=BATCH, timeout_s=120)
    n = sum(len(b) for b in intervals)
    t0 = time.perf_counter()
    for batch in intervals:
        await spool.append("interval", [r.to_json() for r in batch], state="{}")
    drained = await forwarder.drain(3600)
    rate = n / (time.perf_counter() - t0)
    await spool.close()
    assert drained
    return rate


class WithoutRollups:
    """A backend whose days are aggregated from the intervals (what the rollups save)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    async def fetch_days(self, meters, aggregates, start, end):  # type: ignore[no-untyped-def]
        return await self.backend.fetch_buckets(meters, aggregates, start, end, Bucketing(DAY, TZ, 0))


async def query_times(backend: Backend, meters: int, days: int) -> tuple[float, float, int]:
    grid = IntervalGrid(900, TZ)
    ids = [f"E-{m:04d}" for m in range(meters)]
    per_meter = HistoryQuery({m: [m] for m in ids}, ["energy_total"], T0, T0 + timedelta(days=days), parse_interval("1d", 900), "sum")
    building = HistoryQuery({"B1": ids}, ["energy_total"], T0, T0 + timedelta(days=days), parse_interval("1d", 900), "sum")
    frame = await run_query(backend, per_meter, grid)  # warm-up, and a check
    assert len(frame) == meters * days and frame["intervals"].min() == 96, frame.describe()
    times = {}
    for name, q in (("meter", per_meter), ("building", building)):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            await run_query(backend, q, grid)
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
    return times["meter"], times["building"], len(frame)


def aggregation_rate(meters: int) -> float:
    grid = IntervalGrid(900, TZ)
    agg = IntervalAggregator(grid, T0.timestamp(), delay_s=10)
    points = ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "power", "voltage", "current")
    n = 0
    t0 = time.perf_counter()
    for poll in range(60):
        ts = T0 + timedelta(seconds=15 * poll)
        for m in range(meters):
            for i, p in enumerate(points):
                value = TagValue(float(1000 + poll + i), Quality.GOOD, ts, ts)
                agg.feed(TagChange(f"E-{m:04d}.{p}", None, value, True))
                n += 1
    return n / (time.perf_counter() - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    print(f"python {platform.python_version()} on {platform.machine()}, {args.meters:,} meters x {args.days} days x 96 intervals")
    intervals = interval_records(args.meters, args.days)
    n = sum(len(b) for b in intervals)
    day = intervals[:96]
    work = Path(tempfile.mkdtemp(prefix="bench-historian-", dir=build_dir()))
    influx = InfluxServer()
    influx.start()

    def report(label: str, figure: str) -> None:
        print(f"{label:<66}  {figure:>16}", flush=True)

    try:
        sqlite = make_backend(SqliteSettings(work / "historian.db"))
        v1 = make_backend(InfluxSettings(url=influx.url, database="bench", interval_retention_days=0, timeout_s=120))
        rollups = day_rollups([r for batch in intervals for r in batch], TZ)
        for label, backend in (("sqlite", sqlite), ("influx v1", v1)):
            await backend.open()
            await backend.prepare()
            rate = await ingest(backend, intervals)
            report(f"{label}: ingest {n:,} interval points, batches of {BATCH:,}", f"{rate:,.0f} points/s")
            for i in range(0, len(rollups), BATCH):
                await backend.write_days(rollups[i:i + BATCH])
            q_meter, q_building, rows = await query_times(backend, args.meters, args.days)
            report(f"{label}: month by day, per meter ({rows:,} rows)", f"{q_meter:.2f} s")
            report(f"{label}: month by day, one building of {args.meters:,} meters", f"{q_building:.2f} s")
            q_meter, q_building, rows = await query_times(WithoutRollups(backend), args.meters, args.days)  # type: ignore[arg-type]
            report(f"{label}: the same per meter, days aggregated from intervals", f"{q_meter:.2f} s")
            await backend.close()
        for label, settings in (
            ("sqlite", SqliteSettings(work / "historian-2.db")),
            ("influx v1", InfluxSettings(url=influx.url, database="bench2", timeout_s=120)),
        ):
            backend = make_backend(settings)
            await backend.open()
            rate = await ingest_through_spool(backend, day, work / f"spool-{label.replace(' ', '')}.db")
            await backend.close()
            report(f"{label}: one day through spool + forwarder ({sum(len(b) for b in day):,} points)", f"{rate:,.0f} points/s")
        report("aggregator: tag changes fed", f"{aggregation_rate(args.meters):,.0f} changes/s")
    finally:
        influx.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
