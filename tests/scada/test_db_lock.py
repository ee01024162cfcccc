"""SQLite's write lock: a writer waits for it on the event loop, so that a cancelled writer ends
at once and never takes the lock later with nobody left to release it (a stop, then the next
start in the same process met "database is locked")."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import scada.db.engine as engine
from scada.core.runtime import database_locked
from scada.db.engine import Database, async_url


class LockHolder:
    """Another process's writer, on its own thread: holds the write lock until released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.release = threading.Event()
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t (who) VALUES ('holder')")
        self.holding.set()
        self.release.wait(60)
        con.execute("COMMIT")
        con.close()

    async def __aenter__(self) -> LockHolder:
        assert await asyncio.to_thread(self.holding.wait, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join, 10)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database of its own (the suite's ``db`` is also PostgreSQL, which has no such lock)."""
    database = Database(async_url(f"sqlite:///{tmp_path / 'lock.db'}"))
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))
    yield database
    await database.dispose()


def _path(db: Database) -> Path:
    return Path(db.url.database or "")


def _rows(db: Database) -> list[str]:
    con = sqlite3.connect(_path(db))
    try:
        return [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")]
    finally:
        con.close()


async def _write(db: Database, who: str) -> None:
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})


async def test_a_writer_cancelled_while_it_waits_for_the_lock_ends_at_once_and_holds_nothing(db: Database) -> None:
    async with LockHolder(_path(db)):
        writer = asyncio.create_task(_write(db, "cancelled"))
        await asyncio.sleep(0.3)  # waiting for the lock by now
        assert not writer.done()
        writer.cancel()
        # ends while the other writer still holds the lock (it used to wait in SQLite's busy
        # handler for the lock, and take it, before the cancellation could end it)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(writer, 5)
    # the lock is free: a writer that will not wait at all gets it
    con = sqlite3.connect(_path(db), isolation_level=None, timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    finally:
        con.close()
    assert _rows(db) == ["holder"]
    await _write(db, "after")  # and the engine's pool still serves
    assert _rows(db) == ["holder", "after"]


async def test_a_writer_waits_for_the_lock_and_writes_once_it_is_released(db: Database) -> None:
    async with LockHolder(_path(db)) as holder:
        writer = asyncio.create_task(_write(db, "waited"))
        await asyncio.sleep(0.5)  # many of SQLite's short waits: the writer keeps trying
        assert not writer.done()
        holder.release.set()
        await asyncio.wait_for(writer, 10)
    assert _rows(db) == ["holder", "waited"]


async def test_a_writer_gives_up_with_database_locked_after_the_wait(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 0.3)
    async with LockHolder(_path(db)):
        with pytest.raises(OperationalError) as err:  # SQLAlchemy's, as for any statement: callers catch DBAPIError
            await asyncio.wait_for(_write(db, "gave up"), 10)
        assert database_locked(err.value)
    assert _rows(db) == ["holder"]
