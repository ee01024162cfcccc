"""Crash test: the server is killed (SIGKILL) between an order's ``paid`` and its ``credited``
commits; after a restart the order is credited exactly once, a duplicate notification credits
nothing more, and ``scada reconcile`` and ``scada payments reconcile`` are clean. The sandbox
provider runs as its own process (``scada payments sandbox-pay``), as a real provider would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import select

from scada.core.faults import CRASH_ENV
from scada.db import Database, async_url
from scada.payments.models import PaymentOrder, SandboxPayment
from scada.payments.sandbox import SandboxKeys, signed_headers
from scada.prepaid.models import LedgerEntry
from tags import utcnow

from ...procs import ScadaProcess

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "crash-admin-password"
SITE = """
[site]
id = "crash"
name = "Crash"
timezone = "Asia/Shanghai"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F1"
[[rooms]]
id = "R1"
floor = "F"
name = "R1"
"""


def server_toml(db_url: str) -> str:
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

[alarms]
enabled = false

[approvals]
opening_balance_above = "100000"

[payments]
reconcile_at = ""

[payments.sandbox]
notify_delay_s = 0
retry_delays_s = [0.3]
"""


async def start_server(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[ScadaProcess, str]:
    p = ScadaProcess(["run", "--config", str(tmp_path / "scada.toml")], cwd=tmp_path,
                     env={"SCADA_CRASH_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})})
    line = await asyncio.to_thread(p.wait_for, r"HMI listening", 90)
    url = re.search(r"url=(\S+)", line)
    assert url, line
    await asyncio.to_thread(p.wait_for, r"scada: ready", 60)
    return p, url.group(1).rstrip("]")


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scada", *args, "--config", str(tmp_path / "scada.toml")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=os.environ.copy())


async def test_kill_9_between_paid_and_credited_credits_once_after_restart(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "site.toml").write_text(SITE)
    (tmp_path / "scada.toml").write_text(server_toml(db_url))
    server, url = await start_server(tmp_path, {CRASH_ENV: "payments.after_paid"})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/v1/auth/token", json={"user": "admin", "password": ADMIN_PASSWORD}) as r:
                headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
            for path, body in (("/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity", "definition": {"price": "0.5"}}),
                               ("/rooms/R1/account/open", {"tariffs": {"electricity": "FLAT"}, "opening_balance": "10.00"}),
                               ("/payments/orders", {"room": "R1", "amount": "50.00", "provider": "sandbox"})):
                async with http.post(url + "/api/v1" + path, json=body, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    created = await r.json()
        # the provider pays and notifies: the server commits "paid" and dies before crediting
        paid = await asyncio.to_thread(cli, tmp_path, "payments", "sandbox-pay", created["order_no"])
        assert paid.returncode == 1 and "no answer" in paid.stdout, paid.stdout + paid.stderr
        assert await asyncio.to_thread(server.proc.wait, 30) == -9
        server.kill()

        db = Database(async_url(db_url, base_dir=tmp_path))
        try:
            async def state() -> tuple[str, list[LedgerEntry]]:
                async with db.sessions() as s:
                    o = await s.get(PaymentOrder, created["id"])
                    assert o is not None
                    entries = list((await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "recharge"))).all())
                    return o.state, entries

            assert await state() == ("paid", [])  # killed between the two commits

            server, url = await start_server(tmp_path)  # the recovery at start credits it
            order_state, entries = await state()
            assert order_state == "credited"
            assert [(e.channel, e.amount_minor) for e in entries] == [("sandbox", 5000)]
            # the provider's retry of the same payment arrives late: accepted, credits nothing more
            async with db.sessions() as s:
                sandbox_row = await s.scalar(select(SandboxPayment).where(SandboxPayment.order_no == created["order_no"]))
            assert sandbox_row is not None and sandbox_row.transaction_id == entries[0].reference
            keys = SandboxKeys.load_or_create(tmp_path / "var" / "payments-sandbox.pem")
            body = json.dumps({"id": "evt_retry", "type": "payment.succeeded", "order_no": created["order_no"],
                               "transaction_id": sandbox_row.transaction_id, "amount": "50.00", "currency": "CNY"}).encode()
            async with aiohttp.ClientSession() as http:
                for _ in range(3):
                    async with http.post(url + "/api/v1/payments/notify/sandbox", data=body, headers=signed_headers(keys, body, utcnow())) as r:
                        assert r.status == 200, await r.text()
                        assert (await r.json())["state"] == "credited"
            assert len((await state())[1]) == 1
            assert server.stop() == 0
        finally:
            await db.dispose()
        result = await asyncio.to_thread(cli, tmp_path, "reconcile")
        assert result.returncode == 0 and "reconcile: OK" in result.stdout, result.stdout + result.stderr
        day = utcnow().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
        result = await asyncio.to_thread(cli, tmp_path, "payments", "reconcile", "--day", day)
        assert result.returncode == 0 and "reconcile sandbox: OK" in result.stdout, result.stdout + result.stderr
    finally:
        server.kill()
