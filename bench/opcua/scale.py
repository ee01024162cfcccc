"""OPC UA at site scale: the address space's start-up and the event loop while clients leave.

How it is measured (called by ``run.py``; ``python bench/opcua/scale.py --meters 50000`` alone):

- start-up, a fresh process per size: what the OPC UA component does at start, timed step by
  step: the server's start (asyncua's standard address space, our types), the site's spec
  (``scada.opcua.component.site_spec`` from an asset snapshot of N rooms with one electricity
  meter each, 100 rooms a floor, and a TagDB holding the meters' 11 points; the rooms get their
  4 required points), and the build of the nodes (``OpcUaServer.sync``: the objects, each room's
  and meter's variables and methods waiting for a first touch), with the collector off and the
  heap frozen after, as the component does. Figures: wall and CPU time of each step, nodes built,
  points waiting, RSS after; then the first touch of 1,000 meters spread over the site (a read of
  each one's power by node id, which builds the meter): milliseconds per meter.
- clients leaving: N meters built, the server fed from a TagDB at ``--rate`` changes a second
  (8,000/s: 50,000 meters' 10 points a minute); ``--clients`` asyncua clients in their own
  processes, each subscribed to ``--items`` variables (100 ms publishing), as bench/pipeline's
  clients; then all of them disconnect at once (``Client.disconnect``: CloseSession with its
  subscriptions deleted). A 5 ms ticker on the server's loop gives its longest stall while the
  clients subscribe, for 3 s with all of them subscribed, and while they leave; each client
  reports how long its disconnect took.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as B  # noqa: E402  (bench/opcua/run.py)

from tags import DataType, TagMeta, TagWrite  # noqa: E402

POINTS = ("energy_total", "power", "voltage", "current", "power_factor", "relay_closed",
          "energy_peak", "energy_flat", "energy_valley", "energy_sharp")


# -- start-up ------------------------------------------------------------------------------------
def snapshot_and_tags(n: int) -> tuple[Any, Any]:
    from scada.site.assets import AssetSnapshot, BuildingInfo, FloorInfo, MeterInfo, RoomInfo, SiteInfo
    from tags import TagDB

    spec = B.site(n)
    snap = AssetSnapshot(site=SiteInfo("bench", "Bench", "UTC"))
    for b in spec.buildings.values():
        snap.buildings[b.id] = BuildingInfo(b.id, "bench", b.name)
    for f in spec.floors.values():
        snap.floors[f.id] = FloorInfo(f.id, f.building_id, f.name, f.level)
    for r in spec.rooms.values():
        snap.rooms[r.id] = RoomInfo(r.id, r.floor_id, spec.floors[r.floor_id].building_id, r.name, None)
    db = TagDB()
    for i, m in enumerate(spec.meters.values()):
        snap.meters[m.id] = MeterInfo(
            m.id, "electricity", "tenant", m.room_id, m.building_id, "acrel-ddsy1352", f"gw-{i % 50}", i // 50 + 1,
            None, Decimal(1), date(2026, 1, 1), Decimal(0), None, None, True,
        )
        for p in m.points:
            db.register(TagMeta(p.tag, p.data_type, p.unit, p.description, meter_id=m.id, point=p.point))
    return snap, db


async def startup_case(n: int) -> dict[str, Any]:
    from scada.opcua.component import FREEZE_AFTER_NODES, site_spec

    snap, db = snapshot_and_tags(n)
    out: dict[str, Any] = {"meters": n}

    def step(name: str, t0: float, c0: float) -> None:
        out[name] = {"s": round(time.perf_counter() - t0, 2), "cpu": round(time.process_time() - c0, 2)}

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        server = await B.start_server(Path(tmp), lazy_nodes=True)
        step("server_start", t0, c0)
        gc.disable()  # as the component: off from the spec to the freeze
        t0, c0 = time.perf_counter(), time.process_time()
        spec = await site_spec(snap, db, currency="CNY", site_name="Bench")
        step("site_spec", t0, c0)
        t0, c0 = time.perf_counter(), time.process_time()
        result = await server.sync(spec, db.get)
        step("build", t0, c0)
        if result.added + result.deferred >= FREEZE_AFTER_NODES:
            gc.freeze()
        gc.enable()
        out["nodes"] = result.added
        out["waiting"] = result.deferred
        touched = [f"E-{i:05d}.power" for i in range(0, n, max(1, n // 1_000))]
        t0 = time.perf_counter()
        for tag in touched:
            server.site.value(tag)
        out["first_touch_ms"] = round((time.perf_counter() - t0) * 1000 / len(touched), 3)
        out["slices"] = result.slices
        out["rss_mb"] = round(B.rss_mb())
        out["total_s"] = round(sum(out[k]["s"] for k in ("server_start", "site_spec", "build")), 2)
        await server.stop()
    return out


def _in_child(*args: str) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh process (its own heap and start-up); its last
    line of output is the figures as JSON."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_startup(n: int) -> dict[str, Any]:
    return _in_child("--startup-one", str(n))


def print_startup(r: dict[str, Any]) -> None:
    label = f"start-up of the address space, {r['meters']:,} meters"
    print(
        f"{label:<46} {r['total_s']:>8.2f} s  "
        f"(server {r['server_start']['s']:.2f} s, spec {r['site_spec']['s']:.2f} s, "
        f"build {r['build']['s']:.2f} s / cpu {r['build']['cpu']:.2f} s, {r['nodes']:,} nodes, "
        f"{r['waiting']:,} points waiting; RSS {r['rss_mb']:,} MB; a meter's first touch "
        f"{r['first_touch_ms']:.2f} ms)",
        flush=True,
    )


# -- clients leaving -----------------------------------------------------------------------------
def _client(url: str, tags: list[str], ns_uri: str, conn: Any) -> None:
    async def main() -> None:
        import logging

        from asyncua import Client

        logging.getLogger("asyncua").setLevel(logging.ERROR)
        client = Client(url, timeout=120, watchdog_intervall=30.0)
        await client.connect()
        ns = await client.get_namespace_index(ns_uri)

        class Handler:
            def datachange_notification(self, *_args: Any) -> None:
                pass

        sub = await client.create_subscription(100, Handler())
        handles = await sub.subscribe_data_change([client.get_node(f"ns={ns};s={t}") for t in tags])
        conn.send(sum(1 for h in handles if not isinstance(h, int)))
        await asyncio.to_thread(conn.recv)
        t0 = time.perf_counter()
        await client.disconnect()
        conn.send(time.perf_counter() - t0)

    asyncio.run(main())


async def _answers(pipes: list[Any]) -> list[Any]:
    out = []
    for pipe in pipes:
        while not pipe.poll():
            await asyncio.sleep(0.02)
        out.append(pipe.recv())
    return out


class Ticker:
    """The event loop's longest stall: a 5 ms sleep that came back late."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - 0.005)
            last = now

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest


