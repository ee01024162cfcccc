"""Readings priced and committed per second by the prepaid engine, on SQLite and PostgreSQL.

How it is measured: the real engine (``PrepaidEngine``, its billing task on the event loop and
its transactions in the billing process, from 1,000 meters, or on the billing loop's thread, as
in the server) on a real
database (SQLite: a file in a temporary directory, WAL, ``synchronous=FULL`` as the server runs
it; PostgreSQL: a throw-away server started like the test suite's, but with ``fsync`` and
``full_page_writes`` on as a production server runs). ``--meters`` rooms each get
a meter and an open account on a time-of-use tariff. A writer task plays the poller: each round
it writes every meter's five energy registers (total, sharp, peak, flat, valley) in one
``write_many`` with one source timestamp, one minute of meter time after the previous round,
with 0.05 kWh more. The engine's billing task consumes the tag stream as in the server (one
transaction per batch of pending readings, at most ``--batch`` readings). The figure is
readings billed (priced from the TOU registers, deducted with the carried remainder, the
meter's cursor and the account's balance moved, the ledger row written, all committed) per
second of wall time from the first write of round 1 until the last reading is committed;
CPU time is the process's (its threads included) and the billing process's (``--billing-in``:
"auto" bills in a process of its own from 1,000 meters, as the server does); PostgreSQL's
server is a separate process and not counted. The same run with ``--batch 1`` shows what one commit per
reading costs (there each reading's seven statements and the commit are separate round trips
to the SQLite driver's thread). ``scada reconcile``'s check runs afterwards and must be clean.
Run: ``python bench/prepaid/run.py`` (``make bench`` runs every bench); the figures go to
``build/bench/prepaid.json``.
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
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import func, select  # noqa: E402

from scada.config import parse_config  # noqa: E402
from scada.core.gctune import freeze_startup, tune_for_server  # noqa: E402
from scada.db import Database, async_url  # noqa: E402
from scada.prepaid.accounts import OpenRequest  # noqa: E402
from scada.prepaid.demo import DEMO_TOU  # noqa: E402
from scada.prepaid.engine import PrepaidEngine  # noqa: E402
from scada.prepaid.models import LedgerEntry  # noqa: E402
from scada.prepaid.reconcile import reconcile  # noqa: E402
from scada.prepaid.tariff_definition import TariffDefinition  # noqa: E402
from scada.site.assets import AssetRegistry  # noqa: E402
from scada.site.models import Building, Floor, Meter, Room, Site  # noqa: E402
from scada.users.audit import Actor  # noqa: E402
from tags import TagDB, TagMeta, TagWrite  # noqa: E402

ACTOR = Actor("bench", "cli")
POINTS = ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley")


async def make_site(db: Database, meters: int) -> None:
    async with db.transaction() as s:
        s.add(Site(id="bench", name="Bench", timezone="Asia/Shanghai"))
        await s.flush()
        s.add(Building(id="B", site_id="bench", name="B"))
        await s.flush()
        s.add(Floor(id="F", building_id="B", name="F", level=1))
        await s.flush()
        s.add_all([Room(id=f"R{i:05d}", floor_id="F", name=f"R{i}") for i in range(meters)])
        await s.flush()
        s.add_all([
            Meter(id=f"E{i:05d}", kind="electricity", role="tenant", room_id=f"R{i:05d}", building_id="B", profile="p",
                  link="gw", unit_id=1 + i % 247, multiplier=Decimal(1), initial_reading=Decimal(0), max_power_kw=Decimal(20), active=True)
            for i in range(meters)
        ])


class Wire:
    """Counts what the engine sends to PostgreSQL: the statements SQLAlchemy runs (an
    ``executemany`` is one) and the protocol messages on the socket. Every ``Sync`` and every
    simple ``Query`` waits for the server's ``ReadyForQuery``, so their sum is the round trips;
    ``Parse`` messages are statements prepared."""

    def __init__(self) -> None:
        self.counts = {"statements": 0, "round_trips": 0, "prepares": 0, "messages": 0}
        self.waits: dict[str, float] = {}  # statement (its first words) → seconds from sending to its result
        self._t0 = 0.0
        self._skip = 0
        self._head = b""

    def attach(self, db: Database) -> None:
        from sqlalchemy import event

        def statement(*_a: object) -> None:
            self.counts["statements"] += 1
            self._t0 = time.perf_counter()

        def done(_conn: object, _cursor: object, sql: str, *_a: object) -> None:
            head = " ".join(sql.split()[:3])[:40]
            self.waits[head] = self.waits.get(head, 0.0) + time.perf_counter() - self._t0

        def connect(dbapi_conn: Any, _record: object) -> None:
            transport = dbapi_conn._connection._transport  # the asyncpg connection's socket
            write = transport.write

            def counted(data: Any) -> None:
                self.feed(bytes(data))
                write(data)

            transport.write = counted

        event.listen(db.engine.sync_engine, "before_cursor_execute", statement)
        event.listen(db.engine.sync_engine, "after_cursor_execute", done)
        event.listen(db.engine.sync_engine, "connect", connect)

    def feed(self, data: bytes) -> None:
        """Walk the frontend messages (type byte, int32 length) across writes."""
        i = 0
        while i < len(data):
            if self._skip:
                n = min(self._skip, len(data) - i)
                self._skip -= n
                i += n
                continue
            need = 5 - len(self._head)
            self._head += data[i:i + need]
            i += need
            if len(self._head) < 5:
                return
            kind, length = self._head[:1], int.from_bytes(self._head[1:5], "big")
            self._head = b""
            self._skip = length - 4
            self.counts["messages"] += 1
            if kind in (b"S", b"Q"):
                self.counts["round_trips"] += 1
            elif kind == b"P":
                self.counts["prepares"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {**self.counts, "waits": dict(self.waits)}


def _cpu_seconds(procs: Iterable[Any]) -> float:
    """User and system CPU seconds of ``procs`` (psutil processes; one that ended counts nothing)."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def worker_cpu(exclude: int | None) -> float:
    """CPU seconds of this process's children but the PostgreSQL server's tree (the billing
    process, when billing runs in one)."""
    import psutil

    return _cpu_seconds(p for p in psutil.Process().children() if p.pid != exclude)


