"""A relay job's throughput, and what it does to polling on the same link.

How it is measured: the simulator runs as its own process (``scada simulate --profile
acrel-adf400l --fill-circuits``: ``--meters`` meters, twelve circuits per Modbus unit id, all on
one port); the server runs in this process on SQLite (WAL, ``synchronous=FULL``) with one link
to that port (one connection, ``--gap-ms`` between frames, fast poll class every ``--fast-s``),
the command path confirming by read-back. After every meter has been polled, a ``relay``
disconnect job over ``--job`` of the meters is created through ``JobService.create`` as the
administrator. Figures: items per second from the job's creation until it is ``done``
(each item: its command row, the write, the read-back, the audit rows, the item's rows, all
committed), and the longest gap between two polls of each meter *not* in the job during that
time (from the reported ``power`` tag), against its poll interval. Run twice, the second time
with ``--urgent``: the job's requests then go before due polls (the behaviour without the
link's bulk lane), to show what the lane is for. Output: printed, and JSON under build/bench/jobs/.
Run: ``python bench/jobs/run.py`` (``make bench`` runs every bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scada.config import parse_config  # noqa: E402
from scada.core.tags import TAGDB  # noqa: E402
from scada.operations import kinds  # noqa: E402
from scada.operations.component import JOBS  # noqa: E402
from scada.users.component import USERS  # noqa: E402
from tags.subscription import by_names  # noqa: E402
from tests.harness import running_server  # noqa: E402
from tests.procs import ScadaProcess  # noqa: E402
from tests.scada.operations.test_pacing import write_circuit_site  # noqa: E402


def config_text(tmp: Path, port: int, fast_s: float, gap_ms: float) -> str:
    site = write_circuit_site(tmp / "site.toml")
    return f"""
[site]
name = "Bench"
timezone = "Asia/Shanghai"
import_file = "{site}"
[runtime]
data_dir = "{tmp}"
[database]
url = "sqlite:///{tmp / 'scada.db'}"
[logging]
level = "error"
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
timeout_s = 1.0
max_in_flight = 1
inter_frame_gap_ms = {gap_ms}
[modbus]
poll_intervals = {{ fast = {fast_s}, energy = 60 }}
start_spread = 1.0
[alarms]
enabled = false
[prepaid]
enabled = false
[commands]
confirm_interval_s = 0.05
[operations]
approval_relay_rooms_above = 100000
"""


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", type=int, default=500)
    ap.add_argument("--fast-s", type=float, default=8.0)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--urgent", action="store_true", help="the job's requests before due polls (no bulk lane)")
    args = ap.parse_args()
    meters = 528
    os.environ.setdefault("SCADA_ADMIN_PASSWORD", "bench-admin-password")
    if args.urgent:  # the job's commands as interactive ones
        original = kinds.CommandRequest

        def urgent(*a: object, **kw: object) -> object:
            kw["bulk"] = False
            return original(*a, **kw)  # type: ignore[arg-type]

        kinds.CommandRequest = urgent  # type: ignore[assignment,misc]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sim = ScadaProcess(["simulate", "--meters", str(meters), "--profile", "acrel-adf400l", "--fill-circuits", "--port", "0"], cwd=tmp)
        try:
            line = await asyncio.to_thread(sim.wait_for, r"^modbus port0", 60)
            port = int(line.split()[2].rsplit(":", 1)[1])
            config = parse_config(config_text(tmp, port, args.fast_s, args.gap_ms), "<bench>", tmp)
            async with running_server(config) as rt:
                tagdb = rt.ctx[TAGDB]
                ids = [f"SIM-{n:05d}" for n in range(1, meters + 1)]
                while not all(tagdb.read(f"{m}.relay_closed").value is True for m in ids):
                    await asyncio.sleep(0.2)
                others = ids[args.job:]
                watched = [f"{m}.power" for m in others]
                seen: dict[str, list[float]] = {n: [] for n in watched}
                sub = tagdb.subscribe(by_names(watched), include_reported=True)
                loop = asyncio.get_running_loop()

                async def record() -> None:
                    while True:
                        for c in await sub.get_batch(1000):
                            seen[c.name].append(loop.time())

                recorder = loop.create_task(record())
                admin = await rt.ctx[USERS].get("admin")
                assert admin is not None
                jobs = rt.ctx[JOBS]
                cpu0, t0 = time.process_time(), loop.time()
                job = await jobs.create("relay", {"rooms": [f"R{n:03d}" for n in range(1, args.job + 1)]}, {"action": "disconnect"},
                                        user=admin, actor=admin.actor("cli"))
                while (view := await jobs.get(job.id, items=False)).state not in ("done", "failed"):
                    await asyncio.sleep(0.05)
                t1, cpu1 = loop.time(), time.process_time()
                recorder.cancel()
                await asyncio.gather(recorder, return_exceptions=True)
                sub.close()
            gaps = []
            for times in seen.values():
                during = [t0] + [t for t in times if t0 <= t <= t1] + [t1]
                gaps.append(max(b - a for a, b in zip(during, during[1:], strict=False)))
        finally:
            sim.stop()
    result = {
        "bench": "jobs", "lane": "urgent" if args.urgent else "bulk", "items": args.job, "state": view.state,
        "seconds": round(t1 - t0, 2), "items_per_s": round(args.job / (t1 - t0), 1), "server_cpu_s": round(cpu1 - cpu0, 2),
        "poll_interval_s": args.fast_s, "longest_poll_gap_s": round(max(gaps), 2), "gap_ms": args.gap_ms,
        "machine": platform.platform(), "python": platform.python_version(),
    }
    print(json.dumps(result, indent=1))
    out = Path(__file__).resolve().parents[2] / "build" / "bench" / "jobs"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"result-{result['lane']}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
