"""The store-and-forward buffer: a bounded queue of batches on disk, and the aggregator's state.

Every closed interval and every batch of raw points is appended here first (in one SQLite
transaction with the aggregator's state, so the two never disagree after a crash) and removed
only once the backend has taken it. When the backend is away the batches simply stay; a restart
finds them again. The queue is bounded by a number of points: when an append would overflow
it, the oldest batches are dropped (and counted) — the fill level is published long before so
that someone can act.

Batches the backend refuses for good (a malformed point, a type conflict) are moved to a
``rejected`` table with the reason, so one bad batch cannot block the queue forever.

SQLite runs in one worker thread owned by the spool; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Spool", "SpoolBatch", "SpoolInUse"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    points INTEGER NOT NULL,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    points INTEGER NOT NULL,
    created REAL NOT NULL,
    rejected REAL NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class SpoolInUse(RuntimeError):
    """Another server (or historian) holds this buffer."""


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    seq: int
    kind: str  # "interval" | "day" | "rebuild_day" | "raw"
    items: list[Any]  # JSON forms of IntervalRecord / RawPoint


def _encode(items: Sequence[Any]) -> bytes:
    return zlib.compress(json.dumps(items, separators=(",", ":")).encode(), 1)


def _decode(payload: bytes) -> list[Any]:
    return json.loads(zlib.decompress(payload))  # type: ignore[no-any-return]


class Spool:
    def __init__(self, path: Path, max_points: int, *, chunk_points: int = 5_000) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        self.path = path
        self.max_points = max_points
        self.chunk_points = chunk_points
        self.points = 0  # points waiting
        self.batches = 0
        self.dropped = 0  # points dropped because the buffer was full, since start
        self.rejected = 0  # points in the rejected table
        self._conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="historian-spool")
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=1.0)
        # one server per buffer: two forwarders sharing one would send each other's data to
        # their own backends. The lock is the file's; it goes with the process.
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.close()
            raise SpoolInUse(f"historian buffer {self.path} is in use by another server ({exc})") from None
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
        conn.executescript(_SCHEMA)
        self._conn = conn
        self.points, self.batches = conn.execute("SELECT coalesce(sum(points), 0), count(*) FROM batches").fetchone()
        self.rejected = conn.execute("SELECT coalesce(sum(points), 0) FROM rejected").fetchone()[0]

    async def close(self) -> None:
        if self._pool is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._pool.shutdown(wait=True)
        self._pool = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def fill(self) -> float:
        return min(1.0, self.points / self.max_points)

    # -- queue -------------------------------------------------------------------------------
    async def append(self, kind: str, items: Sequence[Any], *, state: str | None = None) -> int:
        """Queue ``items`` (JSON forms) and save ``state`` in the same transaction.

        Returns the number of points dropped to stay within ``max_points`` (oldest first).
        """
        return await self.append_many([(kind, items)], state=state)

    async def append_many(self, groups: Sequence[tuple[str, Sequence[Any]]], *, state: str | None = None) -> int:
        """Queue several kinds of items, in this order, in one transaction with ``state``."""
        return await self._run(self._append_sync, [(k, list(items)) for k, items in groups], state)

    def _append_sync(self, groups: list[tuple[str, list[Any]]], state: str | None) -> int:
        conn = self._require()
        rows: list[tuple[str, int, bytes]] = []
        for kind, items in groups:
            for i in range(0, len(items), self.chunk_points):
                part = items[i:i + self.chunk_points]
                rows.append((kind, len(part), _encode(part)))
        sizes = [n for _, n, _ in rows]
        now = time.time()
        dropped = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, n, payload in rows:
                conn.execute(
                    "INSERT INTO batches (kind, points, created, payload) VALUES (?, ?, ?, ?)", (kind, n, now, payload)
                )
            points = self.points + sum(sizes)
            batches = self.batches + len(sizes)
            while points > self.max_points:
                row = conn.execute("SELECT seq, points FROM batches ORDER BY seq LIMIT 1").fetchone()
                if row is None:
                    break
                conn.execute("DELETE FROM batches WHERE seq = ?", (row[0],))
                points -= row[1]
                batches -= 1
                dropped += row[1]
            if state is not None:
                conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('aggregator', ?)", (state,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.points, self.batches = points, batches
        self.dropped += dropped
        return dropped

    async def peek(self, max_points: int) -> list[SpoolBatch]:
        """The oldest batches, at least one and up to about ``max_points`` points."""
        return await self._run(self._peek_sync, max_points)

    def _peek_sync(self, max_points: int) -> list[SpoolBatch]:
        conn = self._require()
        out: list[SpoolBatch] = []
        total = 0
        for seq, kind, points, payload in conn.execute("SELECT seq, kind, points, payload FROM batches ORDER BY seq"):
            if out and total + points > max_points:
                break
            out.append(SpoolBatch(seq, kind, _decode(payload)))
            total += points
        return out

    async def remove(self, seqs: Sequence[int]) -> None:
        await self._run(self._remove_sync, list(seqs))

    def _remove_sync(self, seqs: list[int]) -> None:
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in seqs])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.points, self.batches = conn.execute("SELECT coalesce(sum(points), 0), count(*) FROM batches").fetchone()

    async def reject(self, seq: int, reason: str) -> None:
        """Move a batch the backend refuses for good out of the queue, keeping it for inspection."""
        await self._run(self._reject_sync, seq, reason)

    def _reject_sync(self, seq: int, reason: str) -> None:
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO rejected (seq, kind, points, created, rejected, reason, payload) "
                "SELECT seq, kind, points, created, ?, ?, payload FROM batches WHERE seq = ?",
                (time.time(), reason[:2000], seq),
            )
            conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.points, self.batches = conn.execute("SELECT coalesce(sum(points), 0), count(*) FROM batches").fetchone()
        self.rejected = conn.execute("SELECT coalesce(sum(points), 0) FROM rejected").fetchone()[0]

    # -- aggregator state --------------------------------------------------------------------
    async def save_state(self, state: str) -> None:
        await self._run(self._save_state_sync, state)

    def _save_state_sync(self, state: str) -> None:
        self._require().execute("INSERT OR REPLACE INTO state (key, value) VALUES ('aggregator', ?)", (state,))

    async def load_state(self) -> str | None:
        return await self._run(self._load_state_sync)

    def _load_state_sync(self) -> str | None:
        row = self._require().execute("SELECT value FROM state WHERE key = 'aggregator'").fetchone()
        return None if row is None else str(row[0])

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return self._conn

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "points": self.points,
            "batches": self.batches,
            "max_points": self.max_points,
            "fill": round(self.fill, 4),
            "dropped": self.dropped,
            "rejected": self.rejected,
        }
