"""``GET /rooms/{room}/trend``: a room's consumption for the room page's chart, by hour over a
day or by day over a week or a month, from the historian (``scada.history.service``).

Unlike ``/history`` (an export, for ``history_export``), this is what anyone who may see the
room sees: its own energy and water use, per bar, with how many stored intervals each bar holds
(fewer than expected: the meter was not read for part of it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import datetime, time, timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from historian import BackendError, QueryError
from scada.config import CONFIG
from scada.core.inputs import Date
from scada.history.service import HISTORY
from tags import EARLIEST, LATEST

from ..keys import CONTEXT, LIVE
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["router", "trend_window"]

router = ApiRouter("trend")

UNITS = {"energy_total": "kWh", "volume_total": "m3"}
POINT_OF_KIND = {"electricity": "energy_total", "water": "volume_total"}


class TrendQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    range: Literal["day", "week", "month"] = Field(
        default="day", description="day: hourly bars; week: the 7 days ending on date; month: date's month, daily bars"
    )
    date: Date | None = Field(default=None, description="the day shown (site time; default today), from 1970 to 2199")


def trend_window(range_: str, day: dt.date, tz: Any) -> tuple[datetime, datetime, str]:
    """[start, end) in the site's time zone and the bar interval for a range ending on ``day``."""
    midnight = datetime.combine(day, time(), tz)
    if range_ == "day":
        return midnight, datetime.combine(day + timedelta(days=1), time(), tz), "1h"
    if range_ == "week":
        return (
            datetime.combine(day - timedelta(days=6), time(), tz),
            datetime.combine(day + timedelta(days=1), time(), tz),
            "1d",
        )
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return datetime.combine(first, time(), tz), datetime.combine(following, time(), tz), "1d"


def _series(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ts, point, value, intervals in frame[["time", "point", "value", "intervals"]].itertuples(
        index=False, name=None
    ):
        v = None if pd.isna(value) else float(value)
        out.setdefault(str(point), []).append({"t": ts.isoformat(), "v": v, "intervals": int(intervals)})
    return out


@router.get(
    "/rooms/{room}/trend",
    query=TrendQuery,
    audit=False,
    summary="A room's energy and water use by hour (day) or by day (week, month)",
)
async def room_trend(call: ApiCall[Any]) -> dict[str, Any]:
    ctx = call.request.app[CONTEXT]
    service = ctx.get(HISTORY)
    if service is None:
        raise ApiError(503, "the historian is disabled in this server's configuration")
    live = call.request.app[LIVE]
    room_id = call.params["room"]
    detail = live.room_detail(room_id)
    if detail is None:
        raise ApiError(404, f"unknown room {room_id!r}", field="room")
    q = call.request[API_QUERY]
    assert isinstance(q, TrendQuery)
    tz = ctx[CONFIG].site.tz
    day = q.date or datetime.now(tz).date()
    start, end, interval = trend_window(q.range, day, tz)
    if not (EARLIEST <= start and end <= LATEST):  # a week ending on 1970-01-01 starts before it
        raise ApiError(422, f"date: the {q.range} of {day} reaches outside {EARLIEST.date()} to {LATEST.date()}", field="date")
    points = sorted({POINT_OF_KIND[m["kind"]] for m in detail["meters"] if m["kind"] in POINT_OF_KIND})
    series: dict[str, list[dict[str, Any]]] = {}
    if points:
        try:
            frame = await service.query_by("room", [room_id], points, start, end, interval, "sum")
        except QueryError as exc:
            raise ApiError(422, str(exc), field=exc.param) from None
        except BackendError as exc:
            raise ApiError(503, f"historian backend unavailable: {exc}") from None
        series = await asyncio.to_thread(_series, frame)
    return {
        "room": room_id,
        "range": q.range,
        "date": day,
        "start": start,
        "end": end,
        "interval": interval,
        "series": {p: {"unit": UNITS[p], "points": series.get(p, [])} for p in points},
    }
