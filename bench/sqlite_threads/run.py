"""2,000 rows into and out of SQLite from a driver's thread, with and without a busy thread beside it.

Why: aiosqlite runs each statement on a thread of its own, and Python's ``sqlite3`` gives up the
interpreter's lock around every row it steps (each row of an ``executemany``, each row of a
result). While another thread of the process runs Python without pause (a server's event loop
at site scale), taking the lock back waits for that thread's switch interval (5 ms) at every
row. ``scada.db.bulk`` therefore sends a batch's rows as ``VALUES`` lists of up to 256 rows and
reads them back as one JSON array; this bench measures those forms against the row-at-a-time
ones.

How it is measured: a SQLite file (WAL, ``synchronous=FULL``), a table of 22 text columns; on
a worker thread, inside ``BEGIN IMMEDIATE``/``COMMIT``: an ``executemany`` of 2,000 rows, the
same rows as statements of 256, 128, ... rows (``VALUES`` lists), and as one JSON array
(``INSERT ... SELECT json_extract(...) FROM json_each(?)``); reads of 2,000 rows by key, row by
row (``IN (...)``, ``fetchall``) and as one JSON array (``json_group_array``). Each case
``--repeat`` times (the median is reported) with the main thread idle, then with a thread
running a pure-Python loop beside it. Run: ``python bench/sqlite_threads/run.py``; the figures
go to ``build/bench/sqlite_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scada.db.bulk import chunk_sizes  # noqa: E402  (scada.db.bulk's own statement sizes)

COLUMNS = [f"c{i}" for i in range(22)]


def setup(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(c + ' TEXT' for c in COLUMNS)})")
    return con


def cases(con: sqlite3.Connection, n: int) -> dict[str, Callable[[], None]]:
    rows = [tuple(f"{r}.{i}" for i in range(len(COLUMNS))) for r in range(n)]
    width = len(COLUMNS)
    one = "(" + ", ".join("?" * width) + ")"
    insert = f"INSERT INTO t ({', '.join(COLUMNS)}) VALUES "
    by_json = (f"INSERT INTO t ({', '.join(COLUMNS)}) SELECT "
               f"{', '.join(f'json_extract(u.value, {chr(39)}$[{i}]{chr(39)})' for i in range(width))} FROM json_each(?) AS u ORDER BY u.key")

    def write(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            con.execute("DELETE FROM t")
            con.execute("BEGIN IMMEDIATE")
            body()
            con.execute("COMMIT")
        return run

    def many() -> None:
        con.executemany(insert + one, rows)

    def values() -> None:
        i = 0
        for size in chunk_sizes(len(rows), 256):
            con.execute(insert + ", ".join([one] * size), tuple(chain.from_iterable(rows[i:i + size])))
            i += size

    def as_json() -> None:
        con.execute(by_json, (json.dumps(rows),))

    ids = list(range(1, n + 1))
    read_rows = f"SELECT * FROM t WHERE id IN ({', '.join('?' * n)})"
    read_json = (f"SELECT json_group_array(json_array(id, {', '.join(COLUMNS)})) FROM t "
                 f"WHERE id IN (SELECT value FROM json_each(?))")

    def reads_rows() -> None:
        assert len(con.execute(read_rows, ids).fetchall()) == n

    def reads_json() -> None:
        assert len(json.loads(con.execute(read_json, (json.dumps(ids),)).fetchone()[0])) == n

    return {
        "insert executemany": write(many), "insert VALUES lists": write(values), "insert JSON array": write(as_json),
        "read rows": reads_rows, "read JSON array": reads_json,
    }


def _spin(stop: threading.Event) -> None:
    """Python without pause, as a server's event loop at site scale."""
    x = 0
    while not stop.is_set():
        x += 1


def timed_on_a_thread(fn: Callable[[], None]) -> float:
    took: list[float] = []

    def run() -> None:
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return took[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="build/bench/sqlite_threads.json", help="where the figures are written")
    args = parser.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}, python {platform.python_version()}: {args.rows:,} rows of {len(COLUMNS)} text columns, "
          f"on a worker thread, median of {args.repeat}")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        con = setup(Path(tmp) / "t.db")
        runs = cases(con, args.rows)
        runs["insert VALUES lists"]()  # the table holds the rows the reads read
        for busy in (False, True):
            stop = threading.Event()
            spinner = None
            if busy:
                spinner = threading.Thread(target=_spin, args=(stop,))
                spinner.start()
            label = "a busy thread beside it" if busy else "idle"
            for name, fn in runs.items():
                if name.startswith("read"):
                    runs["insert VALUES lists"]()
                ms = statistics.median(timed_on_a_thread(fn) for _ in range(args.repeat)) * 1000
                figures.setdefault(name, {})[label] = round(ms, 1)
                print(f"  {name:<22} {label:<24} {ms:9.1f} ms", flush=True)
            stop.set()
            if spinner is not None:
                spinner.join()
        con.close()
    out = Path(args.json)
    if not out.is_absolute():
        out = Path(__file__).resolve().parents[2] / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "sqlite_threads", "rows": args.rows, "ms": figures, "sqlite": sqlite3.sqlite_version,
                               "python": platform.python_version()}, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
