"""The whole pipeline at once: N meters polled over Modbus TCP, OPC UA, historian, prepaid, HMI.

How it is measured:

- Site: ``--meters`` rooms (default 50,000), each with one Acrel DDSY1352 electricity meter
  (three register blocks: energy with the four TOU registers, measurements, relay status),
  50 rooms a floor, 1,000 a building, ``--per-link`` meters (unit ids 1..100) on each Modbus TCP
  link. Before the server starts (not timed as start-up) the site is imported and every room
  gets an open prepaid account on a time-of-use tariff with a balance that never runs out, its
  meter's opening reading 0 (the simulated meters start at 0); ``--pending-baselines`` opens
  them without a reading, so that every meter's first poll sets its baseline instead. The
  accounts are written 1,000 to a transaction with the rows the engine's opening writes (one
  transaction each takes over an hour at 50,000); ``--seed-cache DIR`` keeps the seeded
  database per site size for repeated runs.
- Meters: the project's own simulator (``protocols.modbus.sim.Simulator``, the one ``scada
  simulate`` and the demo run) in ``--sims`` separate processes (default 4), the links dealt to
  them in turn, at speed 1 (real time) with the daily load curve, so that almost every meter's
  energy moves between two polls.
- Server: the real one, ``scada run --config`` in a child process, on SQLite (WAL,
  ``synchronous=FULL`` as always), every component a production config enables (poller,
  prepaid engine, historian on SQLite or with ``--influx`` on a throw-away InfluxDB 1.x started
  as ``tests/services.py`` does, OPC UA with security None and anonymous reads, HMI, alarms,
  commands, billing, reports, topology, operations), every poll class at ``--poll-s`` (60 s).
  Start-up = from spawning the process to its ``ready`` log line.
- Clients: ``--opcua-clients`` asyncua clients (10) each subscribing to ``--opcua-items``
  items (1,000; 100 ms publishing interval) in one process; ``--hmi-clients`` (10) WebSocket
  clients of the live feed (``websockets``, as ``bench/hmi``), each viewing an overview page of
  1,000 rooms (page k for client k), in another process.
- Probes: ``--probe-share`` of the meters (2 %, at least 20) have no load of their own; once
  per poll interval, at a random phase per meter, the simulator adds 0.04 kWh (at least 0.01
  of money at the lowest TOU price, so the balance shown moves) to the probe's total and current TOU register and notes the time (the "change"). Each probe's
  energy node is in one OPC UA client's items and its room on one HMI client's page. For every
  change the bench finds (a) the first OPC UA data change of that node carrying a value at or
  above the changed one, (b) the first ledger deduction of that meter whose reading is at or
  above it (seen by a reader polling the SQLite ledger every 0.2 s from this process: it sees a
  row after its commit) and (c) the first HMI message for that room showing a balance at or below
  that deduction's ``balance_after``. Latency = that time minus the change; "server part" =
  that time minus the simulator's answer to the first energy-block read after the change (the
  poll that took the new value), so the poll phase (0..poll interval) is what separates them.
  Also the HMI push part for all rooms: receive time minus the room's ``ts`` (server time of its
  newest tag change). Changes of the last poll interval + 10 s are not made (nothing could see
  them before the end).
- Polling: each simulator process logs the time of every energy-block read per unit and counts
  every request; "polled vs expected" = requests answered during the measured window vs meters
  × 3 blocks × window / interval, and "meters with a gap" = meters whose energy block went
  longer than 1.5 intervals unread (or never) within the window.
- CPU and memory: the server's user+system CPU (psutil, its threads included, and its child
  processes: the billing process from 1,000 meters) sampled every second, in cores (1.0 = one
  core busy): mean over the window and peak of the 1-s and 10-s averages; RSS (the processes'
  sum) at the end and its peak; the main process's own mean and RSS beside them. The load average (1 min) sampled alongside and
  ``uptime`` before and after. Everything shares the machine's cores.
- Stalls: a thread GETs ``/favicon.ico`` from the server once a second; its answer time shows
  how long the server's event loop kept a request waiting (p50, p99, max, how many over 1 s).
  The OPC UA clients run with asyncua's connection watchdog at 30 s (its default, one read of
  the server state every second with a 1-s timeout, drops every client at the first stall of
  more than a second: seen at 10,000 meters).
- Window: from one poll interval (+5 s) after ``ready`` (the first polls are spread over one
  interval) to ``--duration`` seconds after ``ready``; then the clients close and the server
  gets SIGTERM: shutdown time (also until the last component logged "stopped"; with ``--py-spy``
  the stacks of a process that lingers after that) and exit code are reported (more than 120 s
  counts as a hang).

Figures: printed, and written to ``build/bench/pipeline.json`` (``--json``); the server's log
lines at warning and above are counted and the first ones kept. ``make bench`` runs this with
``--meters 1000 --duration 90 --poll-s 15`` (``bench/run_all.py``).

Run: ``python bench/pipeline/run.py --meters 10000 --duration 300`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left, bisect_right
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ADMIN_PASSWORD = "bench-admin-password"
TZ = "Asia/Shanghai"
PROFILE = "acrel-ddsy1352"
PER_FLOOR, PER_BUILDING = 50, 1000
NAMESPACE = "urn:prepaid-scada:site"
OPENING_MINOR = 100_000_000  # 1,000,000.00: no room runs out during a run


# -- the site --------------------------------------------------------------------------------
def meter_id(i: int) -> str:
    return f"E-{i:06d}"


def room_id(i: int) -> str:
    return f"R-{i:06d}"


def site_toml(n: int, per_link: int) -> str:
    out = [f'[site]\nid = "bench"\nname = "Bench"\ntimezone = "{TZ}"\n']
    for b in range(-(-n // PER_BUILDING)):
        out.append(f'[[buildings]]\nid = "B{b}"\nname = "Block {b}"\n')
    for f in range(-(-n // PER_FLOOR)):
        out.append(f'[[floors]]\nid = "F{f}"\nbuilding = "B{f * PER_FLOOR // PER_BUILDING}"\nlevel = {f % 20 + 1}\nname = "F{f}"\n')
    for i in range(n):
        out.append(f'[[rooms]]\nid = "{room_id(i)}"\nfloor = "F{i // PER_FLOOR}"\nname = "{i}"\n')
        out.append(
            f'[[meters]]\nid = "{meter_id(i)}"\nkind = "electricity"\nroom = "{room_id(i)}"\nprofile = "{PROFILE}"\n'
            f'link = "gw-{i // per_link}"\nunit_id = {i % per_link + 1}\nmax_power_kw = "40"\n'
        )
    return "\n".join(out)


def config_toml(folder: Path, n_links: int, ports: list[int], hmi_port: int, opcua_port: int, poll_s: float,
                influx_url: str | None) -> str:
    links = "".join(
        f'\n[[links]]\nname = "gw-{k}"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {ports[k]}\ntimeout_s = 2.0\n' for k in range(n_links)
    )
    historian = '[historian]\nbackend = "sqlite"\ninterval_min = 15\n'
    if influx_url:
        historian = (f'[historian]\nbackend = "influx"\ninterval_min = 15\n\n'
                     f'[historian.influx]\nurl = "{influx_url}"\ndatabase = "scada"\n')
    return f"""
