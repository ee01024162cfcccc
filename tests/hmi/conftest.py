"""Fixtures of the HMI tests: a real server with the demo site, users of every role, and
HTTP clients that keep cookies like a browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hmi.component import HMI_URL
from scada.config import ScadaConfig, demo_config_text, parse_config
from scada.core.runtime import Runtime
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.audit import Actor
from scada.users.auth import UserStore
from scada.users.component import USERS

from ..harness import passwords_hashed_once, running_server
from ..services import free_port
from ..simulation import Control

ADMIN_PASSWORD = "admin-password-1"
PASSWORDS = {
    "admin": ADMIN_PASSWORD,
    "operator1": "operator-password",
    "cashier1": "cashier-password",
    "viewer1": "viewer-password",
    "maint1": "maintenance-password",
    "engineer1": "engineer-password",
    "super1": "supervisor-password",
}
ROLES = {"operator1": "operator", "cashier1": "cashier", "viewer1": "viewer", "maint1": "maintenance", "engineer1": "engineer",
         "super1": "supervisor"}
async def add_role_users(users: UserStore) -> None:
    """The users of ``ROLES`` with their ``PASSWORDS``, added as the command line adds them
    (each password hashed once per test process: :func:`passwords_hashed_once`)."""
    with passwords_hashed_once():
        for name, role in ROLES.items():
            await users.add(name, role, PASSWORDS[name], Actor("test", "cli"))


def _without_tables(text: str, name: str) -> str:
    """A TOML text without the tables ``[name]`` and ``[name.*]``."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        header = line.strip()
        if header.startswith("["):
            table = header.strip("[]").split("]")[0].strip()
            skipping = table == name or table.startswith(name + ".")
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def demo_site_config(tmp_path: Path, *extra: str) -> ScadaConfig:
    """The demo: 60 rooms whose 81 meters the simulator serves and the poller reads (fast polls,
    quick offline detection), on SQLite under ``tmp_path``, every port free. Without the OPC UA
    server: the HMI does not use it, and its start (~3 s) would dominate each test."""
    text = _without_tables(demo_config_text(), "opcua")
    return parse_config(text, "<demo, no OPC UA>", tmp_path, [
        f"database.url=\"sqlite:///{tmp_path / 'scada.db'}\"",
        f"runtime.data_dir=\"{tmp_path}\"",
        "simulator.state_file=\"\"",
        "simulator.control_port=0",
        "simulator.speed=1.0",  # real time: consumption (and so deductions) stay tiny in a test
        "hmi.port=0",
        "hmi.push_interval_ms=200",
        "logging.level=\"warning\"",
        *(f"links[{i}].{key}" for i in (0, 1) for key in (f"port={free_port()}", "timeout_s=0.3", "retries=0", "offline_after_failures=1")),
        "modbus.poll_intervals={ fast = 0.5, energy = 1.0, slow = 2.0, volume = 1.0 }",
        "modbus.start_spread=0.5",
        "modbus.probe_initial_s=0.3",
        "modbus.probe_max_s=1.0",
        "commands.confirm_timeout_s=3",
        *extra,
    ])


def big_site_config(tmp_path: Path, rooms: int = 1000) -> ScadaConfig:
    """A generated site of ``rooms`` rooms whose meters nobody serves (they go offline once):
    for tests of the HMI's own load."""
    from .sites import write_site

    links = -(-rooms // 200)
    site = write_site(tmp_path / "site.toml", rooms, links=links)
    link_tables = "".join(
        f'\n[[links]]\nname = "gw-{i}"\nhost = "127.0.0.1"\nport = {free_port()}\ntimeout_s = 0.3\nretries = 0\n' for i in range(1, links + 1)
    )
    text = f"""
[site]
name = "Generated"
timezone = "Asia/Shanghai"
import_file = "{site}"

[runtime]
data_dir = "{tmp_path}"

[database]
url = "sqlite:///{tmp_path / 'scada.db'}"

[logging]
level = "warning"

[hmi]
host = "127.0.0.1"
port = 0
push_interval_ms = 200

[admin]
password = {{ env = "SCADA_ADMIN_PASSWORD" }}

[modbus]
probe_initial_s = 60
probe_max_s = 600
{link_tables}
"""
    return parse_config(text, "<test>", tmp_path)


@dataclass
class Hmi:
    rt: Runtime
    url: str

    @property
    def api(self) -> str:
        return self.url + "/api/v1"


@pytest.fixture
async def hmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hmi]:
    """The demo server (simulator, poller, command path, alarms, HMI) with users of every role.
    The HMI does not depend on the database engine; the session store is tested on both."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    async with running_server(demo_site_config(tmp_path)) as rt:
        await add_role_users(rt.ctx[USERS])
        yield Hmi(rt, rt.ctx[HMI_URL])


def browser_like() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 like a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_of(html: str) -> str:
    m = CSRF_META.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


async def login(http: aiohttp.ClientSession, url: str, user: str, password: str | None = None) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    async with http.get(url + "/login") as r:
        token = csrf_of(await r.text())
    data = {"user": user, "password": password or PASSWORDS[user], "csrf": token, "next": "/"}
    async with http.post(url + "/login", data=data) as r:
        assert r.status == 200, await r.text()
        assert r.url.path == "/", r.url
        return csrf_of(await r.text())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with browser_like() as session:
        yield session


@pytest.fixture
async def big_hmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hmi]:
    """A running server with a generated site of 1,000 rooms."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    async with running_server(big_site_config(tmp_path)) as rt:
        yield Hmi(rt, rt.ctx[HMI_URL])


@pytest.fixture
async def sim(hmi: Hmi) -> AsyncIterator[Control]:
    """The simulator's control API of the ``hmi`` server."""
    async with aiohttp.ClientSession() as http:
        yield Control.of(http, hmi.rt.ctx[SIMULATOR])


async def open_accounts(hmi: Hmi, rooms: dict[str, str]) -> None:
    """Create flat tariffs and open an account with the given opening balance in each room,
    through the prepaid API as an administrator (a supervisor approves the opening balances)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(hmi.api + "/auth/token", json={"user": "admin", "password": ADMIN_PASSWORD}) as r:
            headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with http.post(hmi.api + "/auth/token", json={"user": "super1", "password": PASSWORDS["super1"]}) as r:
            supervisor = {"Authorization": f"Bearer {(await r.json())['token']}"}
        for body in ({"id": "flat-e", "name": "Flat electricity", "commodity": "electricity", "definition": {"price": "0.60"}},
                     {"id": "flat-w", "name": "Flat water", "commodity": "water", "definition": {"price": "3.50"}}):
            async with http.post(hmi.api + "/tariffs", json=body, headers=headers) as r:
                assert r.status in (201, 409), await r.text()
        snapshot = hmi.rt.ctx[ASSETS].snapshot
        for room, balance in rooms.items():
            kinds = {m.kind for m in snapshot.meters_of_room(room)}
            tariffs = {"electricity": "flat-e"} | ({"water": "flat-w"} if "water" in kinds else {})
            body = {"tariffs": tariffs, "opening_balance": balance, "contact": {"name": f"Tenant {room}"}}
            async with http.post(hmi.api + f"/rooms/{room}/account/open", json=body, headers=headers) as r:
                assert r.status in (201, 202), await r.text()
                request = await r.json()
            if r.status == 202:  # an opening balance: a second user approves (four eyes)
                async with http.post(hmi.api + f"/approvals/{request['id']}/approve", json={}, headers=supervisor) as r:
                    assert r.status == 200 and (await r.json())["state"] == "executed", await r.text()
