"""Crash test: a 200-item relay job runs on the simulator (its own process, ``scada simulate``);
the server is killed with SIGKILL in the middle and restarted. The job resumes with the items
not yet done: every meter's relay is switched exactly once — one confirmed command per meter
in the audit log, one write per meter at the simulator — and every relay is open."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from scada.commands.models import CommandRow
from scada.db import Database, async_url
from scada.users.models import AuditEntry

from ...procs import ScadaProcess
from ...simulation import Control

pytestmark = pytest.mark.slow

METERS = 200
ADMIN_PASSWORD = "jobs-crash-admin-password"


def site_file() -> str:
    out = ['[site]\nid = "crash"\nname = "Crash"\ntimezone = "Asia/Shanghai"\n[[buildings]]\nid = "B"\nname = "B"\n'
           '[[floors]]\nid = "F"\nbuilding = "B"\nlevel = 1\nname = "F1"\n']
    for i in range(1, METERS + 1):
        out.append(f'[[rooms]]\nid = "R{i}"\nfloor = "F"\nname = "R{i}"\n')
        out.append(f'[[meters]]\nid = "SIM-{i:05d}"\nkind = "electricity"\nroom = "R{i}"\nprofile = "acrel-ddsy1352"\n'
                   f'link = "port0"\nunit_id = {i}\n')
    return "".join(out)


def server_toml(db_url: str, modbus_port: int) -> str:
    return f"""
[site]
name = "Crash"
timezone = "Asia/Shanghai"
import_file = "site.toml"

[database]
url = "{db_url}"

[hmi]
host = "127.0.0.1"
port = 0

[admin]
password = {{ env = "SCADA_JOBS_CRASH_ADMIN_PASSWORD" }}

[[links]]
name = "port0"
host = "127.0.0.1"
port = {modbus_port}
timeout_s = 1.0
max_in_flight = 2

[modbus]
poll_intervals = {{ fast = 5, energy = 30 }}

[alarms]
enabled = false

[prepaid]
enabled = false

[commands]
confirm_interval_s = 0.05

[operations]
approval_relay_rooms_above = 1000
link_gap_s = 0
"""


async def start_server(tmp_path: Path) -> tuple[ScadaProcess, str]:
    p = ScadaProcess(["run", "--config", str(tmp_path / "scada.toml")], cwd=tmp_path,
                     env={"SCADA_JOBS_CRASH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    line = await asyncio.to_thread(p.wait_for, r"HMI listening", 90)
    url = re.search(r"url=(\S+)", line)
    assert url, line
    await asyncio.to_thread(p.wait_for, r"scada: ready", 60)
    return p, url.group(1).rstrip("]") + "/api/v1"


async def test_kill_9_in_the_middle_of_a_200_item_job(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'scada.db'}"  # the engine does not matter here; the prepaid crash test runs both
    sim = ScadaProcess(["simulate", "--meters", str(METERS), "--port", "0", "--control-port", "0", "--timezone", "Asia/Shanghai"],
                       cwd=tmp_path)
    server: ScadaProcess | None = None
    try:
        modbus_line = await asyncio.to_thread(sim.wait_for, r"^modbus port0", 60)
        control_line = await asyncio.to_thread(sim.wait_for, r"^control ", 30)
        (tmp_path / "site.toml").write_text(site_file())
        (tmp_path / "scada.toml").write_text(server_toml(db_url, int(modbus_line.split()[2].rsplit(":", 1)[1])))
        server, base = await start_server(tmp_path)
        async with aiohttp.ClientSession() as http:
            control = Control.from_line(http, control_line, tmp_path)

            async def login() -> dict[str, str]:
                async with http.post(base + "/auth/token", json={"user": "admin", "password": ADMIN_PASSWORD}) as r:
                    return {"Authorization": f"Bearer {(await r.json())['token']}"}

            async def job(headers: dict[str, str], job_id: int) -> Any:
                async with http.get(f"{base}/jobs/{job_id}", headers=headers) as r:
                    return await r.json()

            headers = await login()
            await control.reset_stats()
            async with http.post(base + "/jobs", headers=headers, json={
                "kind": "relay", "targets": {"floor": "F"}, "params": {"action": "disconnect"}, "reason": "crash test",
            }) as r:
                created = await r.json()
                assert r.status == 201, created
            assert created["total"] == METERS and created["approval"] == "none"
            for _ in range(600):
                state = await job(headers, created["id"])
                if state["done"] >= METERS // 3:
                    break
                await asyncio.sleep(0.02)
            server.proc.send_signal(signal.SIGKILL)  # mid-job: items under way, commands on the wire
            server.kill()
            server = None
            # the server is dead: the job stopped part-way
            meters = await control.call("GET", "/meters")
            on = sum(1 for m in meters if m["supply_on"])
            assert 0 < on < METERS, on

            server, base = await start_server(tmp_path)
            headers = await login()
            for _ in range(1200):
                state = await job(headers, created["id"])
                if state["state"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.05)
            assert state["state"] == "done", state
            assert (state["total"], state["done"], state["failed"]) == (METERS, METERS, 0)
            truth = {m["id"]: m["supply_on"] for m in await control.call("GET", "/meters")}
            stats = await control.stats()
        assert server.stop() == 0
        server = None
        assert not any(truth.values()), [m for m, on in truth.items() if on]
        # one write per meter at the simulator: a resumed item reads the relay before writing again
        writes = {unit: n for key, n in stats["port0"]["by_unit_fc"].items() if (unit := key.split("/")[0]) and key.endswith("/6")}
        assert writes == {str(i): 1 for i in range(1, METERS + 1)}, {u: n for u, n in writes.items() if n != 1}
        db = Database(async_url(db_url, base_dir=tmp_path))
        try:
            async with db.sessions() as s:
                commands = (await s.scalars(select(CommandRow).where(CommandRow.reference.like(f"job:{created['id']}:%")))).all()
                audit = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "relay.disconnect"))).all()
        finally:
            await db.dispose()
        confirmed = Counter(c.meter_id for c in commands if c.status == "confirmed")
        assert confirmed == Counter(list(truth)), "every meter's relay confirmed exactly once"
        # an item under way at the kill may have left its command 'failed: interrupted'; no other
        assert all(c.status == "confirmed" or "interrupted" in c.detail for c in commands), [c.detail for c in commands]
        assert Counter(e.target_id for e in audit if e.outcome == "confirmed") == Counter(list(truth))
    finally:
        if server is not None:
            server.kill()
        sim.stop()
