"""One server for a whole test module: the real runtime on its own event loop in a thread.

A module-scoped server saves each test the server's start (seconds with the demo site). The
tests talk to it over its sockets, as clients do; :meth:`ThreadedServer.run` runs a coroutine
on the server's loop (to read or drive the server's objects) and hands back the result. The
server's own tasks live on its loop, so each test's check for leaked tasks sees only its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

from scada.config import ScadaConfig
from scada.core.runtime import Runtime
from scada.server import build_runtime

__all__ = ["ThreadedServer", "threaded_server"]

T = TypeVar("T")


class ThreadedServer:
    def __init__(self, config: ScadaConfig, *, demo: bool = False) -> None:
        self.config = config
        self.demo = demo
        self.loop = asyncio.new_event_loop()
        self.rt: Runtime | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)

    def start(self) -> Runtime:
        self._thread.start()
        self.rt = build_runtime(self.config, demo=self.demo, announce=lambda _m: None)
        rt = self.rt
        self.call(rt.start)
        return rt

    def stop(self) -> None:
        try:
            if self.rt is not None:
                self.call(self.rt.stop)
            self.call(self._drain)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    @staticmethod
    async def _drain() -> None:
        """End what the stopped server left on its loop (handlers of connections still closing)."""
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def call(self, factory: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
        """Run ``factory()`` on the server's loop, from plain (non-async) code."""
        return self._submit(factory).result(timeout)

    async def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``factory()`` on the server's loop, from a test's coroutine."""
        return await asyncio.wrap_future(self._submit(factory))

    def _submit(self, factory: Callable[[], Awaitable[T]]) -> Future[T]:
        async def main() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(main(), self.loop)


@contextmanager
def threaded_server(config: ScadaConfig, env: dict[str, str] | None = None, *, demo: bool = False) -> Iterator[ThreadedServer]:
    """A started :class:`ThreadedServer` (with ``env`` set for its start), stopped at the end."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    server = ThreadedServer(config, demo=demo)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
