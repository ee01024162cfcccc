"""Drive ``tests/interop/opcua_client.js`` (node-opcua, a client stack that is not ours) from
async tests: one Node process per client, JSON commands in, JSON answers and data changes out."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ...services import require_services

__all__ = ["NodeClient", "NodeClientError", "interop_dir", "require_node_opcua"]

INTEROP = Path(__file__).resolve().parents[2] / "interop"


def interop_dir() -> Path:
    return INTEROP


def require_node_opcua() -> None:
    """Skip (or fail under ``make test``) when node or the npm packages are missing."""
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        problem = "node-opcua is not installed: run `npm ci` in tests/interop (make test does)"
    if problem:
        if require_services():
            pytest.fail(f"required test service unavailable: {problem}")
        pytest.skip(problem)


class NodeClientError(Exception):
    def __init__(self, op: str, error: str, status: str | None) -> None:
        super().__init__(f"{op}: {error} ({status})")
        self.op = op
        self.error = error
        self.status = status


class NodeClient:
    def __init__(self, pki_dir: Path) -> None:
        self.pki_dir = pki_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None
        self.stderr = b""
        self.noise: list[str] = []

    async def __aenter__(self) -> NodeClient:
        require_node_opcua()
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(INTEROP / "opcua_client.js"), cwd=str(INTEROP),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read(), name="node-opcua-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                self.noise.append(line.decode(errors="replace").rstrip())  # node-opcua's own warnings
                continue
            if not isinstance(msg, dict):
                continue
            if "event" in msg:
                self.events.put_nowait(msg)
                continue
            fut = self._pending.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("node-opcua client exited"))

    async def request(self, op: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """The raw answer: ``{"ok": bool, "result"| "error", "status"}``."""
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self.proc.stdin.write((json.dumps({"id": self._next, "op": op, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(fut, timeout)

    async def __call__(self, op: str, timeout: float = 30.0, **params: Any) -> Any:
        answer = await self.request(op, timeout, **params)
        if not answer.get("ok"):
            raise NodeClientError(op, answer.get("error", "?"), answer.get("status"))
        return answer["result"]

    async def connect(self, endpoint: str, *, mode: str = "None", policy: str = "None", user: str | None = None, password: str | None = None) -> Any:
        params: dict[str, Any] = {"endpoint": endpoint, "securityMode": mode, "securityPolicy": policy, "pkiDir": str(self.pki_dir)}
        if user is not None:
            params.update(user=user, password=password)
        return await self("connect", **params)

    async def client_certificate(self) -> Path:
        """The certificate this client presents on signed channels (created on first use)."""
        result = await self("client_certificate", pkiDir=str(self.pki_dir))
        return Path(result["certificateFile"])

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)
