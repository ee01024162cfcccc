"""Driving the Modbus simulator from tests: its HTTP control API and waiting for conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Control", "until"]


class Control:
    """The simulator's HTTP control API, as a test drives it (with the simulator's token)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def of(cls, session: aiohttp.ClientSession, sim: Any) -> Control:
        """The control API of a running ``Simulator``."""
        assert sim.control_url is not None, "the simulator runs without its control API"
        return cls(session, sim.control_url, sim.control_token)

    @classmethod
    def from_line(cls, session: aiohttp.ClientSession, line: str, cwd: Path) -> Control:
        """The control API ``scada simulate`` announced (``control URL token-file PATH``)."""
        _, url, _, path = line.split()
        token = (cwd / path).read_text(encoding="utf-8").strip()
        return cls(session, url, token)

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        if body is None and method != "GET":
            body = {}
        async with self.session.request(method, self.url + path, json=body, headers=self.headers) as resp:
            data = await resp.json()
            assert resp.status == expect, (resp.status, data)
            return data

    async def fault(self, meter: str, kind: str, **kw: Any) -> None:
        await self.call("PUT", f"/meters/{meter}/fault", {"kind": kind, **kw})

    async def load(self, meter: str, **kw: Any) -> None:
        await self.call("PUT", f"/meters/{meter}/load", kw)

    async def register(self, meter: str, point: str, value: Any) -> None:
        await self.call("POST", f"/meters/{meter}/registers", {"point": point, "value": value})

    async def relay(self, meter: str, **kw: Any) -> None:
        await self.call("PUT", f"/meters/{meter}/relay", kw)

    async def meter(self, meter: str) -> Any:
        return await self.call("GET", f"/meters/{meter}")

    async def advance(self, seconds: float) -> None:
        await self.call("POST", "/clock", {"advance_s": seconds})

    async def stats(self) -> Any:
        return await self.call("GET", "/stats")

    async def reset_stats(self) -> None:
        await self.call("POST", "/stats/reset")


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds (checked every 10 ms), or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
