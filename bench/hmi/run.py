"""The HMI's WebSocket feed: 100 clients on the overview while 1,000 rooms change every second.

How it is measured:

- The server is the real one (``scada.server.build_runtime``: database, tags, poller, command
  path, alarm engine, HMI) in a child process, on SQLite, with a generated site of 1,000 rooms (one electricity meter
  each) and the default push interval (100 ms). Inside it a driver plays the poller and the
  prepaid engine: every 100 ms it writes the balance of a tenth of the rooms, so every room
  changes once per second (1,000 room tag changes/s). Nobody serves the meters: the poller
  marks them offline once at the start and then stays quiet.
- The clients are 100 ``websockets`` connections in two worker processes (one event loop
  each, so that parsing half a megabyte per push does not queue up in one loop). Each
  subscribes to the overview: in case "page", clients are spread over the pages of the default
  page size (120 rooms); in case "all", every client views all 1,000 rooms (page size 1,000).
- Delivered: room updates received by all clients per second (one room in one push to one
  client counts once), and pushes (WebSocket messages) per second.
- Latency: for each room in a push, the client's receive time minus the room's ``ts`` (the
  server time at which its newest tag change was written). Both clocks are this machine's
  wall clock. The push interval coalesces changes, so about half of it (~50 ms) is the floor.
- Cases: "page" and "all" at ``--clients``; "page+stalled" adds one client viewing every room
  that reads nothing (its socket's buffers fill; the others must not notice); "many" is the
  page case at ``--many-clients`` (1,000). Clients open ten at a time per process.
- The figures go to ``build/bench/hmi.json`` (``--json``).
- Server CPU: the child process's user+system CPU time over the measured window (psutil), as
  a share of one core. Clients and server share the machine's two cores.

Warm-up 3 s, then 10 s measured per case.

Also, in-process, the overview at 10,000 rooms: the live room table built from the registry
and the tags (as at start or after a registry change), one batch of changes to every room
applied, and the server-side query behind one overview page (filter, count by state, page of
120 rooms) for the filters an operator uses, each the median of 20 runs.

Run: ``python bench/hmi/run.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ADMIN_PASSWORD = "bench-admin-password"


# -- the server (child process) ----------------------------------------------------------
def site_toml(rooms: int, per_floor: int = 50) -> str:
    out = ['[site]\nid = "bench"\nname = "Bench"\ntimezone = "Asia/Shanghai"\n', '[[buildings]]\nid = "B"\nname = "Block"\n']
    for f in range(1, -(-rooms // per_floor) + 1):
        out.append(f'[[floors]]\nid = "B-F{f}"\nbuilding = "B"\nlevel = {f}\nname = "F{f}"\n')
    for n in range(rooms):
        f, r = n // per_floor + 1, n % per_floor + 1
        room = f"B-R{f}{r:02d}"
        out.append(f'[[rooms]]\nid = "{room}"\nfloor = "B-F{f}"\nname = "{f}{r:02d}"\n')
        out.append(
            f'[[meters]]\nid = "E-{room}"\nkind = "electricity"\nroom = "{room}"\nprofile = "acrel-ddsy1352"\n'
            f'link = "gw-{n // 200 + 1}"\nunit_id = {n % 200 + 1}\n'
        )
    return "\n".join(out)


def config_toml(folder: Path, port: int, rooms: int, max_clients: int) -> str:
    links = "".join(f'\n[[links]]\nname = "gw-{i}"\nhost = "127.0.0.1"\nport = 9\n' for i in range(1, -(-rooms // 200) + 1))
    return f"""
[site]
name = "Bench"
timezone = "Asia/Shanghai"
import_file = "{folder / 'site.toml'}"

[runtime]
data_dir = "{folder / 'var'}"

[database]
url = "sqlite:///{folder / 'scada.db'}"

[logging]
level = "error"

[modbus]
probe_initial_s = 60   # nobody serves the meters: they go offline once and stay quiet
probe_max_s = 600