[site]
name = "Bench"
timezone = "{TZ}"

[runtime]
data_dir = "{folder / 'var'}"
stop_timeout_s = 30

[database]
url = "sqlite:///{folder / 'scada.db'}"

[logging]
level = "info"
format = "json"

[admin]
user = "admin"
password = {{ env = "SCADA_ADMIN_PASSWORD" }}

[hmi]
host = "127.0.0.1"
port = {hmi_port}
ws_max_per_user = 100
ws_max_total = 1000

[opcua]
host = "127.0.0.1"
port = {opcua_port}
security = ["None", "Basic256Sha256_SignAndEncrypt"]
allow_anonymous = true
insecure_ok = true
insecure_reason = "a benchmark on loopback"

[modbus]
poll_intervals = {{ fast = {poll_s:g}, energy = {poll_s:g} }}

{historian}
[[historian.raw]]
tags = ["*.power"]
deadband = 0.05

[[historian.raw]]
tags = ["room:*.balance"]
deadband = 0
{links}
"""


async def seed(config_path: Path, site_path: Path, meters: int, pending: bool) -> dict[str, float]:
    """Import the site and open every room's account (before the server starts, not timed as start-up)."""
    from sqlalchemy import event

    from scada.config import load_config
    from scada.db import Database, async_url
    from scada.prepaid.accounts import OpenRequest
    from scada.prepaid.demo import DEMO_TOU
    from scada.prepaid.engine import PrepaidEngine
    from scada.prepaid.tariff_definition import TariffDefinition
    from scada.site.assets import AssetRegistry
    from scada.site.importer import import_site_file
    from scada.site.profiles import known_profile_names
    from scada.users.audit import Actor
    from tags import TagDB

    actor = Actor("bench", "cli")
    config = load_config(config_path)
    db = Database(async_url(config.database.url))
    # the seeding only: no fsync per account (the server later opens the file with synchronous=FULL)
    event.listen(db.engine.sync_engine, "connect", lambda con, _rec: con.cursor().execute("PRAGMA synchronous=OFF"))
    t0 = time.perf_counter()
    await db.upgrade()
    await import_site_file(db, site_path, actor, known_links={link.name for link in config.links},
                           known_profiles=known_profile_names(config))
    t1 = time.perf_counter()
    assets = AssetRegistry(db)
    await assets.load()
    engine = PrepaidEngine(config, db, assets, TagDB())
    await engine.load()
    await engine.tariffs.create("TOU", "TOU", "electricity", TariffDefinition.model_validate(DEMO_TOU), actor)
    defaults = engine.defaults()
    rooms = sorted(assets.snapshot.rooms)
    # the first account through the engine's own opening; the others written alike in batches
    await engine.open_account(OpenRequest(rooms[0], defaults, electricity_tariff_id="TOU", opening_minor=OPENING_MINOR), actor)
    for k in range(1, len(rooms), 1000):
        await open_batch(engine, db, rooms[k:k + 1000], defaults, actor, pending)
    t2 = time.perf_counter()
    engine.close()
    await db.dispose()
    return {"import_s": t1 - t0, "accounts_s": t2 - t1}