def server_cpu(pid: int | None) -> float:
    """CPU seconds of the PostgreSQL server (the postmaster and its backends so far)."""
    if pid is None:
        return 0.0
    import psutil

    return _cpu_seconds([psutil.Process(pid), *psutil.Process(pid).children(recursive=True)])


async def run_case(url: str, meters: int, rounds: int, batch: int, tmp: Path, profile: object = None,
                   server_pid: int | None = None, billing_in: str = "auto") -> dict[str, Any]:
    config = parse_config(
        f'[site]\nname = "Bench"\ntimezone = "Asia/Shanghai"\n[database]\nurl = "{url}"\n'
        f'[prepaid]\nbatch_limit = {batch}\nbilling_in = "{billing_in}"\n',
        "<bench>", tmp,
    )
    db = Database(async_url(url))
    wire = Wire()
    if db.dialect == "postgresql":
        wire.attach(db)
    await db.upgrade()
    await make_site(db, meters)
    assets = AssetRegistry(db)
    await assets.load()
    tagdb = TagDB()
    for m in assets.snapshot.meters:
        for p in POINTS:
            tagdb.register(TagMeta(f"{m}.{p}", meter_id=m, point=p))
    engine = PrepaidEngine(config, db, assets, tagdb)
    in_process = engine.billing_in_process
    if db.dialect == "postgresql" and not in_process:
        wire.attach(engine.billing_db)  # billing's transactions run on a database engine of their own
    await engine.load()
    await engine.tariffs.create("TOU", "TOU", "electricity", TariffDefinition.model_validate(DEMO_TOU), ACTOR)
    defaults = engine.defaults()
    for room in assets.snapshot.rooms:
        await engine.open_account(OpenRequest(room, defaults, electricity_tariff_id="TOU", opening_minor=100_000_000), ACTOR)
    t0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    ids = sorted(assets.snapshot.meters)

    def write_round(r: int) -> None:
        ts = t0 + dt.timedelta(minutes=r)
        for i, m in enumerate(ids):
            base = 1000 + i % 100
            regs = [base + r * 2, base + r, base + 2 * r, base + r]  # +0.05 kWh a round, in 0.01 steps
            values = [sum(regs)] + regs
            tagdb.write_many([TagWrite(f"{m}.{p}", v / 100, source_ts=ts) for p, v in zip(POINTS, values, strict=False)])

    billing = asyncio.create_task(engine.run_billing(), name="billing")
    try:
        while not tagdb.subscriptions:
            await asyncio.sleep(0.01)
        write_round(0)  # the baselines
        while engine.stats["processed"] < meters:  # every baseline committed
            await asyncio.sleep(0.01)
        billed0, batches0 = engine.stats["billed"], engine.stats["batches"]
        target = billed0 + meters * rounds
        freeze_startup()  # as the server does once it is ready
        wire0, server0, worker0 = wire.snapshot(), server_cpu(server_pid), worker_cpu(server_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        for r in range(1, rounds + 1):
            write_round(r)
            await asyncio.sleep(0)
        while engine.stats["billed"] < target:
            await asyncio.sleep(0.005)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        worker = worker_cpu(server_pid) - worker0
        server = server_cpu(server_pid) - server0
        wire1 = wire.snapshot()
        if profile is not None:
            profile.disable()
        batches = engine.stats["batches"] - batches0
    finally:
        billing.cancel()
        await asyncio.gather(billing, return_exceptions=True)
        engine.close()
    async with db.sessions() as s:
        rows = await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "deduction"))
    report = await reconcile(db, 2)
    await db.dispose()
    assert rows == meters * rounds, (rows, meters * rounds)
    assert report.ok, [str(m) for m in report.mismatches[:5]]
    n = meters * rounds
    out: dict[str, Any] = {"readings": n, "wall": wall, "cpu": cpu + worker, "rate": n / wall, "batches": batches,
                           "cpu_us": (cpu + worker) / n * 1e6, "billing_in": "process" if in_process else "thread",
                           "worker_cpu_us": worker / n * 1e6}
    if db.dialect == "postgresql":
        out["server_cpu_us"] = server / n * 1e6
        for k, v in wire1.items():
            if k != "waits" and not in_process:
                out[f"{k}_per_batch"] = (v - wire0[k]) / max(batches, 1)
        waits = {k: (v - wire0["waits"].get(k, 0.0)) / n * 1e6 for k, v in wire1["waits"].items()}
        out["waits_us"] = {k: round(v, 1) for k, v in sorted(waits.items(), key=lambda kv: -kv[1]) if v >= 0.05}
    return out


