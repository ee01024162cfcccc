"""Tag writes per second at 100,000 tags with 0, 1 and 10 subscribers.

How it is measured: one process, one event loop. 100,000 tags are registered; a writer task
writes every tag once per round with a new value (so every write is a change), in batches of
1,000 through ``TagDB.write_many`` as a poller would, yielding to the loop after each batch.
Subscribers are tasks that consume with ``get_batch`` and touch every change. The figure is
writes/s over whole rounds (writer and subscribers share the one core the loop runs on), plus
the same with subscribers that never read (coalescing keeps their memory bounded) and with
single ``write`` calls. CPU time is process time. Last, a subscriber that fell behind: it
stalls while the rounds are written (its FIFO of 50,000 fills, the rest coalesces by tag), then
takes the backlog 10,000 at a time as the prepaid engine does; the figure is the time to take
it all. Run: ``python bench/tags/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tags import TagDB, TagMeta, TagWrite  # noqa: E402

N_TAGS = 100_000
BATCH = 1_000


def make_db() -> tuple[TagDB, list[str]]:
    db = TagDB()
    names = [f"E-{i // 10:05d}.p{i % 10}" for i in range(N_TAGS)]
    for n in names:
        db.register(TagMeta(n))
    return db, names


async def consume(sub, counter: list[int]) -> None:  # type: ignore[no-untyped-def]
    try:
        while True:
            batch = await sub.get_batch(5000)
            for change in batch:
                _ = change.new.value
            counter[0] += len(batch)
    except StopAsyncIteration:
        return


async def run_case(subscribers: int, *, stalled: bool, rounds: int, single: bool = False) -> dict[str, float]:
    db, names = make_db()
    subs = [db.subscribe(maxsize=50_000, name=f"s{i}") for i in range(subscribers)]
    counter = [0]
    tasks = [] if stalled else [asyncio.create_task(consume(s, counter), name=f"consumer-{i}") for i, s in enumerate(subs)]
    writes = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for r in range(rounds):
        value = float(r)
        for start in range(0, N_TAGS, BATCH):
            chunk = names[start:start + BATCH]
            if single:
                for n in chunk:
                    db.write(n, value)
            else:
                db.write_many([TagWrite(n, value) for n in chunk])
            writes += len(chunk)
            await asyncio.sleep(0)
    # let consumers finish what is queued: part of the cost of delivering
    while not stalled and any(s.pending for s in subs):
        await asyncio.sleep(0)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    max_pending = max((s.pending for s in subs), default=0)
    dropped = sum(s.dropped for s in subs)
    for s in subs:
        s.close()
    for t in tasks:
        await t
    return {"writes": writes, "s": elapsed, "cpu": cpu, "wps": writes / elapsed, "delivered": counter[0],
            "max_pending": max_pending, "dropped": dropped}


def drain_backlog(rounds: int) -> dict[str, float]:
    db, names = make_db()
    sub = db.subscribe(maxsize=50_000, name="behind")
    for r in range(rounds):
        db.write_many([TagWrite(n, float(r)) for n in names])
    backlog = sub.pending
    t0 = time.perf_counter()
    taken = 0
    while batch := sub.drain(10_000):
        taken += len(batch)
    elapsed = time.perf_counter() - t0
    sub.close()
    return {"backlog": backlog, "taken": taken, "s": elapsed}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    print(f"python {platform.python_version()} on {platform.machine()}, {N_TAGS:,} tags, batches of {BATCH:,}, {args.rounds} rounds")
    print(f"{'case':<40} {'writes/s':>12} {'cpu s':>8} {'delivered':>12} {'max queue':>10} {'dropped':>10}")
    cases = [
        ("0 subscribers, write_many", 0, False, False),
        ("0 subscribers, single write()", 0, False, True),
        ("1 subscriber reading", 1, False, False),
        ("10 subscribers reading", 10, False, False),
        ("1 subscriber stalled", 1, True, False),
        ("10 subscribers stalled", 10, True, False),
    ]
    for label, n, stalled, single in cases:
        best = None
        for _ in range(3):
            res = await run_case(n, stalled=stalled, rounds=args.rounds, single=single)
            if best is None or res["wps"] > best["wps"]:
                best = res
        assert best is not None
        print(f"{label:<40} {best['wps']:>12,.0f} {best['cpu']:>8.2f} {best['delivered']:>12,} {best['max_pending']:>10,} {best['dropped']:>10,}")
    print("best of 3 runs per case")
    d = drain_backlog(args.rounds)
    print(f"a subscriber behind by {d['backlog']:,} changes (FIFO full, the rest coalesced) takes them all in {d['s'] * 1000:,.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