async def open_batch(engine: Any, db: Any, rooms: list[str], st: Any, actor: Any, pending: bool) -> None:
    """Open the rooms' accounts in one transaction, with the rows ``AccountService.open`` writes
    (account, opening entry, meter state and segment with the baseline pending, audit record):
    one transaction per account costs ~50-90 ms on this machine, i.e. over an hour at 50,000."""
    from scada.prepaid.deduction import new_state
    from scada.prepaid.ledger import post, thresholds_column
    from scada.prepaid.models import Account
    from scada.prepaid.money import format_minor
    from scada.users.audit import AuditLog
    from tags import utcnow

    snap = engine.assets.snapshot
    now = utcnow()
    async with db.transaction() as s:
        accounts = []
        for room in rooms:
            a = Account(
                room_id=room, open_room_id=room, state="open", opened_at=now, opened_by=actor.name,
                electricity_tariff_id="TOU", water_tariff_id=None, contact_name="", contact_phone=None, contact_email=None,
                language="en", credit_limit_minor=st.credit_limit_minor or 0, thresholds=thresholds_column(st.thresholds or ()),
                protected=False, friendly_credit=st.friendly_credit if st.friendly_credit is not None else True,
                auto_reconnect=st.auto_reconnect if st.auto_reconnect is not None else True,
                emergency_credit_minor=st.emergency_credit_minor or 0, emergency_taken_at=None, capacity_kva=None, demand_kw=None,
                charges_through=None, mode="prepaid", dunning_level=0, dunning_cut=False, balance_minor=0, remainder=Decimal(0),
                alarm_level=0, supply_state="on", reconnect_pending=False, updated_at=now,
            )
            s.add(a)
            accounts.append(a)
        await s.flush()
        for room, a in zip(rooms, accounts, strict=True):
            post(s, a, "opening", OPENING_MINOR, actor, now, reason="account opened")
            for m in snap.meters_of_room(room):
                if pending:
                    new_state(s, m.id, a.id, now, segment=1, baseline=None, baseline_ts=None, reason="account opened")
                else:  # opened with the meter's reading: the simulated meters start at 0
                    new_state(s, m.id, a.id, now, segment=1, baseline=Decimal(0), baseline_ts=now, reason="account opened",
                              registers=dict.fromkeys(("sharp", "peak", "flat", "valley"), Decimal(0)))
            engine.biller.update_level(a, credited=True)
            AuditLog.record(s, actor, "account.open", "account", str(a.id), reason="",
                            after={"room": room, "opening_balance": format_minor(OPENING_MINOR, 2), "tariffs": {"electricity": "TOU",
                                   "water": None}, "baselines": {m.id: None for m in snap.meters_of_room(room)}})


# -- the simulators (worker processes) -------------------------------------------------------
def sim_worker(spec: dict[str, Any], conn: Any) -> None:
    asyncio.run(_sim(spec, conn))


