"""Historian fixtures: every backend against its real server (SQLite file; InfluxDB 1.x through
its HTTP API; the 2.x write path through influxdb-client into the same real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from historian import Backend, InfluxSettings, SqliteSettings, make_backend

from ..services import InfluxServer
from .influx2 import Influx2Gateway

BACKENDS = [
    "sqlite",
    pytest.param("influx-v1", marks=pytest.mark.influx),
    pytest.param("influx-v2", marks=pytest.mark.influx),
]

BackendSettings = SqliteSettings | InfluxSettings


@pytest.fixture(params=BACKENDS)
async def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BackendSettings]:
    """Settings of a fresh, empty store on each backend."""
    kind = request.param
    if kind == "sqlite":
        yield SqliteSettings(tmp_path / "historian.db", interval_retention_days=0, raw_retention_days=0)
        return
    server: InfluxServer = request.getfixturevalue("influx_server")
    db: str = request.getfixturevalue("influx_db")
    if kind == "influx-v1":
        yield InfluxSettings(url=server.url, api="v1", database=db, raw_retention_days=0, timeout_s=10)
        return
    server.query(f'CREATE DATABASE "{db}"')
    server.query(f'CREATE RETENTION POLICY "raw" ON "{db}" DURATION INF REPLICATION 1')
    gateway = Influx2Gateway(server.url, token="t0ken", org="site", buckets={"hist": db, "hist-raw": f"{db}/raw"})
    url = await gateway.start()
    try:
        yield InfluxSettings(url=url, api="v2", token="t0ken", org="site", bucket="hist", raw_bucket="hist-raw", timeout_s=10)
    finally:
        await gateway.stop()


@pytest.fixture
async def backend(backend_settings: BackendSettings) -> AsyncIterator[Backend]:
    b = make_backend(backend_settings)
    await b.open()
    try:
        await b.prepare()
        yield b
    finally:
        await b.close()


@pytest.fixture
def make(backend_settings: BackendSettings) -> Callable[[], Backend]:
    """A factory of further backends on the same store (e.g. a reader beside a writer)."""
    return lambda: make_backend(backend_settings)
