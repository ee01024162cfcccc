"""Payment notifications processed per second with the crediting committed, on SQLite.

How it is measured: the server runs as its own process (``scada run``: SQLite in WAL mode with
``synchronous=FULL`` in a temporary folder under build/, the HMI on loopback, logging at
warning, no meters polled), with ``--accounts`` open prepaid accounts and ``--orders`` payment
orders of the sandbox provider in state ``created`` (written straight into the tables before the
server starts, as if tenants had created them). This process then plays the provider: for every
order one ``payment.succeeded`` notification, signed with the sandbox's Ed25519 key (signatures
made before the clock starts), POSTed to ``/api/v1/payments/notify/sandbox`` over HTTP with
``--concurrency`` requests in flight. The server answers each only after the order's ``paid`` and
its crediting (the ledger recharge and the ``credited`` state, one transaction) are committed,
so the figure — notifications answered 200 per second of wall time, first request to last
answer — is notifications with their crediting committed. The server process's CPU time over
the same span is read from /proc (the client's is separate); the load average of the machine is
recorded too, since the client and the server share its cores with whatever else runs. The
server takes notifications in batches (a group commit: those arriving while one batch commits
form the next), so the figure depends on how many are in flight. Afterwards every order must be
``credited`` with exactly one recharge, and ``scada reconcile`` must be clean.

Figures are printed and written to build/bench/payments.json.
Run: ``python bench/payments/run.py`` (``make bench`` runs every bench).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from scada.config import load_config  # noqa: E402
from scada.db import Database, async_url  # noqa: E402
from scada.payments.component import sandbox_keys  # noqa: E402
from scada.payments.models import PaymentOrder  # noqa: E402
from scada.payments.sandbox import signed_headers  # noqa: E402
from scada.prepaid.models import Account, LedgerEntry  # noqa: E402
from scada.prepaid.reconcile import reconcile  # noqa: E402
from scada.site.models import Building, Floor, Room, Site  # noqa: E402
from tags import utcnow  # noqa: E402

GOAL = 500
PASSWORD = "bench-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(tmp: Path, port: int) -> str:
    return f"""
[site]
name = "Bench"
timezone = "Asia/Shanghai"

[database]
url = "sqlite:///{tmp / 'scada.db'}"

[runtime]
data_dir = "{tmp}"

[hmi]
host = "127.0.0.1"
port = {port}

[logging]
level = "warning"

[admin]
password = {{ env = "SCADA_BENCH_ADMIN_PASSWORD" }}

[alarms]
enabled = false

[historian]
enabled = false

[billing]
enabled = false

