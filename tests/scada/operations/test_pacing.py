"""Pacing: during a 500-item relay job on one link, every other meter on that link is still
polled within its interval (the job takes the link's spare time, after the due polls).

One Modbus link holds at most 247 unit ids: the 528 meters here are the circuits of 44
twelve-circuit meters (acrel-adf400l), each circuit a room's meter with its own relay. The
simulator runs as its own process (``scada simulate --fill-circuits``), the server in this one;
the link keeps 2 ms between frames, so polling takes much of its capacity, as on a busy bus."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from protocols.modbus.link import BULK_SLACK_S
from protocols.modbus.stats import LinkStats
from scada.config import ScadaConfig, parse_config
from scada.core.runtime import Runtime
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.polling.component import COMMS
from scada.users.auth import Role, UserInfo
from scada.users.component import USERS
from tags.subscription import by_names

from ...harness import running_server
from ...procs import ScadaProcess
from ...simulation import Control, until

pytestmark = pytest.mark.slow

ROOMS = 528
JOB = 500
FAST_S = 6.0
# the link is the bottleneck here, as a real gateway is: 2 ms between frames on one connection
# is ~220 requests/s, and polling takes ~140 of them
GAP_MS = 2
LINK_TIMEOUT_S = 1.0


def _link(rt: Runtime) -> LinkStats:
    (link,) = rt.ctx[COMMS].link_stats()
    return link


def write_circuit_site(path: Path) -> Path:
    out = ['[site]\nid = "pace"\nname = "Pacing"\ntimezone = "Asia/Shanghai"\n[[buildings]]\nid = "B"\nname = "B"\n'
           '[[floors]]\nid = "F"\nbuilding = "B"\nlevel = 1\nname = "F1"\n']
    for n in range(1, ROOMS + 1):
        out.append(f'[[rooms]]\nid = "R{n:03d}"\nfloor = "F"\nname = "{n:03d}"\n')
        out.append(f'[[meters]]\nid = "SIM-{n:05d}"\nkind = "electricity"\nroom = "R{n:03d}"\nprofile = "acrel-adf400l"\n'
                   f'link = "gw-1"\nunit_id = {1 + (n - 1) // 12}\ncircuit = {(n - 1) % 12 + 1}\n')
    path.write_text("".join(out), encoding="utf-8")
    return path


def config_text(tmp_path: Path, port: int, operations: str = "") -> str:
    site = write_circuit_site(tmp_path / "site.toml")
    return f"""
[site]
name = "Pacing"
timezone = "Asia/Shanghai"
import_file = "{site}"

[runtime]
data_dir = "{tmp_path}"

[database]
url = "sqlite:///{tmp_path / 'scada.db'}"

[logging]
level = "warning"

[hmi]
port = 0

[admin]
password = {{ env = "SCADA_ADMIN_PASSWORD" }}

[simulator]
enabled = false

[[links]]
name = "gw-1"
host = "127.0.0.1"
port = {port}
timeout_s = {LINK_TIMEOUT_S}
max_in_flight = 1
inter_frame_gap_ms = {GAP_MS}

[modbus]
poll_intervals = {{ fast = {FAST_S}, energy = 60 }}
start_spread = 1.0

[alarms]
enabled = false

[prepaid]
enabled = false

[commands]
confirm_interval_s = 0.05

