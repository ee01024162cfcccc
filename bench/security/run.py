"""An ordinary request under a stream of hostile ones: the p99 of ``GET /api/v1/rooms`` while
huge decimals, huge ranges, wrong logins and refused POSTs come in, and what the audit log grows
by per refused request.

How it is measured:

- The server is ``scada demo`` (simulator, poller, prepaid engine with its demo accounts,
  alarms, historian, HMI, OPC UA) as a child process, on SQLite in a temporary folder, every
  port a free one on loopback.
- The hostile stream comes from another process: ``--concurrency`` connections (16 by default),
  each sending one request after another, round robin over these kinds:
  ``quote``: a viewer's tariff quote with ``"quantity": 1E+200000000`` (a JSON number);
  ``quote_text``: the same with ``"1E+50000000"`` (a string); ``money``: a cashier's recharge of
  ``1E+200000000``; ``history``: the whole building 1970→2199 at 15 min (8 M rows asked);
  ``trend``: the week of 9999-12-31; ``login``: a wrong password for ``admin`` on the token
  endpoint; ``post``: an anonymous POST to an 8 KB path; ``deep``: a body of JSON nested 100,000
  deep. Every request has a 30 s timeout.
- A second stream (``--large-concurrency`` connections, 2 by default) asks what is permitted but
  large: the building's energy 1970→2199 by day (84,000 rows, streamed), to show what the query
  turns (``historian.max_concurrent_queries``) leave to everyone else.
- The ordinary request: one client in this process sends ``GET /api/v1/rooms`` (the overview's
  first page, with a valid token) every 20 ms, one at a time, and records each latency
  (send to full body read): alone (after a 2 s warm-up), then under each stream (2 s after it
  started), ``--seconds`` each.
- The audit log's growth: rows and bytes (the sum of the lengths of every text column and the
  JSON snapshots) of ``audit_log`` in the server's SQLite file before and after each stream,
  divided by the refused requests of that stream. The periodic failed-login summary is part of
  it: the server runs with ``login.summary_interval_s = 1`` (the least allowed; 60 s by default,
  which would fall outside a phase of a few seconds) and the count is taken 3 s after the stream
  ends, so each phase's summary rows are in it — more rows than the default interval writes,
  an upper bound.
- Server memory: the child's resident set (psutil) before and at the end of each stream.

Client and server share the machine's two cores. Figures are printed and written to
``build/bench/security.json``. Run: ``python bench/security/run.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ADMIN_PASSWORD = "bench-admin-password"
PASSWORDS = {"viewer": "bench-viewer-password", "cashier": "bench-cashier-password"}
KINDS = ("quote", "quote_text", "money", "history", "history_days", "trend", "login", "post", "deep")
OUT = Path(__file__).resolve().parents[2] / "build" / "bench" / "security.json"
SUMMARY_INTERVAL_S = 1.0  # login.summary_interval_s of the server under test (the least the config allows)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- the hostile stream (child process) --------------------------------------------------------------
async def hostile(base: str, tokens: dict[str, str], seconds: float, concurrency: int, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    import aiohttp

    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    cashier = {"Authorization": f"Bearer {tokens['cashier']}"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    json_type = {"Content-Type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    long_path = "/api/v1/rooms/" + "R" * 8000 + "/account/recharge"
    quote_body = b'{"quantity": 1E+200000000, "start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}'

    def request(kind: str) -> tuple[str, str, dict[str, Any]]:
        if kind == "quote":
            return "POST", "/api/v1/tariffs/DEMO-TOU/quote", {"data": quote_body, "headers": {**viewer, **json_type}}
        if kind == "quote_text":
            body = {"quantity": "1E+50000000", "start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}
            return "POST", "/api/v1/tariffs/DEMO-TOU/quote", {"json": body, "headers": viewer}
        if kind == "money":
            return "POST", "/api/v1/rooms/B1-R101/account/recharge", {
                "data": b'{"amount": 1E+200000000, "reference": "bench"}', "headers": {**cashier, **json_type}}
        if kind == "history":
            return "GET", "/api/v1/history?building=B1&start=1970-01-02&end=2199-12-31&interval=15min", {"headers": admin}
        if kind == "history_days":
            return "GET", "/api/v1/history?building=B1&start=1970-01-02&end=2199-12-31&interval=1d", {"headers": admin}
        if kind == "trend":
            return "GET", "/api/v1/rooms/B1-R101/trend?range=week&date=9999-12-31", {"headers": viewer}
        if kind == "login":
            return "POST", "/api/v1/auth/token", {"json": {"user": "admin", "password": "wrong-password"}}
        if kind == "post":
            return "POST", long_path, {"json": {"amount": "1"}}
        return "POST", "/api/v1/rooms/B1-R101/account/refund", {"data": deep, "headers": {**cashier, **json_type}}

    statuses: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(offset: int) -> None:
        i = offset
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while time.monotonic() < deadline:
                kind = kinds[i % len(kinds)]
                i += 1
                method, path, kw = request(kind)
                t = time.perf_counter()
                try:
                    async with http.request(method, base + path, **kw) as r:
                        await r.read()
                        statuses[f"{kind}:{r.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[f"{kind}:{type(exc).__name__}"] += 1
                latencies[kind].append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return {
        "statuses": dict(statuses),
        "p50_ms": {k: statistics.median(v) for k, v in latencies.items() if v},
        "max_ms": {k: max(v) for k, v in latencies.items() if v},
    }


# -- the ordinary client --------------------------------------------------------------------------
async def ordinary(base: str, token: str, seconds: float, every_s: float = 0.02) -> list[float]:
    import aiohttp

    out: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = time.perf_counter()
            async with http.get(base + "/api/v1/rooms", headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - t)))
    return out


def audit_size(db: Path) -> tuple[int, int]:
    sql = ("SELECT count(*), coalesce(sum(length(actor) + length(action) + length(target_type) + length(target_id)"
           " + length(reason) + length(coalesce(after, '')) + length(coalesce(before, ''))), 0) FROM audit_log")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows, size = conn.execute(sql).fetchone()
    return int(rows), int(size)


def token(base: str, user: str, password: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        base + "/api/v1/auth/token", data=json.dumps({"user": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return str(json.loads(r.read())["token"])


def add_user(base: str, admin: str, name: str, role: str, password: str) -> None:
    import urllib.request

    request = urllib.request.Request(
        base + "/api/v1/users", data=json.dumps({"name": name, "role": role, "password": password, "reason": "bench"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin}"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from tests.services import free_port, wait_port

    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        folder = Path(tmp)
        port = free_port()
        overrides = [
            f"hmi.port={port}", "simulator.control_port=0", "opcua.port=0", f"links[0].port={free_port()}",
            f"links[1].port={free_port()}", "logging.level=\"error\"",
            # the failed-login summary every second, so that a phase's rows land in its own count
            f"login.summary_interval_s={SUMMARY_INTERVAL_S:g}",
        ]
        env = dict(os.environ, SCADA_ADMIN_PASSWORD=ADMIN_PASSWORD, PYTHONUNBUFFERED="1")
        child = subprocess.Popen(
            [sys.executable, "-m", "scada", *(a for o in overrides for a in ("--set", o)), "demo"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=open(args.server_log, "w") if args.server_log else subprocess.DEVNULL,
        )
        try:
            wait_port(port, 90)
            base = f"http://127.0.0.1:{port}"
            time.sleep(3)  # the demo's accounts and first polls
            admin = token(base, "admin", ADMIN_PASSWORD)
            add_user(base, admin, "viewer", "viewer", PASSWORDS["viewer"])
            add_user(base, admin, "cashier", "cashier", PASSWORDS["cashier"])
            tokens = {"admin": admin, "viewer": token(base, "viewer", PASSWORDS["viewer"]), "cashier": token(base, "cashier", PASSWORDS["cashier"])}
            db = folder / "var" / "demo" / "scada.db"
            server = psutil.Process(child.pid)

            asyncio.run(ordinary(base, admin, 2.0))  # warm-up
            baseline = asyncio.run(ordinary(base, admin, args.seconds))
            phases: list[dict[str, Any]] = []
            for name, kinds, concurrency in (("hostile", args.kinds, args.concurrency), ("large_history", "history_days", args.large_concurrency)):
                if not kinds or not concurrency:
                    continue
                rss_before = server.memory_info().rss
                rows0, bytes0 = audit_size(db)
                attacker = subprocess.Popen(
                    [sys.executable, __file__, "--hostile", base, "--seconds", str(args.seconds + 2), "--concurrency", str(concurrency),
                     "--kinds", kinds],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )
                assert attacker.stdin is not None and attacker.stdout is not None
                attacker.stdin.write(json.dumps(tokens) + "\n")
                attacker.stdin.close()
                time.sleep(2)  # the stream gets going
                attacked = asyncio.run(ordinary(base, admin, args.seconds))
                rss_end = server.memory_info().rss
                stream = json.loads(attacker.stdout.read())
                attacker.wait(60)
                time.sleep(SUMMARY_INTERVAL_S + 2)  # the summary of the stream's last failed logins is written
                rows1, bytes1 = audit_size(db)
                phases.append({"name": name, "kinds": kinds.split(","), "concurrency": concurrency, "attacked": attacked, "stream": stream,
                               "audit": (rows1 - rows0, bytes1 - bytes0), "rss": (rss_before, rss_end)})
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    refusals = ("400", "401", "404", "413", "415", "422", "429")
    out: dict[str, Any] = {
        "baseline": _latency(baseline), "seconds": args.seconds, "python": platform.python_version(), "cores": os.cpu_count(),
    }
    for phase in phases:
        statuses = phase["stream"]["statuses"]
        refused = sum(n for key, n in statuses.items() if key.split(":")[1] in refusals)
        rows, size = phase["audit"]
        out[phase["name"]] = {
            "ordinary": _latency(phase["attacked"]),
            "kinds": phase["kinds"], "concurrency": phase["concurrency"],
            "requests": sum(statuses.values()), "refused": refused,
            "not_refused": {k: n for k, n in statuses.items() if k.split(":")[1] not in refusals},
            "per_s": sum(statuses.values()) / (args.seconds + 2), "statuses": statuses,
            "p50_ms": phase["stream"]["p50_ms"], "max_ms": phase["stream"]["max_ms"],
            "audit": {"rows": rows, "bytes": size, "bytes_per_refused": size / refused if refused else None},
            "server_rss_mb": {"before": phase["rss"][0] / 2**20, "end": phase["rss"][1] / 2**20},
        }
    return out


def _latency(values: list[float]) -> dict[str, float]:
    return {"requests": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99), "max_ms": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="hostile connections")
    parser.add_argument("--kinds", default=",".join(k for k in KINDS if k != "history_days"), help="hostile request kinds")
    parser.add_argument("--large-concurrency", type=int, default=2, help="connections asking permitted large history queries (0: skip)")
    parser.add_argument("--server-log", help="write the server's log here")
    parser.add_argument("--hostile", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hostile:
        tokens = json.loads(sys.stdin.readline())
        kinds = tuple(k for k in args.kinds.split(",") if k)
        print(json.dumps(asyncio.run(hostile(args.hostile, tokens, args.seconds, args.concurrency, kinds))))
        return 0
    res = run(args)
    b = res["baseline"]
    print(f"security bench: GET /api/v1/rooms every 20 ms for {args.seconds:g} s, alone and under each stream of requests")
    print(f"python {res['python']}, {res['cores']} cores; server = scada demo (SQLite) in its own process")
    print(f"  alone: {b['requests']} requests, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms, max {b['max_ms']:.1f} ms")
    for name, title in (("hostile", "hostile stream"), ("large_history", "permitted large history queries (1970-2199 by day, 84,000 rows each)")):
        h = res.get(name)
        if h is None:
            continue
        o, au = h["ordinary"], h["audit"]
        print(f"\n[{name}] {title}: {h['concurrency']} connections")
        print(f"  GET /rooms: {o['requests']} requests, p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, max {o['max_ms']:.1f} ms (goal p99 < 100 ms)")
        print(f"  stream: {h['requests']:,} requests ({h['per_s']:,.0f}/s), {h['refused']:,} refused; not refused: {h['not_refused'] or 'none'}")
        for kind in h["kinds"]:
            codes = {k.split(':')[1]: n for k, n in h["statuses"].items() if k.startswith(kind + ":")}
            print(f"    {kind:<13} p50 {h['p50_ms'].get(kind, 0):7.1f} ms  max {h['max_ms'].get(kind, 0):7.1f} ms  {codes}")
        per = f"{au['bytes_per_refused']:.2f} bytes per refused request (goal < 1 KB)" if au["bytes_per_refused"] is not None else "no refusals"
        print(f"  audit log: +{au['rows']} rows, +{au['bytes']:,} bytes = {per}")
        print(f"  server memory: {h['server_rss_mb']['before']:.0f} MB before, {h['server_rss_mb']['end']:.0f} MB at the end")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2), encoding="utf-8")
    print(f"  written to {OUT.relative_to(OUT.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
