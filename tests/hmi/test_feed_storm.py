"""A reconnect storm: hundreds of WebSocket connections opening at once, each checking its
caller (an API token or a session cookie) in the database, against a server on PostgreSQL with
a pool of one connection (and one in overflow) that fails a query after 0.5 s without one (the
two connections are shared with the rest of the server: on a loaded CI machine a billing
transaction holding one has outlasted 0.1 s)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from websockets.asyncio.client import connect

from hmi.component import HMI_URL, HmiComponent
from hmi.keys import SESSIONS
from scada.users.component import USERS

from ..harness import running_server
from ..services import PostgresServer
from .conftest import ADMIN_PASSWORD, Hmi, demo_site_config
from .test_feed import subscribe, ws_url

pytestmark = pytest.mark.postgres

OPENS = 200


@pytest.fixture
async def pg_hmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server: PostgresServer) -> AsyncIterator[Hmi]:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(postgres_server.admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        config = demo_site_config(
            tmp_path, f'database.url="{postgres_server.dsn(name)}"', "database.pool_size=1", "database.pool_timeout_s=0.5",
            f"hmi.ws_max_per_user={OPENS}",
        )
        async with running_server(config) as rt:
            yield Hmi(rt, rt.ctx[HMI_URL])
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_a_reconnect_storm_does_not_exhaust_the_pool(pg_hmi: Hmi) -> None:
    hmi = pg_hmi
    users = hmi.rt.ctx[USERS]
    admin = await users.get("admin")
    assert admin is not None
    component = next(c for c in hmi.rt.components if isinstance(c, HmiComponent))
    assert component.app is not None
    sessions = component.app[SESSIONS]
    tokens = [await users.issue_token(admin, f"storm-{i}") for i in range(10)]
    cookies = [(await sessions.create(admin, address="127.0.0.1", user_agent="storm"))[0] for _ in range(10)]
    opened = asyncio.Event()
    count = 0

    async def client(i: int) -> int:
        nonlocal count
        if i % 2:
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            origin = None
        else:
            headers = {"Cookie": f"scada_session={cookies[i % len(cookies)]}"}
            origin = hmi.url
        async with connect(ws_url(hmi), additional_headers=headers, origin=origin, open_timeout=60) as ws:  # type: ignore[arg-type]
            snap = await subscribe(ws, view="overview", page_size=1)
            count += 1
            if count == OPENS:
                opened.set()
            await opened.wait()  # every connection is open at once before any closes
            return int(snap["total"])

    results = await asyncio.gather(*(client(i) for i in range(OPENS)), return_exceptions=True)
    failures = [r for r in results if not isinstance(r, int)]
    assert not failures, f"{len(failures)} of {OPENS} failed, e.g. {failures[0]!r}"
    assert results == [60] * OPENS
