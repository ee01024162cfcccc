"""The JSON API's common behaviour: tokens, auth errors, JSON errors, rate limit, OpenAPI, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmi.component import HMI_URL
from scada.users.audit import Actor
from scada.users.component import AUDIT, LOGINS, USERS

from ..harness import passwords_hashed_once, running_server, server_config


@pytest.fixture
async def api(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Any]]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with running_server(server_config(tmp_path, migrated_db_url)) as rt:
        with passwords_hashed_once():
            await rt.ctx[USERS].add("viewer1", "viewer", "viewer-password", Actor("t", "cli"))
        async with aiohttp.ClientSession() as http:
            yield rt.ctx[HMI_URL] + "/api/v1", (rt, http)


async def token(http: aiohttp.ClientSession, base: str, user: str, password: str) -> str:
    async with http.post(base + "/auth/token", json={"user": user, "password": password}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["token"]


async def test_token_issue_and_use(api: tuple[str, Any]) -> None:
    base, (rt, http) = api
    async with http.post(base + "/auth/token", json={"user": "admin", "password": "admin-password-1"}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["role"] == "admin" and body["token"].startswith("sct_")
    user = await rt.ctx[USERS].authenticate_token(body["token"])
    assert user is not None and user.name == "admin"


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"user": "admin", "password": "wrong"}, 401, None),
        ({"user": "admin"}, 422, "password"),
        ({"user": "admin", "password": "x", "ttl_hours": -1}, 422, "ttl_hours"),
        ({"user": "admin", "password": "x", "role": "admin"}, 422, "role"),
        ([1, 2], 422, None),
    ],
)
async def test_token_bad_input(api: tuple[str, Any], payload: Any, status: int, field: str | None) -> None:
    base, (_, http) = api
    async with http.post(base + "/auth/token", json=payload) as r:
        assert r.status == status
        body = await r.json()
    assert body["error"]
    assert body.get("field") == field
    if field:
        assert body["error"].startswith(field + ":")


async def test_non_json_and_hostile_bodies(api: tuple[str, Any]) -> None:
    base, (_, http) = api
    async with http.post(base + "/auth/token", data="user=admin") as r:
        assert r.status == 415 and "application/json" in (await r.json())["error"]
    async with http.post(base + "/auth/token", data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and "not valid JSON" in (await r.json())["error"]
    async with http.post(base + "/auth/token", data=b'{"user": "a", "password": NaN}', headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and "NaN is not allowed" in (await r.json())["error"]


async def test_login_rate_limited(api: tuple[str, Any]) -> None:
    base, (_, http) = api
    for _ in range(5):
        async with http.post(base + "/auth/token", json={"user": "admin", "password": "wrong"}) as r:
            assert r.status == 401
    async with http.post(base + "/auth/token", json={"user": "admin", "password": "admin-password-1"}) as r:
        assert r.status == 429
        body = await r.json()
    assert "too many failed logins" in body["error"] and body["retry_after_s"] > 0


async def test_unknown_endpoint_and_method_are_json(api: tuple[str, Any]) -> None:
    base, (_, http) = api
    async with http.get(base + "/nope") as r:
        assert r.status == 404 and "no such endpoint" in (await r.json())["error"]
    async with http.get(base + "/auth/token") as r:
        assert r.status == 405 and "not allowed" in (await r.json())["error"]


async def test_openapi_document(api: tuple[str, Any]) -> None:
    base, (_, http) = api
    async with http.get(base + "/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/api/v1/auth/token"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/TokenIn"
    assert "password" in doc["components"]["schemas"]["TokenIn"]["properties"]


async def test_calls_are_audited(api: tuple[str, Any]) -> None:
    base, (rt, http) = api
    async with http.post(base + "/auth/token", json={"user": "viewer1", "password": "bad"}) as r:
        assert r.status == 401
    await token(http, base, "viewer1", "viewer-password")
    entries = await rt.ctx[AUDIT].query(action="api.auth.issue_token")
    outcomes = sorted(e.outcome for e in entries)
    assert outcomes == ["ok"]  # a failed login is no audit row of its own: it is counted in memory
    assert {e.actor for e in entries} == {"viewer1"}
    summary = rt.ctx[LOGINS].take_summary()  # ... and reported in bulk (tests/scada/test_logins.py)
    assert (summary.failures, summary.by_user) == (1, [("viewer1", 1)])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_locked_database_is_answered_503_with_retry_after(
    api: tuple[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overloaded SQLite server whose write lock another writer holds past the busy timeout:
    the request is answered 503 with Retry-After (nothing was written), not 500, and the same
    request succeeds once the lock is free."""
    import sqlite3
    import threading

    from scada.db import engine

    monkeypatch.setattr(engine, "WRITE_LOCK_WAIT_S", 1.0)  # the same path as the 10-s wait, sooner
    base, (_, http) = api
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        # The server may be writing at this moment (its jobs start with it): wait for it to
        # finish, which it can only do while the event loop runs (the test awaits below)
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=60)
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(60)
        con.execute("ROLLBACK")
        con.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        # not locked.wait() on the loop: a server transaction holding the lock could not finish
        assert await asyncio.to_thread(locked.wait, 60)
        sign_in = {"user": "admin", "password": "admin-password-1"}
        async with http.post(base + "/auth/token", json=sign_in) as r:
            assert r.status == 503, await r.text()
            assert r.headers["Retry-After"] == "2"
            assert (await r.json())["error"] == "the database is busy; try again"
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 10)
    async with http.post(base + "/auth/token", json=sign_in) as r:
        assert r.status == 200
