"""SQLite connections whose driver calls run in the calling thread, for a loop of their own.

aiosqlite gives every connection a worker thread and hands each call to it (a cursor, a
statement, a fetch, a close: three or four per statement) and each result back to the event loop
through its self-pipe. On a busy server each of those hand-overs waits for the interpreter's lock
besides: billing's transactions (about 90 calls each) spent a third of their time handing over,
none of it doing work. A connection used only from a loop that has nothing else to do (billing's
side loop, :class:`scada.core.sideloop.SideLoop`) gains nothing from the worker thread: here the
calls run where they are made, and SQLite still releases the interpreter's lock while it steps.

Everything else is aiosqlite's own (the same cursor and connection classes, errors and results
through the same futures), so SQLAlchemy's aiosqlite dialect drives it unchanged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite

__all__ = ["InPlaceConnection", "in_place_creator"]


class _RunInPlace:
    """Stands in for aiosqlite's queue to its worker thread: an item put runs at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, as the worker thread does
            if future is None:
                raise
            future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InPlaceConnection(aiosqlite.Connection):
    """An aiosqlite connection without its worker thread (see the module docstring). Use it from
    one thread only: nothing serialises its calls but that thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)  # the thread object made here never starts
        self._tx = _RunInPlace()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()


def in_place_creator(connect_args: Callable[[], tuple[list[Any], dict[str, Any]]]) -> Callable[[], InPlaceConnection]:
    """An ``async_creator`` for :func:`sqlalchemy.ext.asyncio.create_async_engine`:
    ``connect_args`` gives ``sqlite3.connect``'s arguments (the dialect's
    ``create_connect_args`` of the engine's URL)."""

    def create() -> InPlaceConnection:
        args, kwargs = connect_args()
        return InPlaceConnection(lambda: sqlite3.connect(*args, **kwargs))

    return create
