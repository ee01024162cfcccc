"""An event loop on a thread of its own, for work whose every await must not wait for the server's.

The server's event loop runs every poll, push and request. At site scale it is never idle, and a
coroutine that awaits N times waits N turns of it. A database transaction that awaits each of its
statements holds the database's write lock (SQLite) or its rows' locks (PostgreSQL) for all of
those turns: at 50,000 meters a billing batch of a fraction of a second's CPU held SQLite's lock
for 5-18 s, and every other writer waited. :class:`SideLoop` runs such a coroutine on a loop of
its own, where an await returns as soon as its result is there; the caller awaits the whole of it
once on its own loop. Both threads share the interpreter: the side thread gets it back within the
interpreter's switch interval (5 ms) of wanting it.

What runs on the side loop must keep to objects it owns (its own database engine: a pool and a
connection belong to the loop that opened them) or that are only read (immutable snapshots).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["SideLoop"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SideLoop:
    """``async with SideLoop("name") as side: result = await side.run(coro)``.

    :meth:`run` cancelled (a stop) cancels the coroutine on the side loop and waits until it has
    ended (a transaction rolled back) before it raises. Leaving the context runs ``closing`` (if
    given) on the side loop, waits for what still runs there, stops the loop and joins the thread.
    """

    def __init__(self, name: str, *, closing: Callable[[], Awaitable[None]] | None = None, close_timeout_s: float = 30.0) -> None:
        self.name = name
        self._closing = closing
        self._close_timeout_s = close_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> SideLoop:
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(started,), name=self.name, daemon=True)
        self._thread.start()
        self._loop = await asyncio.wrap_future(started)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _main(self, started: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        started.set_result(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def run(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> T:
        """Run ``coro`` on the side loop (as a task named ``name``) and return its result."""
        side = self._loop
        if side is None or side.is_closed():
            coro.close()
            raise RuntimeError(f"side loop {self.name} is not running")
        home = asyncio.get_running_loop()
        done: asyncio.Future[T] = home.create_future()
        started: list[asyncio.Task[T]] = []
        stop_asked = threading.Event()

        def settle(task: asyncio.Task[T]) -> None:  # on the caller's loop
            if done.done():
                return
            if task.cancelled():
                done.cancel()
            elif (exc := task.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(task.result())

        def finished(task: asyncio.Task[T]) -> None:  # on the side loop
            if not task.cancelled():
                task.exception()  # retrieved: the caller gets it
            try:
                home.call_soon_threadsafe(settle, task)
            except RuntimeError:
                pass  # the caller's loop is closed: nobody waits any more

        def start() -> None:  # on the side loop
            task = side.create_task(coro, name=name)
            task.add_done_callback(finished)
            started.append(task)
            if stop_asked.is_set():
                task.cancel()

        def cancel() -> None:  # on the side loop
            stop_asked.set()
            for task in started:
                task.cancel()

        side.call_soon_threadsafe(start)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if done.done() and not done.cancelled():
                raise  # cancelled as the result came: the side task has ended
            # cancel the side task and wait for it to end (a rollback, a connection returned), so
            # that nothing of it runs on after the caller went on
            side.call_soon_threadsafe(cancel)
            deadline = time.monotonic() + self._close_timeout_s
            while not done.done() and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([done], timeout=left)
            if done.done() and not done.cancelled():
                done.exception()  # retrieved: the caller was cancelled, that is what it raises
            raise

    async def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(_wind_down(self._closing, self._close_timeout_s), loop)
            await asyncio.shield(asyncio.wrap_future(future))
        except Exception:
            log.exception("closing the side loop failed", extra={"loop": self.name})
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.shield(asyncio.to_thread(thread.join, self._close_timeout_s))
            self._loop = None


async def _wind_down(closing: Callable[[], Awaitable[None]] | None, timeout_s: float) -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=timeout_s)
    if closing is not None:
        await closing()