def show(label: str, r: dict[str, Any]) -> None:
    worker = f", of it {r['worker_cpu_us']:.0f} in the billing process" if r["billing_in"] == "process" else ""
    print(f"  {label:<34} {r['readings']:>7,.0f} readings in {r['wall']:6.2f} s = {r['rate']:>8,.0f} readings/s  "
          f"({r['batches']:,.0f} transactions, {r['readings'] / max(r['batches'], 1):,.0f} readings each; "
          f"CPU {r['cpu_us']:.0f} µs/reading{worker})")
    if "server_cpu_us" in r and "round_trips_per_batch" not in r:
        print(f"  {'':<34} server CPU {r['server_cpu_us']:.0f} µs/reading (the billing process's statements are not counted here)")
    if "round_trips_per_batch" in r:
        print(f"  {'':<34} per transaction: {r['round_trips_per_batch']:.1f} round trips, {r['statements_per_batch']:.1f} statements, "
              f"{r['prepares_per_batch']:.1f} prepared, {r['messages_per_batch']:,.0f} protocol messages; "
              f"server CPU {r['server_cpu_us']:.0f} µs/reading")
        waits = ", ".join(f"{k} {v:.1f}" for k, v in r["waits_us"].items())
        print(f"  {'':<34} waiting for the statements (µs/reading, from sending to the result): {waits}")


async def main(args: argparse.Namespace) -> None:
    tune_for_server()  # the collector settings of `scada run`
    print(f"prepaid billing: {args.meters} meters × {args.rounds} rounds, TOU tariff priced from registers")
    engines = args.engines.split(",")
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if "sqlite" in engines:
            print("SQLite (WAL, synchronous=FULL):")
            r = figures["sqlite_batched"] = await run_case(f"sqlite:///{tmp}/a.db", args.meters, args.rounds, args.batch, tmp,
                                                           billing_in=args.billing_in)
            show(f"batched (up to {args.batch} per commit)", r)
            if not args.batched_only:
                r = figures["sqlite_per_reading"] = await run_case(f"sqlite:///{tmp}/b.db", args.meters, max(1, args.rounds // 5), 1, tmp,
                                                                  billing_in=args.billing_in)
                show("one commit per reading", r)
        if "postgres" in engines:
            from tests.services import PostgresServer

            server = PostgresServer(fsync=True)  # the test suite's server runs without fsync
            server.start()
            try:
                import asyncpg

                for name in ("bench_a", "bench_b"):
                    conn = await asyncpg.connect(server.admin_dsn)
                    await conn.execute(f'CREATE DATABASE "{name}"')
                    await conn.close()
                print("PostgreSQL (throw-away local server, fsync on):")
                r = figures["postgres_batched"] = await run_case(server.dsn("bench_a"), args.meters, args.rounds, args.batch, tmp,
                                                                      server_pid=server.proc.pid if server.proc else None,
                                                                      billing_in=args.billing_in)
                show(f"batched (up to {args.batch} per commit)", r)
                if not args.batched_only:
                    r = figures["postgres_per_reading"] = await run_case(server.dsn("bench_b"), args.meters, max(1, args.rounds // 5), 1, tmp,
                                                                          server_pid=server.proc.pid if server.proc else None,
                                                                          billing_in=args.billing_in)
                    show("one commit per reading", r)
            finally:
                server.stop()
    print(f"(python {platform.python_version()}, {platform.machine()}; goal: >= 10,000 readings/s on SQLite and PostgreSQL)")
    out = Path(args.json)
    if not out.is_absolute():
        out = Path(__file__).resolve().parents[2] / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "prepaid", "meters": args.meters, "rounds": args.rounds, "batch": args.batch,
                               "billing_in": args.billing_in,
                               "cases": figures, "python": platform.python_version()}, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2000, help="prepaid.batch_limit")
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--batched-only", action="store_true", help="leave out the one-commit-per-reading cases")
    parser.add_argument("--billing-in", default="auto", choices=("auto", "process", "thread"),
                        help="prepaid.billing_in (auto: a process of its own from 1,000 meters, as the server)")
    parser.add_argument("--json", default="build/bench/prepaid.json", help="where the figures are written")
    asyncio.run(main(parser.parse_args()))
