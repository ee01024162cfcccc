"""Shared fixtures: strict hygiene (no leaked tasks, loopback only) and real servers."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from scada.db import Database, async_url
from scada.users import auth

from .harness import migrated_sqlite_template, verified_once
from .services import InfluxServer, MosquittoServer, PostgresServer, ServiceUnavailable, require_services

# -- hygiene -----------------------------------------------------------------------------------
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {host!r}") from None
    if not ip.is_loopback:
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow end-to-end tests first: under ``pytest -n --dist worksteal`` (make test) they start
    at once on the first worker, the other workers take them from its queue as they run out of
    quick ones, and the longest never starts last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _sign_ins_verified_once() -> Iterator[None]:
    original, auth.verify_password = auth.verify_password, verified_once  # see harness.verified_once
    yield
    auth.verify_password = original


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running (every task must have an owner that ends it)."""
    before = set(asyncio.all_tasks())
    yield
    me = asyncio.current_task()
    for _ in range(200):  # let tasks that are finishing finish (up to 2 s: a loaded machine closes sockets slowly; a leak stays)
        leaked = [t for t in asyncio.all_tasks() if t is not me and t not in before and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.01)
    for t in leaked:
        t.cancel()
    pytest.fail(f"test leaked tasks: {sorted(t.get_name() for t in leaked)}")


# -- servers -----------------------------------------------------------------------------------
def _unavailable(reason: str) -> None:
    if require_services():
        pytest.fail(f"required test service unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
        server.start()
    except (ServiceUnavailable, OSError) as exc:
        _unavailable(f"PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influx_server() -> Iterator[InfluxServer]:
    """A private InfluxDB 1.x for the session (tests that stop it start their own)."""
    try:
        server = InfluxServer()
        server.start()
    except (ServiceUnavailable, OSError) as exc:
        _unavailable(f"InfluxDB: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MosquittoServer]:
    """A private Mosquitto for the session (loopback, anonymous)."""
    try:
        server = MosquittoServer()
        server.start()
    except (ServiceUnavailable, OSError) as exc:
        _unavailable(f"Mosquitto: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[str]:
    """A fresh database name on the session's InfluxDB (created by whoever writes first)."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    influx_server.query(f'DROP DATABASE "{name}"')


async def _create_pg_database(server: PostgresServer) -> str:
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_pg_database(server: PostgresServer, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    database = Database(async_url(url))
    try:
        await database.upgrade()
    finally:
        await database.dispose()  # no connection left: SQLite's WAL is folded in, PostgreSQL can copy it


@pytest.fixture(scope="session")
def _migrated_templates() -> dict[str, str]:
    """Per engine, a database this test process migrated once (made on first use), that each test
    asking for ``db`` gets a copy of: migrating an empty database (every migration) took 0.5-3 s
    of each such test on PostgreSQL, 0.3-0.8 s on SQLite; a copy takes milliseconds. What the
    migrations do to an empty database is tested on its own (test_migrations.py). SQLite's is
    the one test servers start from (``harness.migrated_sqlite_template``)."""
    return {}


async def _sqlite_migrated_copy(path: Path) -> None:
    shutil.copyfile(await migrated_sqlite_template(), path)


async def _pg_migrated_copy(templates: dict[str, str], server: PostgresServer) -> str:
    import asyncpg

    if "postgres" not in templates:
        template = await _create_pg_database(server)
        await _migrate(server.dsn(template))
        templates["postgres"] = template
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        # FILE_COPY (PostgreSQL 15+): copying the files of a small database beats logging each page
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{templates["postgres"]}" STRATEGY FILE_COPY')
    finally:
        await conn.close()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, _migrated_templates: dict[str, str]) -> AsyncIterator[str]:
    """A fresh database URL (config form, no driver) on each engine: empty, or already migrated
    (a copy of a migrated one) when the test also asks for ``db`` or ``migrated_db_url``."""
    migrated = "db" in request.fixturenames or "migrated_db_url" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "scada.db"
        if migrated:
            await _sqlite_migrated_copy(path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = await (_pg_migrated_copy(_migrated_templates, server) if migrated else _create_pg_database(server))
    try:
        yield server.dsn(name)
    finally:
        await _drop_pg_database(server, name)


@pytest.fixture
def migrated_db_url(db_url: str) -> str:
    """``db_url``, already migrated: for a server's start, which would otherwise migrate an empty
    database (0.5-3 s on PostgreSQL; what that does is tested on its own, test_migrations.py)."""
    return db_url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A migrated database on SQLite and on PostgreSQL (``db_url`` made it a migrated copy: the
    upgrade here finds nothing to do, and would apply what a copy lacked)."""
    database = Database(async_url(db_url))
    try:
        await database.upgrade()
        yield database
    finally:
        await database.dispose()