[hmi]
host = "127.0.0.1"
port = {port}
ws_max_per_user = {max_clients}   # every bench client signs in as the same user
ws_max_total = {max_clients}

[admin]
password = {{ env = "SCADA_ADMIN_PASSWORD" }}
{links}"""


async def drive(tagdb: Any, snapshot: Any, stop: asyncio.Event) -> None:
    """Every room's balance changes once per second, in ten slices (as the prepaid engine
    publishes room tags; the meters' tags stay the poller's)."""
    from tags import DataType, TagMeta, TagWrite
    from tags.names import room_tag

    rooms = sorted(snapshot.rooms)
    for room in rooms:
        for point, dtype, value in (("balance", DataType.FLOAT, 500.0), ("supply_state", DataType.STRING, "on"),
                                    ("account_state", DataType.STRING, "open"), ("alarm_level", DataType.INT, 0)):
            name = room_tag(room, point)
            if name not in tagdb:
                tagdb.register(TagMeta(name, dtype))
            tagdb.write(name, value)
    balance = dict.fromkeys(rooms, 500.0)
    slices = [rooms[i::10] for i in range(10)]
    tick = 0
    next_at = time.monotonic()
    while not stop.is_set():
        batch = []
        for room in slices[tick % 10]:
            balance[room] -= 0.01
            batch.append(TagWrite(room_tag(room, "balance"), round(balance[room], 2)))
        tagdb.write_many(batch)
        tick += 1
        next_at += 0.1
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def serve(config_path: str) -> None:
    from hmi.component import HMI_URL
    from scada.config import load_config
    from scada.core.logs import configure_logging
    from scada.core.tags import TAGDB
    from scada.server import build_runtime
    from scada.site.component import ASSETS

    config = load_config(config_path)
    configure_logging("error")
    rt = build_runtime(config, announce=lambda _m: None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await rt.start()
    try:
        print(json.dumps({"url": rt.ctx[HMI_URL]}), flush=True)
        await drive(rt.ctx[TAGDB], rt.ctx[ASSETS].snapshot, stop)
    finally:
        await rt.stop()


# -- the clients (worker processes) -----------------------------------------------------
# clients open a few at a time: each opening checks its token in the database, and a thousand at
# once queue on the server's connection pool (30 s timeout) rather than measure the feed
OPENING = 10


async def _client(url: str, token: str, sub: dict[str, Any], window: list[float], out: dict[str, Any], ready: asyncio.Event,
                  opening: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    async with opening:
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=16 * 2**20, open_timeout=120)
        await ws.send(json.dumps({"type": "subscribe", **sub}))
        first = json.loads(await ws.recv())
    async with ws:
        if first.get("type") != "snapshot":
            raise RuntimeError(f"expected a snapshot, got {first}")
        ready.set()
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                raw = None
            now = time.time()
            if window and now >= window[1]:
                return
            if raw is None or not window or now < window[0]:
                continue
            msg = json.loads(raw)
            if msg.get("type") == "error":
                out["errors"] += 1
                continue
            out["pushes"] += 1
            rooms = msg.get("rooms") or []
            out["rooms"] += len(rooms)
            lat = out["latencies"]
            for r in rooms:
                if r.get("ts"):
                    lat.append(now - r["ts"])


async def _stalled(url: str, token: str, sub: dict[str, Any], window: list[float], out: dict[str, Any], ready: asyncio.Event,
                   opening: asyncio.Semaphore) -> None:
    """A client that subscribes and then reads nothing (its socket's buffers fill up)."""
    from websockets.asyncio.client import connect

    # max_queue=1: the library stops reading from the socket once one message waits unread
    async with opening:
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=16 * 2**20,
                           open_timeout=120, max_queue=1, close_timeout=1)
    async with ws:
        await ws.send(json.dumps({"type": "subscribe", **sub}))
        ready.set()
        while not window or time.time() < window[1]:
            await asyncio.sleep(0.2)
        out["stalled_closed"] += ws.state.name != "OPEN"


