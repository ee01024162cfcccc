"""Modbus poller: full poll-cycle time, requests/s and CPU at 1,000 and 10,000 meters.

How it is measured: the simulator runs in another process (``scada simulate``, 200 meters per
port, Acrel DDSY1352 profile: 3 block reads per meter per cycle); this process runs the real
poller (``ModbusPoller``, pymodbus client, one link per port, 4 connections per link) and its
TagDB. CPU is this process's ``process_time`` (the poller, its tag writes and the event loop);
the simulator's CPU is read with psutil and shown apart.

1. clients: CPU per request of the pymodbus client (as the poller wraps it) and of a lean
   hand-built Modbus TCP client on the same server, 1 and 4 requests in flight;
2. full cycle: every meter's 3 reads due at once, as fast as the links allow: wall time until
   every meter has been read once, requests/s, CPU seconds per 1,000 requests;
3. steady state at the goal: every class every 60 s (3 reads per meter per minute), first polls
   spread over the minute; CPU of the poller over one whole minute as a share of one core.
   Goal: 10,000 meters in under half of one core.

Run: ``python bench/modbus/run.py`` (``--quick`` for a short run: 1,000 meters, 10 s steady).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402

from protocols.modbus.client import ModbusConnection  # noqa: E402
from protocols.modbus.config import LinkConfig, ModbusConfig  # noqa: E402
from protocols.modbus.frames import decode_mbap, encode_mbap, read_registers_pdu  # noqa: E402
from protocols.modbus.poller import DeviceSpec, ModbusPoller  # noqa: E402
from protocols.modbus.profile import ProfileLibrary  # noqa: E402
from tags import TagDB  # noqa: E402

PER_PORT = 200
PROFILE = "acrel-ddsy1352"


class Simulate:
    """``scada simulate`` in its own process."""

    def __init__(self, meters: int) -> None:
        self.meters = meters
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scada", "--log-level", "warning", "simulate", "--meters", str(meters), "--port", "0",
             "--per-port", str(PER_PORT), "--profile", PROFILE],  # no control API: not used here
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.ports: list[int] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"modbus port\d+ 127\.0\.0\.1:(\d+)", line)
            if m:
                self.ports.append(int(m.group(1)))
            if line.startswith("simulating"):
                break
        if not self.ports:
            raise RuntimeError("simulator did not start: " + (self.proc.stderr.read() if self.proc.stderr else ""))
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


# -- 1. clients -------------------------------------------------------------------------------------
class LeanClient(asyncio.Protocol):
    """A minimal pipelining Modbus TCP client (MBAP framing from protocols.modbus.frames)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.tid = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        frames, used = decode_mbap(self.buffer)
        self.buffer = self.buffer[used:]
        for f in frames:
            fut = self.waiting.pop(f.tid, None)
            if fut is not None and not fut.done():
                fut.set_result(f.pdu)

    async def read(self, unit: int, address: int, count: int) -> list[int]:
        self.tid = (self.tid + 1) & 0xFFFF
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[self.tid] = fut
        assert self.transport is not None
        self.transport.write(encode_mbap(self.tid, unit, read_registers_pdu(3, address, count)))
        pdu = await asyncio.wait_for(fut, 2)
        return [int.from_bytes(pdu[2 + 2 * i:4 + 2 * i], "big") for i in range(pdu[1] // 2)]


async def bench_clients(port: int, requests: int) -> list[tuple[str, int, float, float]]:
    link = LinkConfig(name="b", host="127.0.0.1", port=port, timeout_s=2.0)
    out = []
    for in_flight in (1, 4):
        conns = [ModbusConnection(link) for _ in range(in_flight)]
        for c in conns:
            await c.connect()

        async def worker(c: ModbusConnection, n: int) -> None:
            for i in range(n):
                await c.read(1 + i % 10, 3, 0x0000, 10)

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(c, requests // in_flight) for c in conns))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        for c in conns:
            c.close()
        out.append(("pymodbus client", in_flight, cpu / requests * 1e6, requests / wall))

        loop = asyncio.get_running_loop()
        transport, lean = await loop.create_connection(LeanClient, "127.0.0.1", port)

        async def lean_worker(client: LeanClient, n: int) -> None:
            for i in range(n):
                await client.read(1 + i % 10, 0x0000, 10)

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lean_worker(lean, requests // in_flight) for _ in range(in_flight)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        transport.close()
        out.append(("lean client (bench only)", in_flight, cpu / requests * 1e6, requests / wall))
    return out


# -- 2. and 3. the poller ------------------------------------------------------------------------------
def poller_for(sim: Simulate, interval: float, spread: float) -> tuple[ModbusPoller, TagDB, list[str]]:
    tagdb = TagDB()
    links = [LinkConfig(name=f"port{k}", host="127.0.0.1", port=p, timeout_s=5.0) for k, p in enumerate(sim.ports)]
    options = ModbusConfig(poll_intervals={"fast": interval, "energy": interval}, start_spread=spread)
    poller = ModbusPoller(tagdb, links, ProfileLibrary.load(), options)
    ids = []
    specs = []
    for i in range(sim.meters):
        meter_id = f"SIM-{i + 1:05d}"
        ids.append(meter_id)
        specs.append(DeviceSpec(meter_id, PROFILE, f"port{i // PER_PORT}", 1 + i % PER_PORT))
    poller.set_devices(specs)
    return poller, tagdb, ids


async def full_cycle(sim: Simulate) -> dict[str, float]:
    t_setup = time.perf_counter()
    poller, tagdb, ids = poller_for(sim, interval=86_400, spread=0.0)  # everything due now, once
    setup_s = time.perf_counter() - t_setup
    cpu0, t0, sim0 = time.process_time(), time.perf_counter(), sim.cpu()
    task = asyncio.create_task(poller.run())
    devices = list(poller.devices.values())
    while any(d.stats.polls < 2 for d in devices):  # 2 classes: 3 block reads
        await asyncio.sleep(0.01)
    wall, cpu, sim_cpu = time.perf_counter() - t0, time.process_time() - cpu0, sim.cpu() - sim0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    requests = sum(s.requests for s in poller.link_stats())
    errors = sum(s.errors for s in poller.link_stats())
    good = sum(1 for m in ids if tagdb.read(f"{m}.energy_total").good and tagdb.read(f"{m}.power").good)
    return {"meters": len(ids), "setup_s": setup_s, "wall": wall, "requests": requests, "errors": errors, "good": good,
            "rps": requests / wall, "cpu_per_1000": cpu / requests * 1000, "cpu": cpu, "sim_cpu": sim_cpu}


async def steady(sim: Simulate, seconds: float, interval: float) -> dict[str, float]:
    poller, tagdb, ids = poller_for(sim, interval=interval, spread=1.0)
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(min(5.0, seconds / 4))  # connections up, the first polls under way
    req0 = sum(s.requests for s in poller.link_stats())
    cpu0, t0, sim0 = time.process_time(), time.perf_counter(), sim.cpu()
    await asyncio.sleep(seconds)
    wall, cpu, sim_cpu = time.perf_counter() - t0, time.process_time() - cpu0, sim.cpu() - sim0
    requests = sum(s.requests for s in poller.link_stats()) - req0
    errors = sum(s.errors for s in poller.link_stats())
    lat = [s.latency_ms for s in poller.link_stats() if s.latency_ms is not None]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return {"meters": len(ids), "wall": wall, "requests": requests, "rps": requests / wall, "errors": errors,
            "core": cpu / wall, "cpu_per_1000": cpu / max(requests, 1) * 1000, "sim_core": sim_cpu / wall,
            "latency_ms": sum(lat) / len(lat) if lat else 0.0}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 meters, a short steady run")
    parser.add_argument("--steady-seconds", type=float, default=None)
    args = parser.parse_args()
    sizes = [1_000] if args.quick else [1_000, 10_000]
    steady_s = args.steady_seconds or (10.0 if args.quick else 60.0)
    print(__doc__.strip().splitlines()[0])
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"simulator in another process; profile {PROFILE} (3 block reads per meter); {PER_PORT} meters per link")

    sim = Simulate(10)
    try:
        print("\n1. client CPU per request (10 registers, one server process, 6,000 requests)")
        print(f"{'client':<28} {'in flight':>9} {'µs CPU/req':>11} {'req/s':>9}")
        for name, in_flight, us, rps in await bench_clients(sim.ports[0], 6_000):
            print(f"{name:<28} {in_flight:>9} {us:>11.0f} {rps:>9,.0f}")
    finally:
        sim.stop()

    print("\n2. full poll cycle: every meter's 3 reads due at once")
    print(f"{'meters':>7} {'links':>6} {'cycle s':>8} {'requests':>9} {'req/s':>8} {'CPU s/1k req':>13} {'good':>7} {'errors':>7} "
          f"{'sim CPU s':>10} {'setup s':>8}")
    results = {}
    for n in sizes:
        sim = Simulate(n)
        try:
            r = await full_cycle(sim)
            print(
                f"{n:>7,} {len(sim.ports):>6} {r['wall']:>8.2f} {r['requests']:>9,} {r['rps']:>8,.0f} {r['cpu_per_1000']:>13.3f} "
                f"{r['good']:>7,} {r['errors']:>7} {r['sim_cpu']:>10.2f} {r['setup_s']:>8.2f}"
            )
            s = await steady(sim, steady_s, 60.0)
            results[n] = s
        finally:
            sim.stop()

    print(f"\n3. steady state: 3 reads per meter every 60 s, measured over {steady_s:g} s")
    print(
        f"{'meters':>7} {'req/s':>8} {'poller core':>12} {'CPU s/1k req':>13} {'latency ms':>11} {'errors':>7} {'sim core':>9}"
    )
    for n, s in results.items():
        print(
            f"{n:>7,} {s['rps']:>8,.0f} {s['core']:>12.1%} {s['cpu_per_1000']:>13.3f} {s['latency_ms']:>11.2f} {s['errors']:>7} {s['sim_core']:>9.1%}"
        )
    if 10_000 in results:
        share = results[10_000]["core"]
        verdict = "meets" if share < 0.5 else "MISSES"
        print(
            f"\ngoal: 10,000 meters x 3 reads / 60 s in < 50 % of one core: {share:.1%} -> {verdict} the goal with the pymodbus client"
        )


if __name__ == "__main__":
    asyncio.run(main())
