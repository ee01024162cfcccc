"""An in-process server for functional tests: the real runtime, real sockets on loopback."""

from __future__ import annotations

import atexit
import functools
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from scada.config import ScadaConfig, parse_config
from scada.core.runtime import Runtime
from scada.db import Database, async_url
from scada.db import engine as db_engine
from scada.server import build_runtime
from scada.users import auth

__all__ = ["migrated_sqlite_template", "passwords_hashed_once", "running_server", "server_config", "verified_once"]

_scrypt = auth.hash_password


@functools.cache
def _hashed_once(password: str) -> str:
    return _scrypt(password)


_verify = auth.verify_password


@functools.lru_cache(maxsize=4096)
def verified_once(password: str, stored: str) -> bool:
    """``auth.verify_password``, remembered per (password, stored hash) in this test process (the
    suite installs it for every test, tests/conftest.py). The check is a pure function of the
    two; fixtures signed their half-dozen users in with a full scrypt each (~0.1 s of CPU), every
    test again, with the same hashes (:func:`passwords_hashed_once`). The first check of each
    pair runs in full, a wrong password is a pair of its own, and the unit tests of the check
    call the function itself."""
    return _verify(password, stored)


@contextmanager
def passwords_hashed_once() -> Iterator[None]:
    """Users added in this block get their password hashed once per test process (the real
    scrypt, a real salt): hashing a fixture's half-dozen users again (~0.1 s of CPU each) was a
    third of each API test's server start. Their sign-ins still verify the password in full,
    and every hash outside the block is computed as before."""
    auth.hash_password = _hashed_once
    try:
        yield
    finally:
        auth.hash_password = _scrypt


def server_config(tmp_path: Path, db_url: str, extra: str = "", *, site: str = "Test Site") -> ScadaConfig:
    text = f"""
[site]
name = "{site}"
timezone = "Asia/Shanghai"

[database]
url = "{db_url}"

[hmi]
host = "127.0.0.1"
port = 0

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}
{extra}
"""
    return parse_config(text, "<test>", tmp_path)


_template: Path | None = None


async def migrated_sqlite_template() -> Path:
    """A SQLite file this process migrated once (every migration: 0.3-0.8 s of each server's
    start when each test began with an empty file)."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="scada-migrated-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        database = Database(async_url(f"sqlite:///{folder / 'scada.db'}"))
        try:
            await database.upgrade()
        finally:
            await database.dispose()  # no connection left: the WAL is folded into the file
        _template = folder / "scada.db"
    return _template


async def _start_from_migrated(config: ScadaConfig) -> None:
    """A server on a SQLite file that does not exist yet starts from a copy of a migrated one:
    its own start then finds nothing to migrate. What the migrations do to an empty database,
    and a start that runs them, are tested on their own (test_migrations.py, test_cli.py)."""
    url = make_url(config.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = config.path(url.database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(await migrated_sqlite_template(), path)


@asynccontextmanager
async def running_server(config: ScadaConfig, **kwargs: Any) -> AsyncIterator[Runtime]:
    await _start_from_migrated(config)
    runtime = build_runtime(config, announce=lambda _m: None, **kwargs)
    with passwords_hashed_once():  # the administrator the start adds from its configured password
        await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@contextmanager
def write_lock_held(path: str, monkeypatch: pytest.MonkeyPatch | None = None, *, wait_s: float = 0.5) -> Iterator[None]:
    """Another writer of the SQLite file ``path`` holds its write lock (``BEGIN IMMEDIATE``) for
    the block. With ``monkeypatch``, this process's writers wait ``wait_s`` for it, not 10 s: code
    that should not take the lock fails soon if it does."""
    if monkeypatch is not None:
        monkeypatch.setattr(db_engine, "WRITE_LOCK_WAIT_S", wait_s)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
    finally:
        holder.close()
