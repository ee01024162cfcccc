"""Reports: a month of 15-minute data for 10,000 meters, the daily energy report by room — wall
time and peak memory. Goal: under 5 s and under 1 GiB on this machine.

How it is measured:

- Site: ``--meters`` electricity meters, one per room, 20 rooms a floor, 25 floors a building,
  imported into a SQLite database (WAL) with an open account per room.
- History: ``--days`` days × 96 intervals of 15 minutes per meter (``--meters`` × 2,880 interval
  rows for a month: energy_total and the four time-of-use registers, valley 00–08, peak 08–18,
  flat 18–24), written straight into the historian's SQLite file, and the day rollups the
  historian keeps for whole days (one row per meter and day), computed from the same numbers.
- Ledger: ``--deductions`` deductions per meter and day (each with its priced time-of-use lines,
  as the biller writes them), written straight into the ledger table.
- The ledger day rollup: before measuring, a child process upgrades the database and folds the
  ledger into it (``LedgerRollup.fold``), as a running server does in the background every
  ``[reports] ledger_rollup_every_s``; its time is printed (the first run folds the whole month,
  later runs nothing). ``--no-rollup`` measures the report without it (it then reads every
  deduction from the ledger).
- Measured: in a fresh child process (so that its peak resident memory belongs to the report),
  ``ReportService.run`` of ``energy`` from the 1st to the last day, ``interval=day``,
  ``group=room`` — the same call the API makes — and then the JSON rows rendered in chunks as the
  streamed answer would (``json.dumps`` per chunk): wall time (``time.perf_counter``), CPU
  (``time.process_time``), peak RSS (``ru_maxrss``) and the RSS before the report (after imports),
  median wall time of ``--runs`` runs in that process.

The data are generated once into build/bench/reports-data/<meters>x<days>x<deductions>/ and
reused. Figures are printed and written to build/bench/reports.json.
Run: ``python bench/reports/run.py`` (``--meters 1000`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TZ = ZoneInfo("Asia/Shanghai")
FIRST = dt.date(2026, 10, 1)
PRICES = {"valley": 300_000, "peak": 1_000_000, "flat": 600_000}  # millionths of a yuan per kWh


def period_of(hour: int) -> str:
    return "valley" if hour < 8 else "peak" if hour < 18 else "flat"


def site_toml(meters: int) -> str:
    out = ['[site]\nid = "bench"\nname = "Bench"\ntimezone = "Asia/Shanghai"\n']
    buildings = -(-meters // 500)
    for b in range(buildings):
        out.append(f'[[buildings]]\nid = "B{b}"\nname = "B{b}"\n')
        for f in range(25):
            if b * 500 + f * 20 >= meters:
                break
            out.append(f'[[floors]]\nid = "B{b}-F{f}"\nbuilding = "B{b}"\nlevel = {f + 1}\nname = "F{f}"\n')
    for m in range(meters):
        b, f = m // 500, (m % 500) // 20
        out.append(f'[[rooms]]\nid = "R{m:05d}"\nfloor = "B{b}-F{f}"\nname = "R{m:05d}"\n')
        out.append(f'[[meters]]\nid = "E{m:05d}"\nkind = "electricity"\nroom = "R{m:05d}"\nprofile = "acrel-ddsy1352"\n'
                   f'link = "gw{m // 200}"\nunit_id = {m % 200 + 1}\n')
    return "\n".join(out)


def interval_kwh_micro(m: int, k: int) -> int:
    return 10_000 + (m * 7 + k * 13) % 40_000  # 0.01–0.05 kWh per 15 minutes


async def generate(folder: Path, meters: int, days: int, deductions: int) -> None:
    from sqlalchemy import insert

    from historian import SqliteSettings, make_backend
    from historian.rollup import DAY_FLOAT_FIELDS, DAY_INT_FIELDS
    from scada.db import Database
    from scada.db.engine import async_url
    from scada.prepaid.models import Account, LedgerEntry
    from scada.site.importer import apply_site, parse_toml
    from scada.users.audit import Actor

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db = Database(async_url(f"sqlite:///{folder / 'scada.db'}"))
    await db.upgrade()
    await apply_site(db, parse_toml(site_toml(meters), "<bench>"), Actor("bench", "cli"))
    now = dt.datetime(2026, 9, 30, tzinfo=dt.UTC)
    async with db.transaction() as s:
        await s.execute(insert(Account), [
            {"room_id": f"R{m:05d}", "open_room_id": f"R{m:05d}", "state": "open", "opened_at": now, "opened_by": "bench",
             "thresholds": [], "updated_at": now, "balance_minor": 0} for m in range(meters)])
    print(f"  site and accounts: {time.perf_counter() - t0:.1f} s", flush=True)
    # history: the intervals and the day rollups
    backend = make_backend(SqliteSettings(folder / "history.db"))
    await backend.open()
    await backend.close()
    conn = sqlite3.connect(folder / "history.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    start0 = int(dt.datetime.combine(FIRST, dt.time(), TZ).timestamp())
    t0 = time.perf_counter()
    day_rows = []
    for d in range(days):
        def rows(d: int = d):  # noqa: ANN202
            for m in range(meters):
                meter = f"E{m:05d}"
                for k in range(96):
                    e = interval_kwh_micro(m, d * 96 + k)
                    p = period_of(k // 4)
                    yield (meter, start0 + (d * 96 + k) * 900, 900, e, None if p != "sharp" else e, e if p == "peak" else 0,
                           e if p == "flat" else 0, e if p == "valley" else 0)
        conn.executemany("INSERT INTO intervals (meter, start, length, energy_total, energy_sharp, energy_peak, energy_flat, energy_valley) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())
        conn.commit()
        day_start = start0 + d * 86_400
        for m in range(meters):
            es = [interval_kwh_micro(m, d * 96 + k) for k in range(96)]
            per = {p: [e if period_of(k // 4) == p else 0 for k, e in enumerate(es)] for p in ("peak", "flat", "valley")}
            values: dict[str, int | float | None] = dict.fromkeys(DAY_INT_FIELDS + DAY_FLOAT_FIELDS)
            for name, series in (("energy_total", es), ("energy_peak", per["peak"]), ("energy_flat", per["flat"]), ("energy_valley", per["valley"])):
                values.update({f"{name}__sum": sum(series), f"{name}__count": 96, f"{name}__min": min(series), f"{name}__max": max(series)})
            day_rows.append((f"E{m:05d}", day_start, 86_400, *[values[f] for f in DAY_INT_FIELDS + DAY_FLOAT_FIELDS]))
    cols = DAY_INT_FIELDS + DAY_FLOAT_FIELDS
    conn.executemany(f"INSERT INTO days (meter, start, length, {', '.join(cols)}) VALUES ({', '.join('?' * (3 + len(cols)))})", day_rows)
    conn.commit()
    conn.close()
    print(f"  history ({meters * days * 96:,} intervals, {len(day_rows):,} day rollups): {time.perf_counter() - t0:.1f} s", flush=True)
    # the ledger: deductions with their priced lines
    t0 = time.perf_counter()
    step = 86_400 // deductions
    batch = []
    n = 0
    for d in range(days):
        for j in range(deductions):
            ts = dt.datetime.fromtimestamp(start0 + d * 86_400 + (j + 1) * step - 60, dt.UTC)
            hour = ts.astimezone(TZ).hour
            for m in range(meters):
                kwh = 100_000 + (m * 31 + j) % 900_000  # millionths
                p = period_of(hour)
                cost = kwh * PRICES[p]  # 10⁻¹² yuan
                amount = -round(cost / 10**10)
                lines = [{"quantity": f"{kwh / 1e6:.6f}", "price": f"{PRICES[p] / 1e6:.2f}", "amount": f"{cost / 1e12:.12f}", "period": p}]
                n += 1
                batch.append({"account_id": m + 1, "ts": ts, "kind": "deduction", "amount_minor": amount, "balance_after_minor": 0,
                              "actor": "engine", "source": "engine", "reason": "consumption", "meter_id": f"E{m:05d}", "segment": 1,
                              "reading_ts": ts, "idem_key": f"reading:E{m:05d}:1:{d}:{j}", "detail": {"lines": lines}})
                if len(batch) >= 20_000:
                    async with db.transaction() as s:
                        await s.execute(insert(LedgerEntry), batch)
                    batch = []
    if batch:
        async with db.transaction() as s:
            await s.execute(insert(LedgerEntry), batch)
    await db.dispose()
    print(f"  ledger ({n:,} deductions): {time.perf_counter() - t0:.1f} s", flush=True)
    (folder / "ready").write_text("ok")


async def fold(folder: Path, drop: bool) -> dict[str, float]:
    from sqlalchemy import delete

    from scada.db import Database
    from scada.db.engine import async_url
    from scada.reports.models import LedgerDay
    from scada.reports.models import LedgerRollup as RollupRow
    from scada.reports.rollup import LedgerRollup

    db = Database(async_url(f"sqlite:///{folder / 'scada.db'}"))
    await db.upgrade()
    if drop:
        async with db.transaction() as s:
            await s.execute(delete(LedgerDay))
            await s.execute(delete(RollupRow))
        return {"entries": 0, "fold_s": 0.0, "fold_cpu_s": 0.0}
    t0, c0 = time.perf_counter(), time.process_time()
    entries = await LedgerRollup(db, TZ).fold()
    figures = {"entries": entries, "fold_s": time.perf_counter() - t0, "fold_cpu_s": time.process_time() - c0,
               "fold_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    await db.dispose()
    return figures


async def measure(folder: Path, days: int, runs: int) -> dict[str, float]:
    from historian import IntervalGrid, SqliteSettings, make_backend
    from historian.query import run_query
    from scada.db import Database
    from scada.db.engine import async_url
    from scada.reports.config import ReportsConfig
    from scada.reports.service import ReportService
    from scada.reports.sources import Sources
    from scada.site.assets import AssetRegistry

    db = Database(async_url(f"sqlite:///{folder / 'scada.db'}"))
    registry = AssetRegistry(db)
    await registry.load()
    backend = make_backend(SqliteSettings(folder / "history.db"))
    await backend.open()
    grid = IntervalGrid(900, TZ)

    async def history(query):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return await run_query(backend, query, grid, max_rows=50_000_000)

    sources = Sources(db, lambda: registry.snapshot, history, TZ, 2, "CNY", ReportsConfig(max_rows=5_000_000))
    service = ReportService(sources)
    last = FIRST + dt.timedelta(days=days - 1)
    params = {"from": FIRST.isoformat(), "to": last.isoformat(), "interval": "day", "group": "room"}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls, cpus, render = [], [], []
    rows = 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        report = await service.report("energy", params)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        t1 = time.perf_counter()
        size = 0
        for chunk in report.json_chunks():
            size += len(json.dumps(chunk, ensure_ascii=False))
        render.append(time.perf_counter() - t1)
        rows = report.row_count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await backend.close()
    await db.dispose()
    return {"rows": rows, "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "json_render_s": statistics.median(render),
            "json_mb": size / 1e6, "rss_before_mb": rss_before, "peak_rss_mb": peak, "money_total": report.totals.get("money") / 100}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--meters", type=int, default=10_000)
    p.add_argument("--days", type=int, default=31)
    p.add_argument("--deductions", type=int, default=4, help="deductions per meter and day")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-rollup", action="store_true", help="measure without the ledger day rollup (it is dropped)")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--fold", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(Path(args.measure), args.days, args.runs))))
        return
    if args.fold:
        print(json.dumps(asyncio.run(fold(Path(args.fold), args.no_rollup))))
        return
    folder = ROOT / "build" / "bench" / "reports-data" / f"{args.meters}x{args.days}x{args.deductions}"
    if not (folder / "ready").exists():
        print(f"generating {args.meters:,} meters × {args.days} days into {folder.relative_to(ROOT)} (once)", flush=True)
        asyncio.run(generate(folder, args.meters, args.days, args.deductions))
    out = subprocess.run([sys.executable, __file__, "--fold", str(folder), *(["--no-rollup"] if args.no_rollup else [])],
                         check=True, capture_output=True, text=True)
    folded = json.loads(out.stdout.strip().splitlines()[-1])
    if args.no_rollup:
        print("ledger day rollup dropped: the report reads every deduction")
    else:
        print(f"ledger day rollup: folded {folded['entries']:,} new entries in {folded['fold_s']:.1f} s "
              f"(CPU {folded['fold_cpu_s']:.1f} s{', peak RSS {:.0f} MiB'.format(folded['fold_peak_rss_mb']) if folded['entries'] else ''})")
    out = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--days", str(args.days), "--runs", str(args.runs)],
                         check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures.update({"rollup": not args.no_rollup, "folded": folded})
    figures.update({"meters": args.meters, "days": args.days, "intervals": args.meters * args.days * 96,
                    "deductions": args.meters * args.days * args.deductions})
    print(f"energy report, {args.days} days × {args.meters:,} rooms by day ({figures['rows']:,} rows; "
          f"{figures['intervals']:,} intervals, {figures['deductions']:,} deductions):")
    print(f"  wall {figures['wall_s']:.2f} s (median of {args.runs}), CPU {figures['cpu_s']:.2f} s; JSON rendering {figures['json_render_s']:.2f} s "
          f"({figures['json_mb']:.0f} MB)")
    print(f"  peak RSS {figures['peak_rss_mb']:.0f} MiB (of which {figures['rss_before_mb']:.0f} MiB before the report: interpreter, imports)")
    print(f"  goal: under 5 s and under 1 GiB → {'met' if figures['wall_s'] < 5 and figures['peak_rss_mb'] < 1024 else 'NOT met'}")
    out_dir = ROOT / "build" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reports.json").write_text(json.dumps(figures, indent=1))
    print(f"(python {platform.python_version()}, {platform.machine()}, SQLite) → build/bench/reports.json")


if __name__ == "__main__":
    main()