async def _sim(spec: dict[str, Any], conn: Any) -> None:
    from protocols.library import load_library
    from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
    from protocols.modbus.sim.site import SimLink

    profiles = load_library()
    sim = Simulator(profiles, [SimLink(name, port, "tcp") for name, port in spec["links"]], control_port=None, speed=1.0,
                    tou=TouSchedule(timezone=TZ), seed=spec["seed"])
    unit_meter: dict[tuple[str, int], str] = {}
    for mid, link, unit in spec["meters"]:
        sim.add_meter(MeterSpec(mid, PROFILE, link, unit, max_power_kw=8.0))
        unit_meter[(link, unit)] = mid
    probes: list[str] = spec["probes"]
    for p in probes:
        sim.set_load(p, 0.0)
    reads: dict[str, list[float]] = {mid: [] for mid in unit_meter.values()}
    window: list[float] = []
    counts = {"requests": 0, "in_window": 0}

    def wrap(unit: Any, mid: str) -> None:
        orig = unit.read
        times = reads[mid]

        def read(fc: int, address: int, count: int, now: float) -> Any:
            t = time.time()
            if address == 0:
                times.append(t)
            counts["requests"] += 1
            if window and window[0] <= t < window[1]:
                counts["in_window"] += 1
            return orig(fc, address, count, now)

        unit.read = read

    for name, server in sim.servers.items():
        for uid, unit in server.units.items():
            wrap(unit, unit_meter[(name, uid)])
    await sim.start()
    conn.send({"ports": sim.ports})
    events: list[tuple[str, float, float]] = []
    msg = await asyncio.to_thread(conn.recv)  # ("window", start, end, probes_until)
    _, start, end, until = msg
    window.extend([start, end])
    rng = random.Random(spec["seed"])
    poll_s = spec["poll_s"]
    schedule = sorted((start + rng.uniform(0, poll_s) + k * poll_s, p) for p in probes
                      for k in range(int((until - start) // poll_s) + 1))
    schedule = [(t, p) for t, p in schedule if t < until]
    for t, p in schedule:
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        m = sim.meters[p]
        now = sim.clock()
        m.advance(now)
        period, _ = m.tou.period_at(now)
        d = 40_000  # 0.04 kWh in millionths: at least 0.01 of money at the lowest price (0.30/kWh)
        m.acc["total"] += d
        m.acc[period] += d
        events.append((p, round(m.acc["total"] / 1e6, 2), time.time()))
    await asyncio.to_thread(conn.recv)  # "stop"
    await sim.stop()
    conn.send({"events": events, "reads": reads, "counts": counts})


# -- OPC UA clients (one worker process) ------------------------------------------------------
def opcua_worker(url: str, items: list[list[str]], conn: Any) -> None:
    asyncio.run(_opcua(url, items, conn))


async def _opcua(url: str, items: list[list[str]], conn: Any) -> None:
    import logging

    from asyncua import Client

    logging.getLogger("asyncua").setLevel(logging.ERROR)

    seen: dict[str, list[tuple[float, float]]] = {}  # probe tag -> [(receive time, value)]
    probes = {t for tags in items for t in tags if t.startswith("@")}
    total: dict[str, Any] = {"notifications": 0, "errors": 0, "status_changes": [], "last_notification": {}}

    class Handler:
        def __init__(self, k: int) -> None:
            self.k = k

        def status_change_notification(self, status: Any) -> None:
            total["status_changes"].append((time.time(), self.k, str(status)))

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            total["last_notification"][self.k] = time.time()
            total["notifications"] += 1
            ident = node.nodeid.Identifier
            if ident in probes_plain and isinstance(val, (int, float)):
                seen.setdefault(ident, []).append((time.time(), float(val)))

    probes_plain = {t[1:] for t in probes}
    clients = []
    try:
        for k, tags in enumerate(items):
            # asyncua's own watchdog reads the server's state every second with a 1-s timeout and drops
            # the connection on one slow answer; a control-room client waits longer (the stalls are
            # measured by the HTTP probe)
            client = Client(url, timeout=120, watchdog_intervall=30.0)
            await client.connect()
            clients.append(client)
            ns = await client.get_namespace_index(NAMESPACE)
            sub = await client.create_subscription(100, Handler(k))
            nodes = [client.get_node(f"ns={ns};s={t.lstrip('@')}") for t in tags]
            handles = await sub.subscribe_data_change(nodes)
            total["errors"] += sum(1 for h in handles if not isinstance(h, int))
        conn.send({"ready": True, "errors": total["errors"]})
        await asyncio.to_thread(conn.recv)  # "stop"
    finally:
        for client in clients:
            try:
                await asyncio.wait_for(client.disconnect(), 10)
            except Exception:  # noqa: BLE001 - a client that cannot say goodbye does not matter here
                pass
    conn.send({"seen": seen, **total})


# -- HMI clients (one worker process) ---------------------------------------------------------
def hmi_worker(url: str, token: str, pages: list[int], probe_rooms: list[str], conn: Any) -> None:
    asyncio.run(_hmi(url, token, pages, set(probe_rooms), conn))


async def _hmi(url: str, token: str, pages: list[int], probe_rooms: set[str], conn: Any) -> None:
    from websockets.asyncio.client import connect

    seen: dict[str, list[tuple[float, float]]] = {}  # probe room -> [(receive time, balance)]
    push_lat: list[float] = []
    out = {"messages": 0, "rooms": 0, "errors": 0}
    stop = asyncio.Event()

    async def client(page: int, ready: asyncio.Event) -> None:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=64 * 2**20,
                           open_timeout=120) as ws:
            await ws.send(json.dumps({"type": "subscribe", "view": "overview", "page": page, "page_size": 1000}))
            ready.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                now = time.time()
                msg = json.loads(raw)
                if msg.get("type") == "error":
                    out["errors"] += 1
                    continue
                out["messages"] += 1
                for r in msg.get("rooms") or []:
                    out["rooms"] += 1
                    if msg.get("type") == "update" and r.get("ts"):
                        push_lat.append(now - r["ts"])
                    if r.get("id") in probe_rooms and r.get("balance") is not None:
                        seen.setdefault(r["id"], []).append((now, float(r["balance"])))

    readies = [asyncio.Event() for _ in pages]
    tasks = [asyncio.create_task(client(p, r)) for p, r in zip(pages, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 300)
    conn.send({"ready": True})
    await asyncio.to_thread(conn.recv)  # "stop"
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send({"seen": seen, "push_lat": push_lat, **out})


# -- this process: samplers ------------------------------------------------------------------
class Sampler(threading.Thread):
    """The server's CPU and RSS and the load average, once a second: of the server's process
    tree (its billing process included, from 1,000 meters) and of its main process alone."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        # (time, cpu seconds, rss bytes, load1, main process's cpu seconds, its rss bytes)
        self.samples: list[tuple[float, float, float, float, float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.halt.is_set():
            try:
                c = self.proc.cpu_times()
                rss = self.proc.memory_info().rss
                children = self.proc.children(recursive=True)
            except Exception:  # noqa: BLE001 - the process ended
                return
            main_cpu = c.user + c.system
            cpu, total_rss = main_cpu + c.children_user + c.children_system, rss  # children ended and reaped
            for child in children:
                try:
                    t = child.cpu_times()
                    cpu += t.user + t.system
                    total_rss += child.memory_info().rss
                except psutil.Error:  # ended meanwhile
                    continue
            self.samples.append((time.time(), cpu, total_rss, os.getloadavg()[0], main_cpu, rss))
            self.halt.wait(1.0)

    def figures(self, start: float, end: float) -> dict[str, float]:
        s = [x for x in self.samples if start <= x[0] <= end]
        if len(s) < 3:
            return {}
        rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(s, s[1:], strict=False)]
        tens = [(s[i + 10][1] - s[i][1]) / (s[i + 10][0] - s[i][0]) for i in range(0, len(s) - 10)]
        return {
            "cpu_cores_mean": (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0]),
            "cpu_cores_peak_1s": max(rates),
            "cpu_cores_peak_10s": max(tens) if tens else max(rates),
            "main_process_cpu_cores_mean": (s[-1][4] - s[0][4]) / (s[-1][0] - s[0][0]),
            "rss_mib_end": s[-1][2] / 2**20,
            "rss_mib_peak": max(x[2] for x in self.samples) / 2**20,
            "main_process_rss_mib_end": s[-1][5] / 2**20,
            "load1_mean": statistics.fmean(x[3] for x in s),
            "load1_max": max(x[3] for x in s),
        }


class HttpProbe(threading.Thread):
    """GET /favicon.ico (a handler that does nothing) once a second: how long the server's event
    loop keeps a request waiting."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float]] = []  # (time, seconds)
        self.halt = threading.Event()

    def run(self) -> None:
        import urllib.error
        import urllib.request

        while not self.halt.is_set():
            t = time.time()
            try:
                with urllib.request.urlopen(self.url, timeout=120) as r:
                    r.read()
                self.samples.append((t, time.time() - t))
            except urllib.error.HTTPError:  # an answer all the same (404 without a favicon)
                self.samples.append((t, time.time() - t))
            except OSError:
                self.samples.append((t, float("inf")))
            self.halt.wait(max(0.0, 1.0 - (time.time() - t)))

    def figures(self, start: float, end: float) -> dict[str, Any]:
        v = [d for t, d in self.samples if start <= t < end]
        return {**lat(v), "over_1s": sum(1 for d in v if d > 1), "over_10s": sum(1 for d in v if d > 10)}


class LedgerReader(threading.Thread):
    """Polls the ledger (read-only, beside the server) for deductions; notes when each probe's row
    is first seen (after its commit) and how many rows per second appear."""

    def __init__(self, db: Path, probes: set[str]) -> None:
        super().__init__(daemon=True)
        self.db, self.probes = db, probes
        self.rows: dict[str, list[tuple[float, float, int]]] = {}  # meter -> [(seen, reading_to, balance_after_minor)]
        self.seen_times: list[float] = []  # one per deduction row
        self.halt = threading.Event()
        self.last_id = 0

    def run(self) -> None:
        con = None
        while not self.halt.is_set():
            try:
                if con is None:
                    con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
                got = con.execute(
                    "SELECT id, meter_id, reading_to, balance_after_minor FROM prepaid_ledger WHERE id > ? AND kind = 'deduction' "
                    "ORDER BY id", (self.last_id,)).fetchall()
            except sqlite3.Error:
                got = []
            now = time.time()
            for rid, mid, reading, bal in got:
                self.last_id = max(self.last_id, rid)
                self.seen_times.append(now)
                if mid in self.probes:
                    self.rows.setdefault(mid, []).append((now, float(reading), bal))
            self.halt.wait(0.2)
        if con is not None:
            con.close()


class ServerLog(threading.Thread):
    """Reads the server's JSON log lines: the ``ready`` line, and warnings and errors."""

    def __init__(self, stream: Any, path: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.path = stream, path
        self.ready_at: float | None = None
        self.components: dict[str, int] = {}
        self.problems: list[str] = []
        self.levels: dict[str, int] = {}
        self.stopped_at: float | None = None

    def run(self) -> None:
        with self.path.open("w", encoding="utf-8") as f:
            for raw in self.stream:
                line = raw.decode("utf-8", "replace")
                f.write(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.levels["other"] = self.levels.get("other", 0) + 1
                    if len(self.problems) < 200:
                        self.problems.append(line.rstrip())
                    continue
                level = str(rec.get("level", "")).lower()
                self.levels[level] = self.levels.get(level, 0) + 1
                m = rec.get("msg") or rec.get("message")
                if m == "ready" and self.ready_at is None:
                    self.ready_at = time.time()
                elif m == "stopped" and rec.get("component") == "database":  # the last one
                    self.stopped_at = time.time()
                elif m == "started" and "component" in rec:
                    self.components[rec["component"]] = rec.get("ms", 0)
                if level in ("warning", "error", "critical") and len(self.problems) < 200:
                    self.problems.append(line.rstrip())


# -- figures ---------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def lat(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_s": pct(values, 0.5), "p99_s": pct(values, 0.99), "max_s": max(values) if values else float("nan")}


def first_after(series: list[tuple[float, float]], t: float, ok: Any) -> float | None:
    for when, value in series:
        if when >= t and ok(value):
            return when
    return None


def latencies(events: list[tuple[str, float, float]], reads: dict[str, list[float]], opc: dict[str, list[tuple[float, float]]],
              ledger: dict[str, list[tuple[float, float, int]]], hmi: dict[str, list[tuple[float, float]]], minor: int = 2,
              ) -> dict[str, Any]:
    out: dict[str, list[float]] = {k: [] for k in ("opcua", "opcua_server", "hmi", "hmi_server", "ledger", "ledger_server", "poll_wait")}
    missing = {"opcua": 0, "hmi": 0, "ledger": 0, "poll": 0}
    unseen: list[dict[str, Any]] = []
    for meter, value, t in events:
        times = reads.get(meter, [])
        i = bisect_right(times, t)
        polled = times[i] if i < len(times) else None
        if polled is None:
            missing["poll"] += 1
        else:
            out["poll_wait"].append(polled - t)
        got = first_after(opc.get(meter + ".energy_total", []), t, lambda v, value=value: v >= value - 1e-9)
        if got is None:
            missing["opcua"] += 1
        else:
            out["opcua"].append(got - t)
            if polled is not None:
                out["opcua_server"].append(got - polled)
        row = next(((seen, bal) for seen, reading, bal in ledger.get(meter, []) if reading >= value - 1e-9), None)
        if row is None or row[0] < t:
            missing["ledger"] += 1
            missing["hmi"] += 1
            continue
        out["ledger"].append(row[0] - t)
        if polled is not None:
            out["ledger_server"].append(row[0] - polled)
        balance = row[1] / 10**minor
        room = "R-" + meter[2:]
        got = first_after(hmi.get(room, []), t, lambda b, balance=balance: b <= balance + 1e-9)
        if got is None:
            missing["hmi"] += 1
            if len(unseen) < 5:
                unseen.append({"meter": meter, "value": value, "t": t, "ledger": ledger.get(meter, []), "hmi": hmi.get(room, [])})
        else:
            out["hmi"].append(got - t)
            if polled is not None:
                out["hmi_server"].append(got - polled)
    return {"changes": len(events), "not_seen": missing, **{k: lat(v) for k, v in out.items()}, "hmi_unseen_examples": unseen}


def coverage(reads: dict[str, list[float]], start: float, end: float, poll_s: float) -> dict[str, Any]:
    gap_meters, never = 0, 0
    worst = 0.0
    for times in reads.values():
        lo, hi = bisect_left(times, start), bisect_right(times, end)
        inside = times[lo:hi]
        if not inside:
            never += 1
            gap_meters += 1
            worst = max(worst, end - start)
            continue
        edges = [start] + inside + [end]
        gap = max(b - a for a, b in zip(edges, edges[1:], strict=False))
        worst = max(worst, gap)
        if gap > 1.5 * poll_s:
            gap_meters += 1
    return {"meters_with_gap": gap_meters, "meters_never_read": never, "longest_gap_s": worst}


# -- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    from tests.services import InfluxServer, free_port, wait_port

    n, per_link = args.meters, args.per_link
    n_links = -(-n // per_link)
    probes_n = min(n, max(20, round(n * args.probe_share)))
    step = n / probes_n
    probe_idx = sorted({int(k * step) for k in range(probes_n)})
    probes = [meter_id(i) for i in probe_idx]
    results.update({"bench": "pipeline", "meters": n, "links": n_links, "per_link": per_link, "poll_s": args.poll_s,
                               "duration_s": args.duration, "sims": args.sims, "probes": len(probes),
                               "historian": "influx" if args.influx else "sqlite", "python": platform.python_version(),
                               "cores": os.cpu_count(), "uptime_before": _uptime()})
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    ctx = multiprocessing.get_context("spawn")
    sims: list[tuple[Any, Any]] = []
    workers: list[tuple[Any, Any]] = []
    server: subprocess.Popen[bytes] | None = None
    influx = None
    try:
        print(f"pipeline bench: {n:,} meters on {n_links} links in {args.sims} simulator processes, poll every {args.poll_s:g} s, "
              f"{args.opcua_clients} OPC UA clients × {args.opcua_items} items, {args.hmi_clients} HMI clients, "
              f"historian {results['historian']}, {args.duration:g} s after ready; {len(probes)} probe meters", flush=True)
        print(f"python {platform.python_version()}, {os.cpu_count()} cores; {results['uptime_before']}", flush=True)
        # simulators first: they pick their ports
        meters_by_sim: list[list[tuple[str, str, int]]] = [[] for _ in range(args.sims)]
        links_by_sim: list[list[tuple[str, int]]] = [[] for _ in range(args.sims)]
        for k in range(n_links):
            links_by_sim[k % args.sims].append((f"gw-{k}", 0))
        for i in range(n):
            k = i // per_link
            meters_by_sim[k % args.sims].append((meter_id(i), f"gw-{k}", i % per_link + 1))
        probe_set = set(probes)
        ports: dict[str, int] = {}
        for s in range(args.sims):
            parent, child = ctx.Pipe()
            spec = {"links": links_by_sim[s], "meters": meters_by_sim[s], "probes": [m for m, _, _ in meters_by_sim[s] if m in probe_set],
                    "seed": s + 1, "poll_s": args.poll_s}
            proc = ctx.Process(target=sim_worker, args=(spec, child), daemon=True)
            proc.start()
            sims.append((proc, parent))
        for _, conn in sims:
            if not conn.poll(600):
                raise SystemExit("a simulator did not start")
            ports.update(conn.recv()["ports"])
        influx_url = None
        if args.influx:
            influx = InfluxServer()
            influx.start()
            influx_url = influx.url
        hmi_port, opcua_port = free_port(), free_port()
        (tmp / "site.toml").write_text(site_toml(n, per_link), encoding="utf-8")
        cfg = tmp / "scada.toml"
        cfg.write_text(config_toml(tmp, n_links, [ports[f"gw-{k}"] for k in range(n_links)], hmi_port, opcua_port, args.poll_s,
                                   influx_url), encoding="utf-8")
        os.environ["SCADA_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        t = time.perf_counter()
        cached = Path(args.seed_cache) / f"seed-{n}-{per_link}{'-pending' if args.pending_baselines else ''}.db" if args.seed_cache else None
        if cached is not None and cached.exists():
            shutil.copy(cached, tmp / "scada.db")
            results["seed"] = {"import_s": 0.0, "accounts_s": 0.0, "cached": str(cached)}
        else:
            results["seed"] = asyncio.run(seed(cfg, tmp / "site.toml", n, args.pending_baselines))
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(tmp / "scada.db")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.close()
                shutil.copy(tmp / "scada.db", cached)
        print(f"seeded in {time.perf_counter() - t:.0f} s (site import {results['seed']['import_s']:.0f} s, "
              f"{n:,} accounts opened in {results['seed']['accounts_s']:.0f} s)", flush=True)

        # the server
        t_spawn = time.time()
        server = subprocess.Popen([sys.executable, "-m", "scada", "--log-format", "json", "run", "--config", str(cfg)],
                                  cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
        assert server.stdout is not None
        slog = ServerLog(server.stdout, tmp / "server.log")
        slog.start()
        sampler = Sampler(server.pid)
        sampler.start()
        while slog.ready_at is None:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode} before it was ready:\n" + "\n".join(slog.problems[-20:]))
            if time.time() - t_spawn > args.start_timeout:
                raise SystemExit(f"the server was not ready within {args.start_timeout:g} s")
            time.sleep(0.05)
        ready = slog.ready_at
        results["startup_s"] = ready - t_spawn
        results["startup_components_ms"] = dict(sorted(slog.components.items(), key=lambda kv: -kv[1])[:8])
        print(f"start-up to ready: {results['startup_s']:.1f} s (slowest components, ms: {results['startup_components_ms']})", flush=True)
        ledger = LedgerReader(tmp / "scada.db", probe_set)
        ledger.start()
        http_probe = HttpProbe(f"http://127.0.0.1:{hmi_port}/favicon.ico")
        http_probe.start()

        # the clients
        wait_port(hmi_port, 30)
        base = f"http://127.0.0.1:{hmi_port}"
        req = urllib.request.Request(base + "/api/v1/auth/token", data=json.dumps({"user": "admin", "password": ADMIN_PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json"})
        token = None
        results["sign_in_failures"] = []
        for _ in range(10):  # a sign-in refused with 500 ("database is locked") is retried and counted
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    token = json.loads(r.read())["token"]
                break
            except urllib.error.HTTPError as exc:
                results["sign_in_failures"].append(f"{exc.code} {time.time() - ready:.0f} s after ready")
                time.sleep(2)
        if token is None:
            raise SystemExit(f"no API token: {results['sign_in_failures']}")
        probe_items = [meter_id(i) + ".energy_total" for i in probe_idx]
        others = [f"{meter_id(i)}.{p}" for p in ("energy_total", "power", "voltage", "current", "power_factor", "relay_closed",
                                                  "energy_peak", "energy_flat", "energy_valley", "energy_sharp")
                  for i in range(n) if i not in set(probe_idx)]
        items: list[list[str]] = []
        for c in range(args.opcua_clients):
            mine = ["@" + t for t in probe_items[c::args.opcua_clients]]
            fill = args.opcua_items - len(mine)
            start = (c * fill) % max(1, len(others))
            items.append(mine + (others[start:start + fill] + others[:max(0, start + fill - len(others))])[:fill])
        pages = [c % -(-n // 1000) + 1 for c in range(args.hmi_clients)]
        probe_rooms = [room_id(i) for i in probe_idx]
        t_clients = time.time()
        for target, wargs in ((opcua_worker, (f"opc.tcp://127.0.0.1:{opcua_port}", items)),
                              (hmi_worker, (base.replace("http://", "ws://") + "/ws", token, pages, probe_rooms))):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(*wargs, child), daemon=True)
            proc.start()
            workers.append((proc, parent))
        for _proc, conn in workers:
            if not conn.poll(600):
                raise SystemExit("the clients did not connect")
            msg = conn.recv()
            if msg.get("errors"):
                print(f"  {msg['errors']} OPC UA items not created", flush=True)
        results["clients_connect_s"] = time.time() - t_clients
        print(f"clients connected and subscribed in {results['clients_connect_s']:.1f} s", flush=True)
        start = max(ready + args.poll_s + 5, time.time() + 1)
        end = ready + args.duration
        if end - start < args.poll_s:
            end = start + args.poll_s
        until = end - args.poll_s - 10
        for _, conn in sims:
            conn.send(("window", start, end, until))
        print(f"measuring from {start - ready:.0f} s to {end - ready:.0f} s after ready; probe changes until {until - ready:.0f} s",
              flush=True)
        while time.time() < end:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode} during the run:\n" + "\n".join(slog.problems[-20:]))
            time.sleep(1)
        results["uptime_end"] = _uptime()
        results["server"] = sampler.figures(start, end)
        results["http_probe"] = http_probe.figures(start, end)
        http_probe.halt.set()
        outs = []
        for _, conn in workers:
            conn.send("stop")
        for proc, conn in workers:
            outs.append(conn.recv() if conn.poll(120) else {})
            proc.join(10)
        opc_out, hmi_out = outs
        ledger.halt.set()
        ledger.join(5)
        # shutdown
        t_stop = time.time()
        server.send_signal(signal.SIGTERM)
        try:
            dumped = False
            while server.poll() is None and time.time() - t_stop < 120:
                time.sleep(0.1)
                # the components all stopped but the process goes on: show where (py-spy, if installed)
                if (not dumped and slog.stopped_at is not None and time.time() - slog.stopped_at > 5 and args.py_spy
                        and server.poll() is None):
                    dumped = True
                    dump = subprocess.run([args.py_spy, "dump", "--pid", str(server.pid)], capture_output=True, text=True, timeout=60)
                    results["exit_stacks"] = (dump.stdout + dump.stderr)[-20000:]
            code = server.wait(0.1)
            results["shutdown_s"] = time.time() - t_stop
            results["components_stopped_s"] = (slog.stopped_at - t_stop) if slog.stopped_at else None
            results["exit_code"] = code
        except subprocess.TimeoutExpired:
            results["shutdown_s"] = None
            results["exit_code"] = "hang: killed after 120 s"
            server.kill()
            server.wait()
        sampler.halt.set()
        slog.join(10)
        events: list[tuple[str, float, float]] = []
        reads: dict[str, list[float]] = {}
        counts = {"requests": 0, "in_window": 0}
        for _, conn in sims:
            conn.send("stop")
        for proc, conn in sims:
            out = conn.recv() if conn.poll(120) else {"events": [], "reads": {}, "counts": {}}
            events += out["events"]
            reads.update(out["reads"])
            for key in counts:
                counts[key] += out["counts"].get(key, 0)
            proc.join(10)
        sims.clear()
        window = end - start
        expected = n * 3 * window / args.poll_s
        results["window_s"] = window
        results["polling"] = {"requests_in_window": counts["in_window"], "expected": round(expected),
                              "ratio": counts["in_window"] / expected, **coverage(reads, start, end, args.poll_s)}
        first = [t[0] for t in reads.values() if t]
        results["polling"]["all_read_once_s_after_ready"] = (max(first) - ready) if len(first) == n else None
        deductions = [s for s in ledger.seen_times if start <= s < end]
        results["ledger"] = {"deductions_in_window": len(deductions), "per_s": len(deductions) / window}
        results["latency"] = latencies(events, reads, opc_out.get("seen", {}), ledger.rows, hmi_out.get("seen", {}))
        results["hmi"] = {"messages": hmi_out.get("messages"), "room_updates": hmi_out.get("rooms"), "errors": hmi_out.get("errors"),
                          "push_latency_all_rooms": lat(hmi_out.get("push_lat", []))}
        results["opcua"] = {"notifications": opc_out.get("notifications"), "item_errors": opc_out.get("errors"),
                            "status_changes": [(round(t - ready, 1), k, st) for t, k, st in opc_out.get("status_changes", [])],
                            "last_notification_s_after_ready": {k: round(t - ready, 1)
                                                                for k, t in opc_out.get("last_notification", {}).items()}}
        results["server_log"] = {"levels": slog.levels, "first_problems": slog.problems[:20]}
        return results
    finally:
        if args.keep_log and (tmp / "server.log").exists():
            shutil.copy(tmp / "server.log", args.keep_log)
        for proc, _conn in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        for proc, _conn in sims:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        if influx is not None:
            influx.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return ""


def show(r: dict[str, Any]) -> None:
    s, p, lt = r.get("server", {}), r["polling"], r["latency"]

    def ms(x: dict[str, Any]) -> str:
        return f"p50 {x['p50_s'] * 1000:,.0f} ms, p99 {x['p99_s'] * 1000:,.0f} ms (n={x['n']})"

    print(f"\nresults ({r['meters']:,} meters, window {r['window_s']:.0f} s):")
    print(f"  start-up to ready: {r['startup_s']:.1f} s; every meter read once {p['all_read_once_s_after_ready']} s after ready")
    if s:
        print(f"  server CPU: mean {s['cpu_cores_mean']:.2f} cores, peak {s['cpu_cores_peak_10s']:.2f} (10 s) / "
              f"{s['cpu_cores_peak_1s']:.2f} (1 s); RSS {s['rss_mib_end']:,.0f} MiB (peak {s['rss_mib_peak']:,.0f}); "
              f"its main process alone: {s['main_process_cpu_cores_mean']:.2f} cores, {s['main_process_rss_mib_end']:,.0f} MiB")
        print(f"  load average (1 min) during the window: mean {s['load1_mean']:.1f}, max {s['load1_max']:.1f}")
    print(f"  polled: {p['requests_in_window']:,} requests of {p['expected']:,} expected ({p['ratio']:.1%}); "
          f"{p['meters_with_gap']} meters with a gap > 1.5 intervals ({p['meters_never_read']} never read), longest gap {p['longest_gap_s']:.0f} s")
    print(f"  ledger: {r['ledger']['deductions_in_window']:,} deductions committed in the window ({r['ledger']['per_s']:.0f}/s)")
    print(f"  probe changes: {lt['changes']}, not seen: {lt['not_seen']}")
    print(f"  change -> poll (poll phase): {ms(lt['poll_wait'])}")
    for k, label in (("opcua", "OPC UA data change"), ("hmi", "HMI message"), ("ledger", "ledger row committed")):
        print(f"  change -> {label}: {ms(lt[k])}; from the poll: {ms(lt[k + '_server'])}")
    print(f"  HMI push, room ts -> client, all rooms: {ms(r['hmi']['push_latency_all_rooms'])}")
    hp = r["http_probe"]
    print(f"  HTTP request to the server (GET /favicon.ico, 1/s): {ms(hp)}, max {hp['max_s'] * 1000:,.0f} ms, "
          f"{hp['over_1s']} over 1 s, {hp['over_10s']} over 10 s")
    o = r["opcua"]
    print(f"  OPC UA: {o['notifications']:,} notifications; status changes {o['status_changes'][:5]}; "
          f"last notification per client (s after ready) {o['last_notification_s_after_ready']}")
    print(f"  shutdown: {r['shutdown_s']} s (components stopped after {r.get('components_stopped_s')} s), exit code {r['exit_code']}; "
          f"server log: {r['server_log']['levels']}")
    for line in r["server_log"]["first_problems"][:5]:
        print(f"    {line[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=50_000)
    parser.add_argument("--per-link", type=int, default=100, help="meters (unit ids) per Modbus link")
    parser.add_argument("--sims", type=int, default=4, help="simulator processes")
    parser.add_argument("--poll-s", type=float, default=60.0, help="poll interval of every register block")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds after the server is ready")
    parser.add_argument("--opcua-clients", type=int, default=10)
    parser.add_argument("--opcua-items", type=int, default=1000)
    parser.add_argument("--hmi-clients", type=int, default=10)
    parser.add_argument("--probe-share", type=float, default=0.02, help="share of meters whose changes are timed")
    parser.add_argument("--influx", action="store_true", help="historian on a throw-away InfluxDB 1.x instead of SQLite")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--keep-log", help="copy the server's log here")
    parser.add_argument("--pending-baselines", action="store_true",
                        help="open the accounts without a reading (each meter's first poll sets its baseline, as after opening "
                             "accounts with no reading at hand)")
    parser.add_argument("--seed-cache", help="keep the seeded database here per site size and reuse it (repeated runs)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"),
                        help="py-spy binary: dumps the server's stacks if it lingers after its components stopped")
    parser.add_argument("--json", default="build/bench/pipeline.json", help="where the figures are written")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    try:
        run(args, results)
        show(results)
    except SystemExit as exc:  # the run failed (the server did not start, or died): say so in the figures too
        results["error"] = str(exc.code)
        print(results["error"])
    out = Path(args.json)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"figures written to {out}")
    return 0 if results.get("exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
