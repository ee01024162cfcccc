"""The database: one async SQLAlchemy engine for SQLite (default) or PostgreSQL, and migrations.

The same models and Alembic migrations serve both engines. SQLite runs in WAL mode with
``synchronous=FULL``, foreign keys on, and a busy timeout; every transaction that touches money
goes through :meth:`Database.transaction`.

A writer that finds the write lock taken waits for it on the event loop, not in SQLite's busy
handler: ``BEGIN IMMEDIATE`` is tried with a short busy timeout and tried again after an
``asyncio.sleep`` until :data:`WRITE_LOCK_WAIT_S` have passed. A task cancelled while it waits
(a stop, a request whose client went away) therefore ends at once and leaves no driver thread
behind that takes the lock later, with nobody left to release it. A process can also tell its
writers to give up waiting early (:func:`give_up_lock_waits_when`: the billing process, whose
server stops).

A transaction that held the write lock for :data:`LONG_HOLD_S` or more is logged when it ends
("SQLite write lock held long", with the task that held it), and a writer that waited the lock
out logs which task of this process held it and for how long: every other writer waits for such
a transaction, so an overloaded server names what starves the rest.

On SQLite every transaction of :attr:`Database.sessions` takes the write lock up front (``BEGIN
IMMEDIATE``, so that two writers never deadlock). Lookups that only read and come with every
request (a token, a web session, a user), and the periodic and background ones (sweeps, ticks,
jobs, the asset registry's load), go through :meth:`Database.reads` instead: a read-only
connection whose snapshot never waits for the write lock, so that neither a stream of requests
nor a sweep that finds nothing to do contends with billing for it (at 50,000 meters a session
held the lock for as long as a busy loop took to run its statements: seconds).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from scada.core.runtime import database_locked
from scada.db.inplace import in_place_creator

__all__ = ["Database", "async_url", "give_up_lock_waits_when"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

WRITE_LOCK_WAIT_S = 10.0  # how long a writer waits for SQLite's write lock before "database is locked"
_LOCK_TRY_MS = 20  # SQLite's own wait per try (the driver thread cannot be cancelled in it)
_LOCK_PAUSES_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)  # between tries, then the last one again
LONG_HOLD_S = 5.0  # a transaction holding the write lock this long is logged: others wait for it
# SQLAlchemy connection (by id, from its BEGIN to its COMMIT or ROLLBACK) → (task, since). Not in
# the connection's ``info``: reading that of a connection invalidated by a cancelled statement
# raises, and an error from the rollback's event replaced the cancellation
_open: dict[int, tuple[str, float]] = {}
# database file → (task, since) of the transaction of this process that holds its write lock
_holders: dict[str, tuple[str, float]] = {}
# whether a writer waiting for the write lock should give up now (give_up_lock_waits_when)
_give_up_waiting: Callable[[], bool] | None = None


def async_url(url: str, *, password: str | None = None, base_dir: Path | None = None) -> URL:
    """``sqlite:///var/x.db`` / ``postgresql://u@h/db`` → the async driver URL.

    A relative SQLite path resolves against ``base_dir``; its folder is created.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:":
            path = Path(db)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            path.parent.mkdir(parents=True, exist_ok=True)
            db = str(path)
        return parsed.set(drivername="sqlite+aiosqlite", database=db)
    if backend in ("postgresql", "postgres"):
        out = parsed.set(drivername="postgresql+asyncpg")
        if password is not None:
            out = out.set(password=password)
        return out
    raise ValueError(f"unsupported database URL {url!r}")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={round(WRITE_LOCK_WAIT_S * 1000)}")
    cur.close()


def _sqlite_short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
    # the writers' connections: the wait for the lock happens in _sqlite_begin_immediate
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={_LOCK_TRY_MS}")
    cur.close()