[payments]
reconcile_at = ""
recover_every_s = 3600
replay_window_s = 3600
max_amount = "100000"
"""


async def prepare(tmp: Path, accounts: int, orders: int) -> None:
    """The site, the open accounts (an opening entry each) and the created orders, in the tables."""
    db = Database(async_url(f"sqlite:///{tmp / 'scada.db'}"))
    await db.upgrade()
    now = utcnow()
    try:
        async with db.transaction() as s:
            s.add(Site(id="bench", name="Bench", timezone="Asia/Shanghai"))
            await s.flush()
            s.add(Building(id="B", site_id="bench", name="B"))
            await s.flush()
            s.add(Floor(id="F", building_id="B", name="F", level=1))
            await s.flush()
            s.add_all([Room(id=f"R{i:05d}", floor_id="F", name=f"R{i}") for i in range(accounts)])
            await s.flush()
            rows = [Account(room_id=f"R{i:05d}", open_room_id=f"R{i:05d}", state="open", opened_at=now, opened_by="bench", contact_name="",
                            language="en", credit_limit_minor=0, thresholds=[], balance_minor=0, remainder=Decimal(0), updated_at=now)
                    for i in range(accounts)]
            s.add_all(rows)
            await s.flush()
            s.add_all([PaymentOrder(
                provider="sandbox", account_id=rows[k % accounts].id, room_id=rows[k % accounts].room_id, amount_minor=1000 + k % 5000,
                currency="CNY", state="created", created_at=now, created_by="bench", expires_at=now + dt.timedelta(hours=2), return_url="",
                provider_order_id=None, pay_url="", transaction_id=None, paid_at=None, late=False, credited_at=None, entry_id=None,
                refunded_at=None, refund_entry_id=None, refund_id=None, detail="", updated_at=now,
            ) for k in range(orders)])
    finally:
        await db.dispose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_all(url: str, notes: list[tuple[bytes, dict[str, str]]], concurrency: int) -> list[int]:
    statuses: list[int] = []
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for n in notes:
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            while not queue.empty():
                body, headers = queue.get_nowait()
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    statuses.append(r.status)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def main(args: argparse.Namespace) -> None:
    build = ROOT / "build"
    build.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-payments-", dir=build))
    server = None
    log_file = None
    try:
        port = free_port()
        (tmp / "scada.toml").write_text(config_text(tmp, port))
        config = load_config(tmp / "scada.toml")
        await prepare(tmp, args.accounts, args.orders)
        keys = sandbox_keys(config)
        env = {**os.environ, "SCADA_BENCH_ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
        log_file = open(tmp / "server.log", "w")  # noqa: SIM115 - closed in finally
        server = subprocess.Popen([sys.executable, "-m", "scada", "run", "--config", str(tmp / "scada.toml")],
                                  cwd=tmp, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as http:
            while True:  # logging at warning: the start is seen on the socket, not in the log
                try:
                    async with http.get(base + "/api/v1/openapi.json") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.2)
        db = Database(async_url(f"sqlite:///{tmp / 'scada.db'}"))
        async with db.sessions() as s:
            orders = (await s.execute(select(PaymentOrder.id, PaymentOrder.amount_minor).order_by(PaymentOrder.id))).all()
        notes = []
        now = utcnow()
        for order_id, amount in orders:
            body = json.dumps({"id": f"evt_{order_id}", "type": "payment.succeeded", "order_no": f"P{order_id}",
                               "transaction_id": f"sbxt_bench_{order_id}", "amount": f"{Decimal(amount).scaleb(-2):.2f}",
                               "currency": "CNY", "paid_at": now.isoformat()}).encode()
            notes.append((body, signed_headers(keys, body, now)))
        url = base + "/api/v1/payments/notify/sandbox"
        warm, timed = notes[: args.warmup], notes[args.warmup:]
        await send_all(url, warm, min(args.concurrency, max(1, len(warm))))
        load0 = os.getloadavg()[0]
        cpu0, wall0 = cpu_seconds(server.pid), time.perf_counter()
        statuses = await send_all(url, timed, args.concurrency)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds(server.pid) - cpu0
        ok = sum(1 for st in statuses if st == 200)
        async with db.sessions() as s:
            credited = await s.scalar(select(func.count()).select_from(PaymentOrder).where(PaymentOrder.state == "credited"))
            recharges = await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "recharge"))
        report = await reconcile(db, 2)
        await db.dispose()
        if ok != len(timed):
            sys.stdout.write((tmp / "server.log").read_text()[-5000:])
        assert ok == len(timed), f"{len(timed) - ok} notifications not answered 200: {sorted(set(statuses))}"
        assert credited == recharges == len(notes), (credited, recharges, len(notes))
        assert report.ok, [str(m) for m in report.mismatches[:5]]
        figures = {
            "bench": "payments", "goal_per_s": GOAL, "notifications": len(timed), "accounts": args.accounts,
            "concurrency": args.concurrency, "wall_s": round(wall, 3), "per_s": round(len(timed) / wall, 1),
            "server_cpu_s": round(cpu, 3), "server_cpu_us_per_notification": round(cpu / len(timed) * 1e6),
            "database": "SQLite (WAL, synchronous=FULL)", "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
        print(f"payment notifications, SQLite: {len(timed):,} in {wall:.2f} s = {figures['per_s']:,} notifications/s with the crediting "
              f"committed ({args.concurrency} in flight, {args.accounts} accounts); server CPU "
              f"{figures['server_cpu_us_per_notification']} µs per notification; every order credited once, reconcile OK; goal ≥ {GOAL}/s"
              f" (load average {load0:.1f} at the start: other work on the machine lowers the figure)")
        out = build / "bench"
        out.mkdir(parents=True, exist_ok=True)
        (out / "payments.json").write_text(json.dumps(figures, indent=2))
        print(f"(python {platform.python_version()}, {platform.machine()}) → build/bench/payments.json")
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(30)
        if log_file is not None:
            log_file.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
