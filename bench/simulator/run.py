"""A one-year clock jump of the demo's 81 simulated meters through the control API.

How it is measured: one process, one event loop, the simulator with 81 meters (60 electricity
meters on one link, 21 water meters on another, as in the demo) and its control API on loopback.
A probe task yields to the loop as often as it can and records the longest gap between two of
its turns (how long everything else on the loop stalls); meanwhile a client sends
``POST /clock {"advance_s": 31622400}`` (366 days) and, while it runs, ``GET /clock`` requests one
after the other. Figures: the jump's wall time and process CPU time, the loop's longest stall,
and how many other requests were answered during the jump. Before the jump ran in steps, the
same jump answered at once and the next Modbus poll of the meters stalled the loop for 11.6 s.
Run: ``python bench/simulator/run.py``; the figures are also written to build/bench/simulator.json.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402

from protocols.modbus.profile import ProfileLibrary  # noqa: E402
from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule  # noqa: E402
from protocols.modbus.sim.site import SimLink  # noqa: E402

YEAR = 366 * 86_400


async def main() -> dict[str, object]:
    sim = Simulator(ProfileLibrary.load(), [SimLink("gw-1"), SimLink("gw-2")], control_port=0, speed=0,
                    tou=TouSchedule(timezone="Asia/Shanghai"))
    for i in range(60):
        sim.add_meter(MeterSpec(f"E{i + 1:03d}", "acrel-ddsy1352", "gw-1", i + 1, None, 8.0))
    for i in range(21):
        sim.add_meter(MeterSpec(f"W{i + 1:03d}", "water-valve", "gw-2", i + 1))
    await sim.start()
    stall = 0.0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal stall
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now

    try:
        assert sim.control_url is not None
        headers = {"Authorization": f"Bearer {sim.control_token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            probe_task = asyncio.create_task(probe())
            cpu0, t0 = time.process_time(), time.perf_counter()
            jump = asyncio.create_task(http.post(sim.control_url + "/clock", json={"advance_s": YEAR}, headers=headers))
            answered = 0
            while not jump.done():
                async with http.get(sim.control_url + "/clock", headers=headers) as r:
                    await r.read()
                answered += int(not jump.done())
            response = await jump
            response.release()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            stop.set()
            await probe_task
    finally:
        await sim.stop()
    return {
        "meters": len(sim.meters), "jump_s": YEAR, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "longest_loop_stall_ms": round(stall * 1000, 1), "requests_answered_during_jump": answered,
        "python": platform.python_version(), "machine": platform.machine(),
    }


if __name__ == "__main__":
    figures = asyncio.run(main())
    print(f"one-year clock jump, {figures['meters']} meters: {figures['wall_s']} s wall, {figures['cpu_s']} s CPU; "
          f"longest loop stall {figures['longest_loop_stall_ms']} ms; {figures['requests_answered_during_jump']} "
          "other requests answered meanwhile")
    out = Path(__file__).resolve().parents[2] / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulator.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
