"""Run every benchmark (``bench/*/run.py``) within a time budget; the figures go to build/bench/.

Each bench runs in its own process with its output kept in ``build/bench/<name>.txt``. A bench
that writes its own JSON (``build/bench/<name>.json``) keeps it; for one that does not, the
runner writes that file with the bench's printed figures (its standard output, line by line).
``build/bench/summary.json`` lists every bench with its exit code and wall time. A bench that
would pass the overall deadline (``--budget``, 15 minutes by default) is stopped and marked so;
the benches after it are skipped and marked so too.

Benches run without arguments (their defaults), except those in ``ARGS``: the whole-pipeline
bench defaults to 50,000 meters for 10 minutes, so here it runs a small site (1,000 meters,
90 s after start-up, 15 s polls: about 2.5 minutes of wall time); the reports bench's month of
10,000 meters takes 6–16 minutes to generate the first time, so here it runs 1,000 meters
(its issue figure: ``python bench/reports/run.py``); the historian ingests 7 days instead of 30,
Modbus and OPC UA run their ``--quick`` sizes, prepaid leaves out its one-commit-per-reading
cases and the tags bench writes 3 rounds instead of 5. With all of them at their defaults the
benches took ~30 minutes here (historian 6.5, Modbus 2.5, OPC UA 2.3 of them); with these, ~13.

Run: ``python bench/run_all.py`` (``make bench``); ``--only hmi,prepaid`` runs some of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
# arguments for the benches whose defaults would not fit the budget
ARGS: dict[str, list[str]] = {
    "historian": ["--days", "7"],
    "modbus": ["--quick"],
    "opcua": ["--quick"],
    "pipeline": ["--meters", "1000", "--duration", "90", "--poll-s", "15"],
    "prepaid": ["--batched-only"],
    "reports": ["--meters", "1000"],
    "tags": ["--rounds", "3"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=15 * 60, help="seconds for all the benches together")
    parser.add_argument("--only", default="", help="comma-separated bench names (default: all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    names = sorted(p.parent.name for p in (ROOT / "bench").glob("*/run.py"))
    if args.only:
        names = [n for n in names if n in set(args.only.split(","))]
    deadline = time.monotonic() + args.budget
    summary: list[dict[str, object]] = []
    failed = False
    for name in names:
        left = deadline - time.monotonic()
        if left <= 0:
            summary.append({"bench": name, "status": "skipped: budget spent"})
            continue
        print(f"== bench/{name}/run.py", flush=True)
        own = OUT / f"{name}.json"
        before = own.stat().st_mtime if own.exists() else None
        t0 = time.monotonic()
        with (OUT / f"{name}.txt").open("w", encoding="utf-8") as log:
            proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / name / "run.py"), *ARGS.get(name, [])], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:  # the bench's own pace: a line at a time, to the screen and the log
                print(line, end="", flush=True)
                log.write(line)
                lines.append(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    proc.terminate()
                    break
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                code = proc.wait(30)
        wall = time.monotonic() - t0
        over = time.monotonic() > deadline
        status = "stopped: budget spent" if over else ("ok" if code == 0 else f"failed ({code})")
        failed = failed or (code != 0 and not over)
        if not own.exists() or own.stat().st_mtime == before:
            own.write_text(json.dumps({"bench": name, "status": status, "output": lines}, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
        summary.append({"bench": name, "status": status, "exit_code": code, "wall_s": round(wall, 1)})
    (OUT / "summary.json").write_text(json.dumps({"budget_s": args.budget, "benches": summary}, indent=2) + "\n", encoding="utf-8")
    for row in summary:
        print(f"{row['bench']:<12} {row['status']:<24} {row.get('wall_s', '')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
