"""A server for the payment and tenant tests, started once per test module: the small prepaid
site (rooms R1 and R2), accounts open in both with a tenant PIN and a contact phone, users of the
money roles with API tokens, the sandbox provider notifying at once, and an SMS gateway double
that keeps what it was sent."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hmi.component import HMI_URL
from scada.config import load_config
from scada.payments.component import PAYMENTS
from scada.payments.orders import PaymentService
from scada.prepaid.engine import PREPAID
from scada.prepaid.engine import PrepaidEngine as _Engine
from scada.users.audit import Actor
from scada.users.component import USERS

from ..harness import passwords_hashed_once
from ..services import free_port
from ..threaded import ThreadedServer, threaded_server
from .prepaid_site import prepaid_extra

__all__ = ["ADMIN_PASSWORD", "PINS", "PHONES", "Site", "SmsGateway", "payment_site"]

ADMIN_PASSWORD = "payments-admin-password"
ROLES = {"cashier": "cashier", "supervisor": "supervisor", "viewer": "viewer", "operator": "operator"}
PINS = {"R1": "246810", "R2": "135799"}
PHONES = {"R1": "+8613900000001", "R2": "+8613900000002"}


class SmsGateway:
    """An SMS gateway double behind the same HTTP interface a real one has: it keeps each
    message it accepts (``to``, ``text``)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.messages.append(json.loads(await request.read()))
        return web.json_response({"ok": True})

    def start(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, name="sms-gateway", daemon=True)
        self._thread.start()

        async def up() -> None:
            app = web.Application()
            app.router.add_post("/sms", self._receive)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.loop.close()

    def texts_to(self, phone: str) -> list[str]:
        return [m["text"] for m in list(self.messages) if m["to"] == phone]


@dataclass
class Site:
    srv: ThreadedServer
    url: str
    tmp: Path
    config_path: Path
    tokens: dict[str, str]
    sms: SmsGateway
    accounts: dict[str, int] = field(default_factory=dict)  # room → account id

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    @property
    def payments(self) -> PaymentService:
        assert self.srv.rt is not None
        return self.srv.rt.ctx[PAYMENTS]

    @property
    def engine(self) -> _Engine:
        assert self.srv.rt is not None
        return self.srv.rt.ctx[PREPAID]

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, user: str = "cashier", body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        async with http.request(method, self.api + path, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def balance(self, http: aiohttp.ClientSession, room: str) -> str:
        status, body = await self.call(http, "GET", f"/rooms/{room}/account")
        assert status == 200, body
        return str(body["balance"])


def config_text(tmp: Path, extra: str = "", sandbox: str = "") -> str:
    return f"""
[site]
name = "Payments Test"
timezone = "Asia/Shanghai"
import_file = "site.toml"

[database]
url = "sqlite:///{tmp / 'scada.db'}"

[runtime]
data_dir = "{tmp}"

[hmi]
host = "127.0.0.1"
port = 0

[logging]
level = "warning"

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}

[approvals]
opening_balance_above = "100000"

[payments]
reconcile_at = ""
message_channels = ["sms"]

[payments.sandbox]
notify_delay_s = 0
retry_delays_s = [0.2]
{sandbox}

[tenants]
code_resend_s = 0
code_sends_per_hour = 100
{prepaid_extra(tmp)}
{extra}
"""


@contextmanager
def payment_site(tmp: Path, extra: str = "", *, sandbox: str = "", postpaid: tuple[str, ...] = ()) -> Iterator[Site]:
    """The started site (see the module docstring); ``extra`` is more config text, ``sandbox``
    more lines of ``[payments.sandbox]``, and the rooms in ``postpaid`` are opened postpaid
    (with no opening balance) instead."""
    sms = SmsGateway()
    sms.start()
    gateway = f"""
[[alarms.notifications.channels]]
name = "sms"
kind = "sms"
url = "http://127.0.0.1:{sms.port}/sms"
body = '{{"to": {{{{ to|tojson }}}}, "text": {{{{ text|tojson }}}}}}'
"""
    path = tmp / "scada.toml"
    path.write_text(config_text(tmp, gateway + extra, sandbox))
    config = load_config(path)
    try:
        with threaded_server(config, env={"SCADA_TEST_ADMIN_PASSWORD": ADMIN_PASSWORD}) as srv:
            assert srv.rt is not None
            rt = srv.rt

            async def setup() -> dict[str, str]:
                users = rt.ctx[USERS]
                tokens = {}
                for name, role in ROLES.items():
                    with passwords_hashed_once():
                        await users.add(name, role, f"{name}-password-1", Actor("t", "cli"))
                    info = await users.get(name)
                    assert info is not None
                    tokens[name] = await users.issue_token(info)
                admin = await users.get("admin")
                assert admin is not None
                tokens["admin"] = await users.issue_token(admin)
                return tokens

            tokens = srv.call(setup)
            site = Site(srv, rt.ctx[HMI_URL], tmp, path, tokens, sms)
            asyncio.run(_open_accounts(site, postpaid))
            yield site
    finally:
        sms.stop()


async def _open_accounts(site: Site, postpaid: tuple[str, ...] = ()) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await site.call(http, "POST", "/tariffs", "admin", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                                           "definition": {"price": "0.5"}})
        assert status == 201, body
        status, body = await site.call(http, "POST", "/tariffs", "admin", {"id": "WATER", "name": "Water", "commodity": "water",
                                                                           "definition": {"price": "3.5"}})
        assert status == 201, body
        for room, language in (("R1", "zh-CN"), ("R2", "en")):
            tariffs = {"electricity": "FLAT"} | ({"water": "WATER"} if room == "R2" else {})
            mode = {"mode": "postpaid", "opening_balance": "0"} if room in postpaid else {"opening_balance": "100.00"}
            status, body = await site.call(http, "POST", f"/rooms/{room}/account/open", "cashier", {
                "tariffs": tariffs, "pin": PINS[room], "contact": {"name": f"Tenant {room}", "phone": PHONES[room], "language": language},
                **mode,
            })
            assert status == 201, body
            site.accounts[room] = body["id"]