async def leave_case(n: int, clients: int, items: int, rate: float) -> dict[str, Any]:
    spec = B.site(n)
    with tempfile.TemporaryDirectory() as tmp:
        server = await B.start_server(Path(tmp), lazy_nodes=True)
        await server.sync(spec, lambda _t: None)
        db, names = B.tagdb_for(spec)
        gc.freeze()
        fed = B.Fed(server, db)

        async def writer() -> None:
            r = i = 0
            k = max(1, int(rate / 10))
            while True:
                chunk = [names[(i + j) % len(names)] for j in range(k)]
                i += k
                r += 1
                db.write_many(TagWrite(t, (r % 2 == 0) if db.meta(t).data_type is DataType.BOOL else float(r)) for t in chunk)
                await asyncio.sleep(0.1)

        feeding = asyncio.create_task(writer())
        ticker = Ticker()
        tags = [f"E-{i:05d}.{p}" for i in range(n) for p in POINTS]
        ctx = mp.get_context("spawn")
        procs, pipes = [], []
        try:
            t0 = time.perf_counter()
            ticker.take()
            for c in range(clients):
                start = (c * items * 7919) % len(tags)
                mine = (tags[start:] + tags[:start])[:items]
                here, there = ctx.Pipe()
                proc = ctx.Process(target=_client, args=(server.url, mine, server.config.namespace_uri, there), daemon=True)
                proc.start()
                procs.append(proc)
                pipes.append(here)
            errors = sum(await _answers(pipes))
            subscribed_s, subscribe_stall = time.perf_counter() - t0, ticker.take()
            ticker.take()
            await asyncio.sleep(3)  # notifications flowing: the stalls the feed alone makes
            steady_stall = ticker.take()
            t0 = time.perf_counter()
            for pipe in pipes:
                pipe.send("go")
            disconnects = await _answers(pipes)
            while server.asyncua.iserver.subscription_service.subscriptions:
                await asyncio.sleep(0.01)
            left_s = time.perf_counter() - t0
            await asyncio.sleep(0.5)
            leave_stall = ticker.take()
        finally:
            for proc in procs:
                proc.join(10)
            feeding.cancel()
            ticker.task.cancel()
            await fed.close()
            await server.stop()
    return {
        "meters": n, "clients": clients, "items": items, "rate": rate, "item_errors": errors,
        "subscribe_s": round(subscribed_s, 2), "subscribe_longest_stall_s": round(subscribe_stall, 3),
        "steady_longest_stall_s": round(steady_stall, 3),
        "leave_s": round(left_s, 2), "leave_longest_stall_s": round(leave_stall, 3),
        "disconnect_s_max": round(max(disconnects), 3),
    }


def run_leave(n: int, clients: int, items: int, rate: float) -> dict[str, Any]:
    return _in_child("--leave-one", str(n), "--clients", str(clients), "--items", str(items), "--rate", str(rate))


def print_leave(r: dict[str, Any]) -> None:
    label = f"{r['clients']} clients × {r['items']:,} items leave, {r['meters']:,} meters"
    print(
        f"{label:<46} "
        f"longest loop stall {r['leave_longest_stall_s'] * 1000:>6.0f} ms  (all gone in {r['leave_s']:.2f} s, slowest "
        f"disconnect {r['disconnect_s_max'] * 1000:.0f} ms; "
        f"3 s before it: {r['steady_longest_stall_s'] * 1000:.0f} ms; subscribing took {r['subscribe_s']:.1f} s, longest stall "
        f"{r['subscribe_longest_stall_s'] * 1000:.0f} ms; "
        f"fed {r['rate']:,.0f} changes/s; {r['item_errors']} item errors)",
        flush=True,
    )


def main(argv: list[str] | None = None, report: Callable[[str, Any], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--meters", default="10000,50000", help="sizes for the start-up, comma-separated")
    parser.add_argument("--leave-meters", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=8_000.0)
    parser.add_argument("--startup-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--leave-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.startup_one:
        print(json.dumps(asyncio.run(startup_case(args.startup_one))))
        return
    if args.leave_one:
        print(json.dumps(asyncio.run(leave_case(args.leave_one, args.clients, args.items, args.rate))))
        return
    for n in (int(x) for x in args.meters.split(",") if x):
        r = run_startup(n)
        print_startup(r)
        if report:
            report(f"startup_{n}", r)
    if args.leave_meters:
        r = run_leave(args.leave_meters, args.clients, args.items, args.rate)
        print_leave(r)
        if report:
            report(f"leave_{args.leave_meters}", r)


if __name__ == "__main__":
    main()
