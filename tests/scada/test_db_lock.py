"""SQLite's write lock: a writer waits for it on the event loop, so that a cancelled writer ends
at once and never takes the lock later with nobody left to release it (a stop, then the next
start in the same process met "database is locked")."""

from __future__ import annotations

import asyncio
import logging
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
from scada.users.audit import WRITE_ATTEMPTS, Actor, AuditLog


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


async def test_a_writer_that_waits_the_lock_out_names_the_task_holding_it(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 0.3)
    monkeypatch.setattr(engine, "LONG_HOLD_S", 0.2)
    caplog.set_level(logging.WARNING, logger="scada.db.engine")
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (who) VALUES ('long')"))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold(), name="billing:batch")
    await holding.wait()
    with pytest.raises(OperationalError):
        await asyncio.create_task(_write(db, "starved"), name="jobs:tick")
    waited = [r for r in caplog.records if r.getMessage() == "SQLite write lock not taken"]
    assert len(waited) == 1 and waited[0].task == "jobs:tick" and waited[0].holder == "billing:batch"  # type: ignore[attr-defined]
    assert waited[0].waited_ms >= 300 and waited[0].held_ms >= 300  # type: ignore[attr-defined]
    release.set()
    await holder
    (long,) = [r for r in caplog.records if r.getMessage() == "SQLite write lock held long"]
    assert long.holder == "billing:batch" and long.held_ms >= 300  # type: ignore[attr-defined]
    # a short transaction is not logged, and the lock's holder is forgotten once it ends
    caplog.clear()
    await _write(db, "quick")
    assert not caplog.records and not engine._holders
    # a writer of another process is named as such
    async with LockHolder(_path(db)):
        with pytest.raises(OperationalError):
            await _write(db, "starved again")
    (other,) = [r for r in caplog.records if r.getMessage() == "SQLite write lock not taken"]
    assert other.holder == "another process"  # type: ignore[attr-defined]
    assert _rows(db) == ["long", "quick", "holder"]


# -- the audit log's own entries -------------------------------------------------------------


@pytest.fixture
async def audited_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database (the audit log's table) with the lock holder's table too."""
    database = Database(async_url(f"sqlite:///{tmp_path / 'audit.db'}"))
    await database.upgrade()
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))
    yield database
    await database.dispose()


def _audit_actions(db: Database) -> list[str]:
    con = sqlite3.connect(_path(db))
    try:
        return [r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY id")]
    finally:
        con.close()


async def _logged(caplog: pytest.LogCaptureFixture, message: str, timeout: float = 10) -> logging.LogRecord:
    for _ in range(int(timeout / 0.02)):
        for record in caplog.records:
            if record.getMessage() == message:
                return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"no log record {message!r}")


async def test_an_audit_entry_of_its_own_waits_out_a_lock_held_past_the_writers_wait(
    audited_db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # the API router's record of a sign-in was lost this way at 50,000 meters: the billing batch
    # held the write lock past the 10-s wait, and the entry's one try gave up
    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 0.3)
    caplog.set_level(logging.WARNING, logger="scada.users.audit")
    audit = AuditLog(audited_db)
    async with LockHolder(_path(audited_db)) as holder:
        writer = asyncio.create_task(audit.write(Actor("ops", "api"), "api.auth.login", "api", "/api/v1/auth/login", outcome="ok"))
        retry = await _logged(caplog, "audit entry met a locked database; trying again")
        assert retry.__dict__["attempt"] == 1 and not writer.done()
        holder.release.set()
        await asyncio.wait_for(writer, 10)
    assert _audit_actions(audited_db) == ["api.auth.login"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_audit_entry_that_cannot_be_written_is_logged_whole_before_the_error(
    audited_db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 0.2)
    caplog.set_level(logging.WARNING, logger="scada.users.audit")
    audit = AuditLog(audited_db)
    async with LockHolder(_path(audited_db)):
        with pytest.raises(OperationalError):
            await asyncio.wait_for(
                audit.write(Actor("ops", "api"), "api.auth.login", "api", "/api/v1/auth/login", reason="bad password", outcome="denied",
                            after={"body": "x" * 20_000}), 20,
            )
    retries = [r for r in caplog.records if r.getMessage() == "audit entry met a locked database; trying again"]
    assert [r.__dict__["attempt"] for r in retries] == list(range(1, WRITE_ATTEMPTS))
    (lost,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert lost.getMessage() == "audit entry not written"
    assert (lost.__dict__["actor"], lost.__dict__["action"], lost.__dict__["target_id"], lost.__dict__["attempts"]) == (
        "ops", "api.auth.login", "/api/v1/auth/login", WRITE_ATTEMPTS)
    entry = lost.__dict__["entry"]
    assert (entry["reason"], entry["outcome"]) == ("bad password", "denied")
    assert entry["after"]["truncated"] and entry["after"]["size"] > 20_000  # bounded as the row would be
    assert _audit_actions(audited_db) == []


async def test_a_writer_cancelled_in_a_statement_ends_cancelled(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while a statement runs, the session invalidates its connection and rolls back:
    the lock's bookkeeping (which reads nothing of an invalidated connection) must not turn the
    cancellation into another error, or a task being stopped would take it for a failure and go
    on (the billing task did not stop)."""
    started = asyncio.Event()

    async def long_write() -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (who) VALUES ('cancelled')"))
            started.set()
            await s.execute(text(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) FROM c"
            ))

    task = asyncio.create_task(long_write(), name="billing:batch")
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    # the driver's thread finishes the cancelled statement (~1 s here, several on a loaded
    # machine) and holds the write lock until then: the next writer may wait that long
    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 60.0)
    await _write(db, "after")
    assert _rows(db) == ["after"] and not engine._holders and not engine._open