async def _clients(url: str, token: str, subs: list[dict[str, Any]], conn: Any, stalled: int = 0) -> None:
    out: dict[str, Any] = {"rooms": 0, "pushes": 0, "errors": 0, "latencies": [], "stalled_closed": 0}
    window: list[float] = []
    readies = [asyncio.Event() for _ in range(len(subs) + stalled)]
    opening = asyncio.Semaphore(OPENING)
    tasks = [asyncio.create_task(_client(url, token, sub, window, out, ready, opening)) for sub, ready in zip(subs, readies, strict=False)]
    tasks += [asyncio.create_task(_stalled(url, token, {"view": "overview", "page": 1, "page_size": 100_000}, window, out, ready, opening))
              for ready in readies[len(subs):]]
    await asyncio.gather(*(r.wait() for r in readies))
    conn.send("ready")
    start, end = await asyncio.to_thread(conn.recv)
    window.extend([start, end])
    t0 = time.process_time()
    await asyncio.gather(*tasks)
    out["cpu_s"] = time.process_time() - t0
    conn.send(out)


def client_worker(url: str, token: str, subs: list[dict[str, Any]], conn: Any, stalled: int = 0) -> None:
    asyncio.run(_clients(url, token, subs, conn, stalled))


def run_case(
    base: str, token: str, *, clients: int, page_size: int, pages: int, procs: int, warmup: float, seconds: float, server_pid: int,
    stalled: int = 0,
) -> dict[str, float]:
    import multiprocessing

    import psutil

    url = base.replace("http://", "ws://") + "/ws"
    subs = [{"view": "overview", "page": i % pages + 1, "page_size": page_size} for i in range(clients)]
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for p in range(procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_worker, args=(url, token, subs[p::procs], child, stalled if p == 0 else 0), daemon=True)
        proc.start()
        workers.append((proc, parent))
    for _, conn in workers:
        if not conn.poll(600) or conn.recv() != "ready":
            raise SystemExit("clients did not connect")
    start = time.time() + warmup
    end = start + seconds
    for _, conn in workers:
        conn.send((start, end))
    server = psutil.Process(server_pid)
    time.sleep(max(0.0, start - time.time()))
    cpu0 = server.cpu_times()
    time.sleep(max(0.0, end - time.time()))
    cpu1 = server.cpu_times()
    total: dict[str, Any] = {"rooms": 0, "pushes": 0, "errors": 0, "latencies": [], "cpu_s": 0.0, "stalled_closed": 0}
    for proc, conn in workers:
        if not conn.poll(60):
            raise SystemExit("clients did not report")
        out = conn.recv()
        for key in ("rooms", "pushes", "errors", "cpu_s", "stalled_closed"):
            total[key] += out[key]
        total["latencies"].extend(out["latencies"])
        proc.join(10)
    lat = sorted(total["latencies"]) or [float("nan")]
    return {
        "room_updates_per_s": total["rooms"] / seconds,
        "pushes_per_s": total["pushes"] / seconds,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
        "server_cpu_pct": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / seconds * 100,
        "client_cpu_pct": total["cpu_s"] / seconds * 100,
        "errors": total["errors"],
        "stalled_clients": stalled,
        "stalled_closed": total["stalled_closed"],
    }


