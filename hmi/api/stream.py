"""Large answers streamed in chunks: JSON (``{…head…, "rows": [ … ]}``) and CSV.

The rows come from an iterator of chunks (lists of rows); each chunk is taken from the iterator
and rendered in a worker thread, then written, so that an answer of a million rows is never one
string in memory and the event loop is never held by the rendering. The size of the answer has
been checked against its limit before (``scada.core.limits``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from aiohttp import web

__all__ = ["STREAM_ABOVE_ROWS", "stream_csv", "stream_json"]

# answers with more rows than this are streamed; smaller ones are answered in one piece
STREAM_ABOVE_ROWS = 5_000


def _json_chunk(chunks: Iterator[Sequence[Any]], first: bool) -> str | None:
    rows = next(chunks, None)
    if rows is None:
        return None
    if not rows:
        return ""
    text = json.dumps(list(rows), ensure_ascii=False, allow_nan=False)[1:-1]  # one call per chunk
    return text if first else "," + text


Turn = Callable[[], AbstractAsyncContextManager[Any]]


def _no_turn() -> AbstractAsyncContextManager[Any]:
    return nullcontext()


async def stream_json(
    request: web.Request, head: dict[str, Any], chunks: Iterator[Sequence[Any]], *, key: str = "rows", turn: Turn = _no_turn,
) -> web.StreamResponse:
    """``head``'s keys, then ``key`` with every row of every chunk, as one JSON object. Each chunk
    is rendered within ``turn()`` (a slot of the heavy work), never the writes to the client."""
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    opening = json.dumps(head, ensure_ascii=False)[:-1]
    await response.write(f"{opening}{', ' if head else ''}{json.dumps(key)}: [".encode())
    first = True
    while True:
        async with turn():
            text = await asyncio.to_thread(_json_chunk, chunks, first)
        if text is None:
            break
        if text:
            await response.write(text.encode())
            first = False
    await response.write(b"]}")
    await response.write_eof()
    return response


def _csv_chunk(chunks: Iterator[Sequence[Sequence[Any]]]) -> str | None:
    rows = next(chunks, None)
    if rows is None:
        return None
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


async def stream_csv(
    request: web.Request, filename: str, header: Sequence[str], chunks: Iterator[Sequence[Sequence[Any]]], *, turn: Turn = _no_turn,
) -> web.StreamResponse:
    """A CSV download: the header row, then every row of every chunk (rendered within ``turn()``)."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
    })
    await response.prepare(request)
    await response.write(_csv_chunk(iter([[header]])).encode())  # type: ignore[union-attr]
    while True:
        async with turn():
            text = await asyncio.to_thread(_csv_chunk, chunks)
        if text is None:
            break
        await response.write(text.encode())
    await response.write_eof()
    return response