[operations]
approval_relay_rooms_above = 10000
{operations}
"""


async def test_a_500_item_job_does_not_starve_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", "pacing-admin-password")
    sim = ScadaProcess(["simulate", "--meters", str(ROOMS), "--profile", "acrel-adf400l", "--fill-circuits", "--port", "0",
                        "--control-port", "0"], cwd=tmp_path)
    try:
        modbus_line = await asyncio.to_thread(sim.wait_for, r"^modbus port0", 60)
        control_line = await asyncio.to_thread(sim.wait_for, r"^control ", 30)
        port = int(modbus_line.split()[2].rsplit(":", 1)[1])
        config = parse_config(config_text(tmp_path, port), "<pacing>", tmp_path)  # the default pacing
        async with aiohttp.ClientSession() as http:
            await run(config, Control.from_line(http, control_line, tmp_path))
    finally:
        sim.stop()


async def run(config: ScadaConfig, control: Control) -> None:
    async with running_server(config) as rt:
        tagdb = rt.ctx[TAGDB]
        meters = [f"SIM-{n:05d}" for n in range(1, ROOMS + 1)]
        assert len(meters) == ROOMS
        targets, others = meters[:JOB], meters[JOB:]
        await until(lambda: all(tagdb.read(f"{m}.relay_closed").value is True for m in meters), timeout=60, what="all polled")
        watched = [f"{m}.power" for m in others]
        seen: dict[str, list[float]] = {name: [] for name in watched}
        sub = tagdb.subscribe(by_names(watched), include_reported=True, name="pacing-test")
        loop = asyncio.get_running_loop()

        async def record() -> None:
            while True:
                for change in await sub.get_batch(1000):
                    seen[change.name].append(loop.time())

        lag = 0.0  # how late this loop wakes up: a loaded machine delays every poll by that much, job or not

        async def measure_lag() -> None:
            nonlocal lag
            while True:
                before = loop.time()
                await asyncio.sleep(0.1)
                lag = max(lag, loop.time() - before - 0.1)

        recorder = loop.create_task(record(), name="pacing-recorder")
        lag_meter = loop.create_task(measure_lag(), name="pacing-lag")
        try:
            # two intervals without the job: how late the link polls these meters on its own, on
            # this machine now (a loaded machine slows the link down, job or not)
            quiet_from = loop.time()
            await asyncio.sleep(2 * FAST_S)
            quiet_to = loop.time()
            admin = await rt.ctx[USERS].get("admin")
            assert isinstance(admin, UserInfo) and admin.role is Role.ADMIN
            jobs = rt.ctx[JOBS]
            rooms = [f"R{n:03d}" for n in range(1, JOB + 1)]
            before = _link(rt)
            started = loop.time()
            job = await jobs.create("relay", {"rooms": rooms}, {"action": "disconnect"}, user=admin, actor=admin.actor("api"))
            assert job.total == JOB
            for _ in range(2400):
                view = await jobs.get(job.id, items=False)
                if view.state in ("done", "failed"):
                    break
                await asyncio.sleep(0.05)
            ended = loop.time()
        finally:
            recorder.cancel()
            lag_meter.cancel()
            await asyncio.gather(recorder, lag_meter, return_exceptions=True)
            sub.close()
        assert view.state == "done" and view.done == JOB, view
        supply = {m["id"]: m["supply_on"] for m in await control.call("GET", "/meters")}
        assert not any(supply[m] for m in targets) and all(supply[m] for m in others)
        # every other meter polled all along, at its interval (a little late at worst)
        def longest_gap(start: float, end: float) -> float:
            worst = 0.0
            for times in seen.values():
                during = [start] + [t for t in times if start <= t <= end] + [end]
                worst = max(worst, *(b - a for a, b in zip(during, during[1:], strict=False)))
            return worst

        worst = longest_gap(started, ended)
        late_alone = max(0.0, longest_gap(quiet_from, quiet_to) - FAST_S)
        after = _link(rt)
        # a poll waits for batch work at most BULK_SLACK_S and the request in flight, and then takes
        # its own: within a second of what the link gave these meters without the job (how late
        # they were polled then, on this machine now: a loaded CI machine slows the link's polling
        # itself by a second and more), plus however late the machine let this loop run. The
        # simulator's slowest answer (an upper bound, the link's since the start) counts for those
        # two requests, and a request it let time out for its timeout (a starved poll waits the job
        # out all the same)
        slowest = after.max_latency_ms / 1000.0
        timeouts = after.timeouts - before.timeouts
        bound = FAST_S + late_alone + max(1.0, BULK_SLACK_S + 2 * slowest + timeouts * LINK_TIMEOUT_S) + lag
        # long enough to show it: a poll starved for the job's length would break the bound (the
        # job's length is the link's spare time: 8-10 s here, shorter the faster the server)
        assert ended - started > bound + 0.5, f"the job is long enough to show it ({ended - started:.1f} s, bound {bound:.1f} s)"
        assert worst <= bound, \
            f"a meter waited {worst:.2f} s between polls (interval {FAST_S} s, loop lag {lag:.2f} s, slowest answer " \
            f"{slowest:.3f} s, {timeouts} timeouts, {late_alone:.2f} s late without the job) during the job"
        print(f"pacing: {JOB} items in {ended - started:.1f} s ({JOB / (ended - started):.0f}/s); "
              f"longest poll gap of the other meters {worst:.2f} s at a {FAST_S} s interval ({late_alone:.2f} s late without the job)", dt.datetime.now())