def overview_at_scale(rooms: int) -> dict[str, float]:
    """Time the live room table's work at ``rooms`` rooms (in memory, no network)."""
    from decimal import Decimal

    from hmi.live import LiveRooms, RoomFilter
    from scada.site.assets import (
        AssetSnapshot,
        BuildingInfo,
        FloorInfo,
        MeterInfo,
        RoomInfo,
        SiteInfo,
    )
    from tags import DataType, TagDB, TagMeta, TagWrite
    from tags.names import meter_tag, room_tag

    per_floor, per_building = 50, 1000
    buildings = {f"B{b}": BuildingInfo(f"B{b}", "s", f"Block {b}") for b in range(1, rooms // per_building + 1)}
    floors: dict[str, FloorInfo] = {}
    room_infos: dict[str, RoomInfo] = {}
    meters: dict[str, MeterInfo] = {}
    for n in range(rooms):
        b, f = n // per_building + 1, n % per_building // per_floor + 1
        fid = f"B{b}-F{f}"
        floors.setdefault(fid, FloorInfo(fid, f"B{b}", f"F{f}", f))
        rid = f"B{b}-R{f}{n % per_floor + 1:02d}"
        room_infos[rid] = RoomInfo(rid, fid, f"B{b}", f"{f}{n % per_floor + 1:02d}", None)
        mid = f"E-{rid}"
        meters[mid] = MeterInfo(
            mid,
            "electricity",
            "tenant",
            rid,
            f"B{b}",
            "acrel-ddsy1352",
            "gw",
            n % 200 + 1,
            None,
            Decimal(1),
            None,
            Decimal(0),
            None,
            None,
            True,
        )
    snapshot = AssetSnapshot(SiteInfo("s", "Scale", "UTC"), buildings, floors, room_infos, meters)

    class Registry:  # the registry's interface LiveRooms uses
        def __init__(self, snap: AssetSnapshot) -> None:
            self.snapshot = snap

        def subscribe(self, listener: Any) -> Any:
            return lambda: None

    tagdb = TagDB()
    writes = []
    for rid in room_infos:
        for point, dtype, value in (
            ("balance", DataType.FLOAT, 100.0),
            ("supply_state", DataType.STRING, "on"),
            ("account_state", DataType.STRING, "open"),
            ("alarm_level", DataType.INT, 0),
        ):
            tagdb.register(TagMeta(room_tag(rid, point), dtype))
            writes.append(TagWrite(room_tag(rid, point), value))
        for point, dtype, value in (("comm_ok", DataType.BOOL, True), ("power", DataType.FLOAT, 1.0)):
            tagdb.register(TagMeta(meter_tag(f"E-{rid}", point), dtype))
            writes.append(TagWrite(meter_tag(f"E-{rid}", point), value))
    tagdb.write_many(writes)
    live = LiveRooms(Registry(snapshot), tagdb)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    live.start()
    build_ms = (time.perf_counter() - t0) * 1000
    ids = list(room_infos)
    for i, rid in enumerate(ids[::10]):  # every 10th room somewhere else than "ok"
        tagdb.write(room_tag(rid, "alarm_level"), 1 + i % 3)
    for rid in ids[5::50]:
        tagdb.write(meter_tag(f"E-{rid}", "comm_ok"), False)
    assert live._sub is not None
    t0 = time.perf_counter()
    live._apply(live._sub.drain())
    tagdb.write_many(TagWrite(room_tag(rid, "balance"), 99.0) for rid in ids)
    batch = live._sub.drain()
    t1 = time.perf_counter()
    live._apply(batch)
    apply_ms = (time.perf_counter() - t1) * 1000

    def median_ms(fn: Any) -> float:
        runs = []
        for _ in range(20):
            t = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t) * 1000)
        return statistics.median(runs)

    figures: dict[str, float] = {"rooms": rooms, "build_ms": build_ms, "apply_all_ms": apply_ms}
    print(f"\n[scale] the overview at {rooms:,} rooms (in process, median of 20)")
    print(f"  live room table built in {build_ms:.0f} ms; a batch changing every room applied in {apply_ms:.0f} ms")
    for label, f in (
        ("all rooms", RoomFilter()),
        ("one building", RoomFilter(building="B3")),
        ("one floor", RoomFilter(floor="B3-F7")),
        ("state = low", RoomFilter(state="low")),
        ("state = offline", RoomFilter(state="offline")),
        ("search 'R7'", RoomFilter(q="R7")),
    ):
        page = live.page(f, 1, 120)
        ms = median_ms(lambda f=f: live.page(f, 1, 120))
        figures[f"page_ms[{label}]"] = ms
        print(f"  page of 120, {label}: {ms:.2f} ms ({page.total:,} match)")
    live.close()
    return figures