class Database:
    def __init__(
        self,
        url: URL | str,
        *,
        pool_size: int = 5,
        pool_timeout_s: float = 30.0,
        echo: bool = False,
        driver_in_place: bool = False,
    ) -> None:
        """``driver_in_place`` (SQLite): the writers' driver calls run in the calling thread, not in
        a worker thread per connection (:mod:`scada.db.inplace`); only for a database used from a
        loop that may block in them (billing's side loop)."""
        self.url = make_url(url) if isinstance(url, str) else url
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect != "sqlite":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=pool_timeout_s)
        elif driver_in_place:
            kwargs["async_creator"] = in_place_creator(lambda: self.engine.dialect.create_connect_args(self.url))
        # credential lookups (a session cookie, an API token) wait here, not in the pool: a storm
        # of them (every WebSocket reconnecting at once) takes at most pool_size connections,
        # leaves the overflow to the rest of the server, and never runs into the pool's timeout
        self._lookup_slots = asyncio.Semaphore(pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "connect", _sqlite_short_busy_timeout)
            # let SQLAlchemy, not pysqlite, open the transaction, so BEGIN is emitted at once
            # and reads inside a transaction see one snapshot
            event.listen(self.engine.sync_engine, "connect", _sqlite_no_autobegin, insert=True)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin_immediate)
            event.listen(self.engine.sync_engine, "commit", _sqlite_release)
            event.listen(self.engine.sync_engine, "rollback", _sqlite_release)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine: AsyncEngine | None = None
        self._reads = self.sessions
        if self.dialect == "sqlite" and (self.url.database or ":memory:") != ":memory:":
            self._read_engine = create_async_engine(self.url, echo=echo)
            event.listen(self._read_engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._read_engine.sync_engine, "connect", _sqlite_read_only)
            event.listen(self._read_engine.sync_engine, "connect", _sqlite_no_autobegin, insert=True)
            event.listen(self._read_engine.sync_engine, "begin", _sqlite_begin_deferred)
            self._reads = async_sessionmaker(self._read_engine, expire_on_commit=False)

    def reads(self) -> AsyncSession:
        """A session for lookups that only read (``async with db.reads() as s:``): on SQLite a
        read-only connection that never takes the write lock (WAL readers do not wait for writers)."""
        return self._reads()

    @asynccontextmanager
    async def lookup(self) -> AsyncIterator[AsyncSession]:
        """A read session (:meth:`reads`) for a lookup that any number of requests may make at
        once (who is calling): at most ``pool_size`` of them hold a connection, the rest queue."""
        async with self._lookup_slots, self.reads() as session:
            yield session

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def __repr__(self) -> str:
        return f"<Database {self.url.render_as_string(hide_password=True)}>"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def upgrade(self) -> None:
        """Apply every pending migration (all branches: ``heads``); a database already at every
        head is left alone without running Alembic's environment."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_to_heads)

    async def current_revisions(self) -> set[str]:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_heads)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._read_engine is not None:
            await self._read_engine.dispose()
        await self.engine.dispose()


def _sqlite_no_autobegin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _sqlite_begin_deferred(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _task_name() -> str:
    """The current task, as the runtime names it (``prepaid:billing``), else its coroutine."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return "no task"
    if task is None:
        return "no task"
    name = task.get_name()
    if not name.startswith("Task-"):
        return name
    return getattr(task.get_coro(), "__qualname__", name)


def _sqlite_begin_immediate(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: two writers never deadlock on upgrade. Runs in
    # SQLAlchemy's greenlet on the event loop's thread, so await_ may sleep on the loop.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    started = time.monotonic()
    deadline = started + WRITE_LOCK_WAIT_S
    tries = 0
    database = conn.engine.url.database or ""
    try:
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                holder = (_task_name(), time.monotonic())
                _open[id(conn)] = holder
                _holders[database] = holder
                return
            except sqlite3.Error as exc:
                locked = database_locked(exc)
                given_up = locked and _give_up_waiting is not None and _give_up_waiting()
                if not locked or given_up or time.monotonic() >= deadline:
                    if locked:
                        _log_waited_out(database, time.monotonic() - started, given_up)
                    if given_up:
                        exc = sqlite3.OperationalError("database is locked (the wait for it was given up)")
                    # as SQLAlchemy raises a statement's error (callers catch DBAPIError): the
                    # driver's own error would pass their handlers by
                    raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
            await_(asyncio.sleep(_LOCK_PAUSES_S[min(tries, len(_LOCK_PAUSES_S) - 1)]))
            tries += 1
    finally:
        cursor.close()


def give_up_lock_waits_when(check: Callable[[], bool] | None) -> None:
    """A writer of this process that waits for SQLite's write lock calls ``check`` after each
    try and gives up ("database is locked") once it says so, before :data:`WRITE_LOCK_WAIT_S`
    have passed (the billing process: its server has stopped and stopped waiting for the batch)."""
    global _give_up_waiting
    _give_up_waiting = check


def _log_waited_out(database: str, waited_s: float, given_up: bool = False) -> None:
    holder = _holders.get(database)
    extra: dict[str, Any] = {"task": _task_name(), "waited_ms": round(waited_s * 1000)}
    if given_up:
        extra["given_up"] = True
    if holder is not None:
        extra.update(holder=holder[0], held_ms=round((time.monotonic() - holder[1]) * 1000))
    else:
        extra["holder"] = "another process"
    log.warning("SQLite write lock not taken", extra=extra)


def _sqlite_release(conn: Connection) -> None:
    # runs in every commit and rollback, also of an invalidated connection: reads nothing of it
    holder = _open.pop(id(conn), None)
    if holder is None:
        return
    database = conn.engine.url.database or ""
    if _holders.get(database) is holder:
        del _holders[database]
    held = time.monotonic() - holder[1]
    if held >= LONG_HOLD_S:
        log.warning("SQLite write lock held long", extra={"holder": holder[0], "held_ms": round(held * 1000)})


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_alembic(connection: Connection, cmd: str, target: str) -> None:
    getattr(command, cmd)(alembic_config(connection), target)


def _current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


# The alembic_version rows of a database at every head, as the first upgrade of this process
# left them (not simply the scripts' heads: a head another revision depends on is not kept as a
# row of its own). Loading Alembic's environment and every migration script took most of a start
# on an up-to-date database; one whose rows are these is known to be at every head.
_rows_at_heads: frozenset[str] | None = None


def _upgrade_to_heads(connection: Connection) -> None:
    global _rows_at_heads
    if _rows_at_heads is not None and _current_heads(connection) == _rows_at_heads:
        return
    _run_alembic(connection, "upgrade", "heads")
    _rows_at_heads = frozenset(_current_heads(connection))
