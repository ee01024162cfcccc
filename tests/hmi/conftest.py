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
from scada.audit import Actor
from scada.config import ScadaConfig, parse_config
from scada.foundation import USERS
from scada.runtime import Runtime

from ..harness import running_server
from ..services import free_port

ADMIN_PASSWORD = "admin-password-1"
PASSWORDS = {
    "admin": ADMIN_PASSWORD,
    "operator1": "operator-password",
    "cashier1": "cashier-password",
    "viewer1": "viewer-password",
    "maint1": "maintenance-password",
    "engineer1": "engineer-password",
}
ROLES = {"operator1": "operator", "cashier1": "cashier", "viewer1": "viewer", "maint1": "maintenance", "engineer1": "engineer"}


def demo_site_config(tmp_path: Path, db_url: str, extra: str = "", *, site_file: str = "embedded:site-demo.toml") -> ScadaConfig:
    """The demo site (60 rooms on two links) on a test database; the HMI on a free port."""
    text = f"""
[site]
name = "Test Residence"
timezone = "Asia/Shanghai"
currency = "CNY"
import_file = "{site_file}"

[runtime]
data_dir = "{tmp_path / 'var'}"

[database]
url = "{db_url}"

[hmi]
host = "127.0.0.1"
port = 0
push_interval_ms = 200

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}

[[links]]
name = "gw-1"
host = "127.0.0.1"
port = {free_port()}

[[links]]
name = "gw-2"
host = "127.0.0.1"
port = {free_port()}
{extra}
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
    """A running server on SQLite (the HMI does not depend on the engine; the session store is
    tested on both)."""
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD)
    async with running_server(demo_site_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}")) as rt:
        users = rt.ctx[USERS]
        for name, role in ROLES.items():
            await users.add(name, role, PASSWORDS[name], Actor("test", "cli"))
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
    from .sites import write_site

    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD)
    site = write_site(tmp_path / "site.toml", 1000)
    config = demo_site_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", site_file=str(site))
    async with running_server(config) as rt:
        yield Hmi(rt, rt.ctx[HMI_URL])