def run_bench(args: argparse.Namespace, results: list[dict[str, Any]]) -> int:
    import urllib.request

    from tests.services import free_port, wait_port

    with tempfile.TemporaryDirectory(prefix="bench-hmi-") as tmp:
        folder = Path(tmp)
        (folder / "site.toml").write_text(site_toml(args.rooms), encoding="utf-8")
        port = free_port()
        max_clients = max(args.clients, args.many_clients) + 10
        (folder / "scada.toml").write_text(config_toml(folder, port, args.rooms, max_clients), encoding="utf-8")
        env = dict(os.environ, SCADA_ADMIN_PASSWORD=ADMIN_PASSWORD)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(folder / "scada.toml")], stdout=subprocess.PIPE, env=env
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise SystemExit("the server did not start")
            base = json.loads(line)["url"]
            wait_port(port, 10)
            request = urllib.request.Request(
                base + "/api/v1/auth/token",
                data=json.dumps({"user": "admin", "password": ADMIN_PASSWORD}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as r:
                token = json.loads(r.read())["token"]
            print(
                f"HMI feed bench: {args.clients} WebSocket clients, {args.rooms} rooms each changing every second "
                f"({args.rooms} room tag changes/s), default push interval (100 ms)"
            )
            print(
                f"python {platform.python_version()}, {os.cpu_count()} cores; clients in {args.procs} process(es); "
                f"warm-up {args.warmup:g} s, measured {args.seconds:g} s per case"
            )
            cases = [("page", args.clients, 120, 0), ("all", args.clients, args.rooms, 0), ("page+stalled", args.clients, 120, 1)]
            if args.many_clients:
                cases.append(("many", args.many_clients, 120, 0))
            wanted = set(args.cases.split(","))
            for name, clients, page_size, stalled in cases:
                if name not in wanted:
                    continue
                pages = -(-args.rooms // page_size)
                res = run_case(
                    base,
                    token,
                    clients=clients,
                    page_size=page_size,
                    pages=pages,
                    procs=args.procs,
                    warmup=args.warmup,
                    seconds=args.seconds,
                    server_pid=child.pid,
                    stalled=stalled,
                )
                results.append({"case": name, "clients": clients, "page_size": page_size, **res})
                print(f"\n[{name}] {clients} clients, each viewing {page_size} rooms ({pages} page(s), clients spread over them)"
                      + (f", plus {stalled} client(s) viewing every room that read nothing" if stalled else ""))
                print(
                    f"  room updates delivered: {res['room_updates_per_s']:,.0f}/s in {res['pushes_per_s']:,.0f} pushes/s"
                )
                print(
                    f"  latency tag change -> client: p50 {res['p50_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms, max {res['max_ms']:.0f} ms"
                )
                print(
                    f"  server CPU: {res['server_cpu_pct']:.0f}% of one core (clients: {res['client_cpu_pct']:.0f}%)"
                    + (f"; {res['errors']} errors" if res["errors"] else "")
                )
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--scale-rooms", type=int, default=10_000, help="rooms of the in-process overview measurement")
    parser.add_argument("--many-clients", type=int, default=1000, help="clients of the large page case (0: skip it)")
    parser.add_argument("--cases", default="page,all,page+stalled,many", help="which cases to run")
    parser.add_argument("--json", default="build/bench/hmi.json", help="where the figures are written")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    results: list[dict[str, Any]] = []
    code = run_bench(args, results)
    scale = overview_at_scale(args.scale_rooms)
    write_json(args.json, {
        "bench": "hmi", "rooms": args.rooms, "seconds": args.seconds, "warmup": args.warmup, "procs": args.procs,
        "push_interval_ms": 100, "cases": results, "scale": scale,
        "python": platform.python_version(), "cores": os.cpu_count(),
    })
    return code


def write_json(path: str, data: dict[str, Any]) -> None:
    out = Path(path)
    if not out.is_absolute():
        out = Path(__file__).resolve().parents[2] / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"figures written to {out}")


if __name__ == "__main__":
    sys.exit(main())
