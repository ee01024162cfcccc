"""The prepaid JSON API as the tests drive it: a server on the small prepaid site, users of the
money roles with bearer tokens, and the four-eyes step (request, then another user approves)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hmi.component import HMI_URL
from scada.core.runtime import Runtime
from scada.prepaid.engine import PREPAID
from scada.users.audit import Actor
from scada.users.component import USERS

from ..harness import passwords_hashed_once, running_server, server_config
from .prepaid_site import prepaid_extra, with_site

__all__ = ["FLAT", "WATER", "Api", "approved", "open_r1", "prepaid_api"]

FLAT = {"id": "FLAT", "name": "Flat", "commodity": "electricity", "definition": {"price": "0.5"}}
WATER = {"id": "WATER", "name": "Water", "commodity": "water", "definition": {"price": "3.5"}}
USERS_BY_ROLE = {"cashier": "cashier", "engineer": "engineer", "viewer": "viewer", "operator": "operator",
                 "supervisor": "supervisor", "supervisor2": "supervisor", "maintenance": "maintenance"}


@dataclass
class Api:
    base: str
    rt: Runtime
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(self, method: str, path: str, user: str = "cashier", body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as r:
            return r.status, await r.json()


@asynccontextmanager
async def prepaid_api(tmp_path: Path, db_url: str, extra: str = "") -> AsyncIterator[Api]:
    """A server on the prepaid test site (``SCADA_TEST_ADMIN_PASSWORD`` must be set) with a user
    per name of :data:`USERS_BY_ROLE` (password ``<name>-password``) and their tokens."""
    config = with_site(server_config(tmp_path, db_url, prepaid_extra(tmp_path) + extra))
    async with running_server(config) as rt:
        users = rt.ctx[USERS]
        with passwords_hashed_once():
            for name, role in USERS_BY_ROLE.items():
                await users.add(name, role, f"{name}-password", Actor("t", "cli"))
        async with aiohttp.ClientSession() as http:
            base = rt.ctx[HMI_URL] + "/api/v1"
            tokens = {}
            for name in USERS_BY_ROLE:
                async with http.post(base + "/auth/token", json={"user": name, "password": f"{name}-password"}) as r:
                    tokens[name] = (await r.json())["token"]
            yield Api(base, rt, http, tokens)
        await rt.ctx[PREPAID].supply.idle()


async def approved(api: Api, status: int, body: Any, *, by: str = "supervisor") -> dict[str, Any]:
    """The four-eyes step: ``body`` is a 202 answer (a pending request); another user approves it.
    Returns the executed request."""
    assert status == 202 and body["state"] == "pending", (status, body)
    status, done = await api.call("POST", f"/approvals/{body['id']}/approve", by, {"reason": "checked"})
    assert status == 200 and done["state"] == "executed", (status, done)
    return done  # type: ignore[no-any-return]


async def open_r1(api: Api, opening: str = "100.00") -> dict[str, Any]:
    """R1 opened by the cashier (an opening balance is approved by the supervisor); the account."""
    status, body = await api.call("POST", "/tariffs", "engineer", FLAT)
    assert status in (201, 409), body
    status, body = await api.call("POST", "/rooms/R1/account/open", "cashier", {
        "tariffs": {"electricity": "FLAT"}, "opening_balance": opening,
        "contact": {"name": "Han Meimei", "phone": "+8613900000000", "language": "zh-CN"},
        "thresholds": [{"level": 1, "money": "20"}, {"level": 2, "money": "5"}, {"level": 3, "money": "0"}],
    })
    if status == 202:
        await approved(api, status, body)
    else:
        assert status == 201, body
    status, body = await api.call("GET", "/rooms/R1/account", "cashier")
    assert status == 200, body
    return body  # type: ignore[no-any-return]
