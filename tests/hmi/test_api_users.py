"""The users API: what an administrator can do, and bad input on every write endpoint answered
with the right status, a message naming the problem, and nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from scada.users.component import AUDIT, USERS

from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, browser_like, login


async def bearer(hmi: Hmi, user: str, password: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(hmi.api + "/auth/token", json={"user": user, "password": password}) as r:
            assert r.status == 200
            return {"Authorization": f"Bearer {(await r.json())['token']}"}


@pytest.fixture
async def admin(hmi: Hmi) -> AsyncIterator[tuple[Hmi, aiohttp.ClientSession]]:
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http:
        yield hmi, http


async def _state(hmi: Hmi) -> tuple[Any, ...]:
    users = tuple((u.name, u.role.value, u.active, u.language, u.email) for u in await hmi.rt.ctx[USERS].list())
    changes = tuple(e.id for e in await hmi.rt.ctx[AUDIT].query(action="user."))
    return users, changes


async def test_admin_manages_users(admin: tuple[Hmi, aiohttp.ClientSession]) -> None:
    hmi, http = admin
    async with http.post(hmi.api + "/users", json={"name": "cashier2", "role": "cashier", "password": "cashier2-password", "language": "zh-CN", "reason": "new hire"}) as r:
        assert r.status == 201, await r.text()
        body = await r.json()
    assert body["role"] == "cashier" and "recharge" in body["permissions"]
    async with http.get(hmi.api + "/users") as r:
        assert "cashier2" in [u["name"] for u in (await r.json())["users"]]
    # the new user signs in through the page
    async with browser_like() as web:
        await login(web, hmi.url, "cashier2", "cashier2-password")
        # disabling ends that session at once
        async with http.put(hmi.api + "/users/cashier2", json={"active": False, "reason": "left"}) as r:
            assert r.status == 200
            assert (await r.json())["sessions_ended"] == 1
        async with web.get(hmi.url + "/", allow_redirects=False) as r:
            assert r.status == 303
    async with http.put(hmi.api + "/users/cashier2", json={"active": True, "role": "viewer", "reason": "back"}) as r:
        assert (await r.json())["role"] == "viewer"
    async with http.post(hmi.api + "/users/cashier2/password", json={"password": "another-password", "reason": "forgot"}) as r:
        assert r.status == 200
    assert await hmi.rt.ctx[USERS].authenticate("cashier2", "another-password") is not None
    entries = await hmi.rt.ctx[AUDIT].query(target_id="cashier2")
    actions = {e.action for e in entries}
    assert {"user.add", "user.update", "user.password", "session.revoke", "token.revoke"} <= actions
    assert all(e.actor == "admin" for e in entries if e.action.startswith("user."))


async def test_the_last_admin_cannot_be_removed(admin: tuple[Hmi, aiohttp.ClientSession]) -> None:
    hmi, http = admin
    before = await _state(hmi)
    for body, field in (({"role": "viewer", "reason": "x"}, "role"), ({"active": False, "reason": "x"}, "active")):
        async with http.put(hmi.api + "/users/admin", json=body) as r:
            assert r.status == 409
            out = await r.json()
        assert "last active administrator" in out["error"] and out["field"] == field
    assert await _state(hmi) == before
    async with http.post(hmi.api + "/users", json={"name": "admin2", "role": "admin", "password": "admin2-password"}) as r:
        assert r.status == 201
    async with http.put(hmi.api + "/users/admin", json={"role": "viewer", "reason": "handover"}) as r:
        assert r.status == 200


WRITE_ENDPOINTS = [
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "new-password-1"}),
    ("PUT", "/users/viewer1", {"role": "operator", "reason": "promotion"}),
    ("POST", "/users/viewer1/password", {"password": "new-password-1", "reason": "reset"}),
    ("POST", "/users/viewer1/sign-out", {"reason": "lost laptop"}),
]


async def test_write_endpoints_need_auth_role_and_csrf(hmi: Hmi) -> None:
    before = await _state(hmi)
    tokens = {user: await bearer(hmi, user, PASSWORDS[user]) for user in ("operator1", "cashier1", "viewer1", "maint1", "engineer1")}
    async with aiohttp.ClientSession() as anon, browser_like() as web:
        await login(web, hmi.url, "admin")  # the admin's own page session, but no CSRF header
        for method, path, body in WRITE_ENDPOINTS:
            async with anon.request(method, hmi.api + path, json=body) as r:
                assert r.status == 401 and "authentication required" in (await r.json())["error"], path
            for user, headers in tokens.items():
                async with anon.request(method, hmi.api + path, json=body, headers=headers) as r:
                    assert r.status == 403 and "may not user_manage" in (await r.json())["error"], (path, user)
            async with web.request(method, hmi.api + path, json=body) as r:
                assert r.status == 403 and "CSRF" in (await r.json())["error"], path
    users_after, _ = await _state(hmi)
    assert users_after == before[0]
    assert (await hmi.rt.ctx[USERS].authenticate("viewer1", "viewer-password")) is not None


BAD_INPUT = [
    # (method, path, body, status, field, message part)
    ("POST", "/users", {"role": "viewer", "password": "new-password-1"}, 422, "name", "missing"),
    ("POST", "/users", {"name": "<script>alert(1)</script>", "role": "viewer", "password": "new-password-1"}, 422, "name", "pattern"),
    ("POST", "/users", {"name": "x' OR '1'='1", "role": "viewer", "password": "new-password-1"}, 422, "name", "pattern"),
    ("POST", "/users", {"name": "a" * 65, "role": "viewer", "password": "new-password-1"}, 422, "name", "pattern"),
    ("POST", "/users", {"name": "newuser", "role": "root", "password": "new-password-1"}, 422, "role", "admin"),
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "short"}, 422, "password", "at least 8"),
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "p" * 2000}, 422, "password", "at most 1024"),
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "new-password-1", "language": "fr"}, 422, "language", "zh-CN"),
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "new-password-1", "email": "not an email"}, 422, "email", "pattern"),
    ("POST", "/users", {"name": "newuser", "role": "viewer", "password": "new-password-1", "is_admin": True}, 422, "is_admin", "unknown field"),
    ("POST", "/users", {"name": ["newuser"], "role": "viewer", "password": "new-password-1"}, 422, "name", "string"),
    ("POST", "/users", {"name": "viewer1", "role": "viewer", "password": "new-password-1"}, 409, "name", "exists"),
    ("PUT", "/users/nobody", {"role": "viewer", "reason": "x"}, 404, "name", "unknown user 'nobody'"),
    ("PUT", "/users/viewer1", {"role": "viewer"}, 422, "reason", "missing"),
    ("PUT", "/users/viewer1", {"reason": "nothing"}, 422, None, "nothing to change"),
    ("PUT", "/users/viewer1", {"active": "yes", "reason": "x"}, 422, "active", "boolean"),
    ("PUT", "/users/viewer1", {"role": "admin", "reason": ""}, 422, "reason", "at least 1"),
    ("POST", "/users/nobody/password", {"password": "new-password-1", "reason": "x"}, 404, "name", "unknown user"),
    ("POST", "/users/viewer1/password", {"password": "", "reason": "x"}, 422, "password", "at least 8"),
    ("POST", "/users/viewer1/sign-out", {}, 422, "reason", "missing"),
    ("POST", "/users/nobody/sign-out", {"reason": "x"}, 404, "name", "unknown user"),
]


async def test_bad_input_is_refused_and_changes_nothing(admin: tuple[Hmi, aiohttp.ClientSession]) -> None:
    hmi, http = admin
    before = await _state(hmi)
    for method, path, body, status, field, message in BAD_INPUT:
        case = f"{method} {path} {body!r}"
        async with http.request(method, hmi.api + path, json=body) as r:
            assert r.status == status, (case, await r.text())
            out = await r.json()
        assert out.get("field") == field, case
        assert message in out["error"], (case, out)
        if field and status == 422:
            assert out["error"].startswith(field), case
        assert await _state(hmi) == before, case
    assert await hmi.rt.ctx[USERS].authenticate("viewer1", "viewer-password") is not None


async def test_malformed_bodies(admin: tuple[Hmi, aiohttp.ClientSession]) -> None:
    hmi, http = admin
    before = await _state(hmi)
    async with http.post(hmi.api + "/users", data=b'{"name": "x", "role": "viewer", "password": NaN}', headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and "NaN is not allowed" in (await r.json())["error"]
    async with http.post(hmi.api + "/users", data=b"name=x&role=admin", headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415
    async with http.post(hmi.api + "/users", data=b"[]", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 422 and "JSON object" in (await r.json())["error"]
    async with http.put(hmi.api + "/me/language", json={"language": "<img src=x onerror=alert(1)>"}) as r:
        assert r.status == 422 and (await r.json())["field"] == "language"
    assert await _state(hmi) == before


async def test_users_api_is_in_the_openapi_document(admin: tuple[Hmi, aiohttp.ClientSession]) -> None:
    hmi, http = admin
    async with http.get(hmi.api + "/openapi.json") as r:
        doc = await r.json()
    for path in ("/api/v1/users", "/api/v1/users/{name}", "/api/v1/users/{name}/password", "/api/v1/rooms", "/api/v1/rooms/{room}", "/api/v1/meters/{meter}", "/api/v1/me/language"):
        assert path in doc["paths"], path
    assert doc["paths"]["/api/v1/users"]["post"]["description"] == "Requires the permission `user_manage`."
    assert {p["name"] for p in doc["paths"]["/api/v1/rooms"]["get"]["parameters"]} >= {"building", "floor", "state", "q", "page", "page_size"}
