"""SQLite with the driver's calls in the calling thread (``Database(driver_in_place=True)``, billing's
database on its side loop): the same database as through aiosqlite's worker thread, without the
thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from scada.core.sideloop import SideLoop
from scada.db.engine import Database, async_url
from tests.scada.test_db_lock import LockHolder


def _thread_function(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.create_function("thread_id", 0, threading.get_ident)  # the thread that runs the statement


def _open(path: Path, *, in_place: bool) -> Database:
    database = Database(async_url(f"sqlite:///{path}"), pool_size=1, driver_in_place=in_place)
    event.listen(database.engine.sync_engine, "connect", _thread_function)
    return database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = _open(tmp_path / "inplace.db", in_place=True)
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT UNIQUE)"))
    yield database
    await database.dispose()


def _rows(db: Database) -> list[str]:
    con = sqlite3.connect(db.url.database or "")
    try:
        return [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")]
    finally:
        con.close()


async def _statement_thread(db: Database) -> int:
    async with db.transaction() as s:
        return int((await s.execute(text("SELECT thread_id()"))).scalar_one())


async def test_statements_run_in_the_calling_thread_and_no_worker_thread_is_started(tmp_path: Path) -> None:
    before = threading.active_count()
    in_place = _open(tmp_path / "a.db", in_place=True)
    threaded = _open(tmp_path / "b.db", in_place=False)
    try:
        assert await _statement_thread(in_place) == threading.get_ident()
        assert threading.active_count() == before
        assert await _statement_thread(threaded) != threading.get_ident()  # aiosqlite's worker thread
        assert threading.active_count() == before + 1
    finally:
        await in_place.dispose()
        await threaded.dispose()


async def test_on_a_side_loop_they_run_on_its_thread(db: Database) -> None:
    async with SideLoop("side-db", closing=db.dispose) as side:
        ident = await side.run(_statement_thread(db))
        thread = await side.run(asyncio.to_thread(threading.get_ident))  # some other thread, for contrast
        assert ident != threading.get_ident() and ident != thread
        assert ident == await side.run(_thread_of_loop())


async def _thread_of_loop() -> int:
    return threading.get_ident()


async def test_the_connection_is_set_up_as_every_writer_connection(db: Database) -> None:
    async with db.transaction() as s:
        pragmas = [(await s.execute(text(f"PRAGMA {p}"))).scalar_one() for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")]
    assert pragmas == ["wal", 2, 1, 20]  # WAL, FULL, on; the short busy timeout of the lock's retries


async def test_commits_are_durable_and_an_error_rolls_the_whole_transaction_back(db: Database) -> None:
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO t (who) VALUES ('first')"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (who) VALUES ('second')"))
            await s.execute(text("INSERT INTO t (who) VALUES ('first')"))  # UNIQUE
    assert _rows(db) == ["first"]
    async with db.transaction() as s:  # the pool's connection still serves after the error
        await s.execute(text("INSERT INTO t (who) VALUES ('third')"))
    assert _rows(db) == ["first", "third"]


async def test_a_writer_waits_for_another_processes_lock_and_writes_once_it_is_released(db: Database) -> None:
    async with LockHolder(Path(db.url.database or "")) as holder:
        writer = asyncio.create_task(_write(db, "waited"))
        await asyncio.sleep(0.3)
        assert not writer.done()
        holder.release.set()
        await asyncio.wait_for(writer, 10)
    assert _rows(db) == ["holder", "waited"]


async def _write(db: Database, who: str) -> None:
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})


def _open_files(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == str(path))


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed since listed
        return ""


async def test_dispose_closes_the_connection(db: Database) -> None:
    path = Path(db.url.database or "")
    await _write(db, "one")
    assert _open_files(path) == 1  # the pool keeps its connection
    await db.dispose()
    assert _open_files(path) == 0
    await _write(db, "two")  # a disposed engine connects again
    assert _rows(db) == ["one", "two"]
