"""Crash test: the server bills the simulator's meters while recharges arrive over the API; it
is killed with SIGKILL mid-stream and restarted. Afterwards ``scada reconcile`` is clean, every
recharge is in the ledger exactly once, and each account was billed exactly the simulator's
true consumption × price (rounded once). The simulator runs as its own process
(``scada simulate``), so the meters' true registers survive the server's death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from scada.db import Database, async_url
from scada.prepaid.models import Account, LedgerEntry, MeterSegment

from ...procs import ScadaProcess
from ...simulation import Control

pytestmark = pytest.mark.slow

METERS = 4
PRICE = Decimal("0.5683")
ADMIN_PASSWORD = "crash-admin-password"


def site_file(port_link: str) -> str:
    out = ['[site]\nid = "crash"\nname = "Crash"\ntimezone = "Asia/Shanghai"\n[[buildings]]\nid = "B"\nname = "B"\n'
           '[[floors]]\nid = "F"\nbuilding = "B"\nlevel = 1\nname = "F1"\n']
    for i in range(1, METERS + 1):
        out.append(f'[[rooms]]\nid = "R{i}"\nfloor = "F"\nname = "R{i}"\n')
        out.append(f'[[meters]]\nid = "SIM-{i:05d}"\nkind = "electricity"\nroom = "R{i}"\nprofile = "acrel-ddsy1352"\n'
                   f'link = "{port_link}"\nunit_id = {i}\n')
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
password = {{ env = "SCADA_CRASH_ADMIN_PASSWORD" }}

[[links]]
name = "port0"
host = "127.0.0.1"
port = {modbus_port}
timeout_s = 0.5

[modbus]
poll_intervals = {{ fast = 0.2, energy = 0.2 }}
start_spread = 0

[alarms]
enabled = false

[prepaid]
jump_margin = "100000"   # simulated hours pass in real milliseconds here

[approvals]
opening_balance_above = "100000"   # the opening balances here need no second user

[prepaid.friendly_credit]
windows = []
weekends = false
"""


