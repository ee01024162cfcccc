"""``GET /api/v1/history``: interval history as JSON or CSV.

Parameters (query string; lists as repeated parameters or comma-separated):

- exactly one of ``meter``, ``room``, ``floor``, ``building``: the ids to report on;
- ``point``: ``energy_total`` (default), ``energy_sharp``/``_peak``/``_flat``/``_valley``,
  ``volume_total``, ``power``, ``voltage``, ``current``, ``samples``, ``good_share``;
- ``start``, ``end``: ISO 8601 with an offset (``2024-05-01T00:00:00+08:00``) or a plain date
  (local midnight of the site); the range is ``[start, end)``;
- ``interval``: resample (``15min``, ``1h``, ``1d``, ``1w``, ``1mo``), stored intervals if absent;
- ``agg``: ``sum``, ``mean``, ``min``, ``max`` (default per point);
- ``format``: ``json`` (default) or ``csv``.

Times in the answer are ISO 8601 in the site's time zone. A bad parameter is a 422 naming it; so
is a query whose answer would have more than ``historian.max_query_rows`` rows (with ``rows`` and
``limit``), refused before anything is read. Large answers are streamed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from historian import BackendError, QueryError
from historian.export import csv_chunks, row_chunks, to_csv, to_rows
from historian.query import QueryTooLarge
from scada.history.service import HISTORY, HistoryBusy
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import ApiCall, ApiError, ApiRouter
from .stream import STREAM_ABOVE_ROWS, stream_csv, stream_json

__all__ = ["router"]

router = ApiRouter("history")


class HistoryParams(BaseModel):
    """The query parameters (for validation of names and the OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")
    meter: str | None = Field(default=None, description="meter ids (repeat or comma-separate)")
    room: str | None = Field(default=None, description="room ids")
    floor: str | None = Field(default=None, description="floor ids")
    building: str | None = Field(default=None, description="building ids")
    point: str | None = Field(default=None, description="points, default energy_total")
    start: str = Field(description="ISO 8601 with offset, or a date (local midnight)")
    end: str = Field(description="ISO 8601 with offset, or a date (local midnight); exclusive")
    interval: str | None = Field(default=None, description="15min, 1h, 1d, 1w, 1mo; stored intervals if absent")
    agg: str | None = Field(default=None, description="sum, mean, min or max")
    format: str | None = Field(default=None, description="json (default) or csv")


@router.get(
    "/history",
    query=HistoryParams,
    permission=Permission.HISTORY_EXPORT,
    summary="Interval history by meter, room, floor or building, as JSON or CSV",
)
async def history(call: ApiCall[Any]) -> Any:
    service = call.request.app[CONTEXT].get(HISTORY)
    if service is None:
        raise ApiError(503, "the historian is disabled in this server's configuration")
    query = call.request.query
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(422, f"format: expected json or csv, found {fmt!r}", field="format")
    params = {k: query.getall(k) for k in query.keys()}
    try:
        request = service.parse(params)
        frame = await service.query(request)
    except QueryTooLarge as exc:
        raise ApiError(422, str(exc), field=exc.param, rows=exc.rows, limit=exc.limit) from None
    except QueryError as exc:
        raise ApiError(422, str(exc), field=exc.param) from None
    except BackendError as exc:
        raise ApiError(503, f"historian backend unavailable: {exc}") from None
    except HistoryBusy as exc:
        raise ApiError(503, str(exc), retry_after_s=1) from None
    large = len(frame) > STREAM_ABOVE_ROWS  # streamed a slice at a time, never one string in memory
    if fmt == "csv":
        name = f"history-{request.selector}-{request.start.date()}-{request.end.date()}.csv"
        if large:
            return await stream_csv(call.request, name, [str(c) for c in frame.columns], csv_chunks(frame), turn=lambda: service.turn(patient=True))
        text = await asyncio.to_thread(to_csv, frame)
        return web.Response(
            text=text, content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    payload = {
        "timezone": str(service.tz),
        "group_by": request.selector,
        "points": list(request.points),
        "start": request.start.astimezone(service.tz).isoformat(),
        "end": request.end.astimezone(service.tz).isoformat(),
        "interval": request.resample.text if request.resample else f"{service.interval_s // 60}min",
        "agg": request.agg,
    }
    if large:
        return await stream_json(call.request, payload, row_chunks(frame), turn=lambda: service.turn(patient=True))

    def render() -> str:
        return json.dumps({**payload, "rows": to_rows(frame)}, ensure_ascii=False, allow_nan=False)

    return web.Response(text=await asyncio.to_thread(render), content_type="application/json")