async def start_server(tmp_path: Path) -> tuple[ScadaProcess, str]:
    p = ScadaProcess(["run", "--config", str(tmp_path / "scada.toml")], cwd=tmp_path, env={"SCADA_CRASH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    line = await asyncio.to_thread(p.wait_for, r"HMI listening", 90)
    url = re.search(r"url=(\S+)", line)
    assert url, line
    await asyncio.to_thread(p.wait_for, r"scada: ready", 60)
    return p, url.group(1).rstrip("]") + "/api/v1"


async def test_kill_9_during_billing_and_recharges(tmp_path: Path, db_url: str) -> None:
    sim = ScadaProcess(["simulate", "--meters", str(METERS), "--port", "0", "--control-port", "0", "--speed", "0",
                        "--timezone", "Asia/Shanghai"], cwd=tmp_path)
    server: ScadaProcess | None = None
    try:
        modbus_line = await asyncio.to_thread(sim.wait_for, r"^modbus port0", 60)
        control_line = await asyncio.to_thread(sim.wait_for, r"^control ", 30)
        modbus_port = int(modbus_line.split()[2].rsplit(":", 1)[1])
        (tmp_path / "site.toml").write_text(site_file("port0"))
        (tmp_path / "scada.toml").write_text(server_toml(db_url, modbus_port))
        server, base = await start_server(tmp_path)
        async with aiohttp.ClientSession() as http:
            control = Control.from_line(http, control_line, tmp_path)

            async def api(method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
                async with http.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
                    return r.status, await r.json()

            async def login() -> str:
                async with http.post(base + "/auth/token", json={"user": "admin", "password": ADMIN_PASSWORD}) as r:
                    return (await r.json())["token"]

            token = await login()
            status, body = await api("POST", "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                          "definition": {"price": str(PRICE)}}, token)
            assert status == 201, body
            for i in range(1, METERS + 1):
                await control.load(f"SIM-{i:05d}", kw=0.5 + i)
                status, body = await api("POST", f"/rooms/R{i}/account/open", {"tariffs": {"electricity": "FLAT"},
                                                                               "opening_balance": "100000.00"}, token)
                assert status == 201, body
            sent: dict[str, tuple[str, int]] = {}  # reference → (room, minor units)

            async def recharges(prefix: str, n: int, kill_at: int | None = None) -> None:
                for k in range(n):
                    ref = f"{prefix}-{k}"
                    room = f"R{1 + k % METERS}"
                    sent[ref] = (room, 100 + k)
                    request = asyncio.ensure_future(
                        api("POST", f"/rooms/{room}/account/recharge", {"amount": f"{(100 + k) / 100:.2f}", "reference": ref}, token))
                    if k == kill_at:
                        await asyncio.sleep(0.005)
                        assert server is not None
                        # mid-stream: this recharge in flight, billing batches going on
                        server.proc.send_signal(signal.SIGKILL)
                    with contextlib.suppress(aiohttp.ClientError):
                        await request
                    await asyncio.sleep(0.01)

            async def consume(rounds: int) -> None:
                for _ in range(rounds):
                    await control.advance(300)  # five simulated minutes
                    await asyncio.sleep(0.05)

            await asyncio.sleep(1.0)  # the first readings: the baselines
            await asyncio.gather(recharges("before", 60, kill_at=30), consume(40))
            server.kill()
            await consume(10)  # the meters go on while the server is down

            server, base = await start_server(tmp_path)
            token = await login()
            # every recharge is sent again: the ones that committed are answered as replays
            replays = 0
            for ref, (room, minor) in list(sent.items()):
                status, body = await api("POST", f"/rooms/{room}/account/recharge", {"amount": f"{minor / 100:.2f}", "reference": ref}, token)
                assert status == 200, body
                replays += body["replayed"]
            assert 0 < replays < len(sent), replays  # the kill came in the middle of the recharges
            await asyncio.gather(recharges("after", 20), consume(20))
            truth = {f"SIM-{i:05d}": Decimal(str((await control.meter(f"SIM-{i:05d}"))["points"]["energy_total"]))
                     for i in range(1, METERS + 1)}

            db = Database(async_url(db_url, base_dir=tmp_path))
            try:
                async def billed_up_to_truth() -> bool:
                    async with db.sessions() as s:
                        rows = (await s.execute(select(LedgerEntry.meter_id, LedgerEntry.reading_to).where(LedgerEntry.kind == "deduction"))).all()
                    last: dict[str, Decimal] = {}
                    for meter, reading in rows:
                        last[meter] = max(last.get(meter, Decimal(0)), reading)
                    return all(last.get(m) == v for m, v in truth.items())

                for _ in range(300):
                    if await billed_up_to_truth():
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the server never billed the final readings")
                assert server.stop() == 0
                server = None

                async with db.sessions() as s:
                    accounts = {a.room_id: a for a in (await s.scalars(select(Account))).all()}
                    entries = (await s.scalars(select(LedgerEntry))).all()
                    segments = (await s.scalars(select(MeterSegment))).all()
            finally:
                await db.dispose()
        # every recharge exactly once
        recharged = {e.reference: (e.account_id, e.amount_minor) for e in entries if e.kind == "recharge"}
        assert set(recharged) == set(sent)
        for ref, (room, minor) in sent.items():
            assert recharged[ref] == (accounts[room].id, minor)
        # billed = the simulator's true consumption since the baseline × price, rounded once
        for i in range(1, METERS + 1):
            meter, room = f"SIM-{i:05d}", f"R{i}"
            baseline = next(g.baseline for g in segments if g.meter_id == meter)
            assert baseline is not None
            consumed = truth[meter] - baseline
            assert consumed > 0
            deducted = -sum(e.amount_minor for e in entries if e.kind == "deduction" and e.account_id == accounts[room].id)
            assert deducted == int((consumed * PRICE * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)), (meter, consumed, deducted)
        result = subprocess.run([sys.executable, "-m", "scada", "reconcile", "--config", str(tmp_path / "scada.toml")],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path, env=os.environ.copy())
        assert result.returncode == 0, result.stdout + result.stderr
        assert "reconcile: OK" in result.stdout
    finally:
        if server is not None:
            server.kill()
        sim.stop()
