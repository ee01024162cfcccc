"""Rooms, meters and the site tree: ``/rooms``, ``/rooms/{room}``, ``/meters/{meter}``, ``/site``.

Room summaries are live (the asset registry joined with the room and meter tags); filtering
and paging happen on the server, so a client never downloads 10,000 rooms to show 120.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.commands.service import SUPPLY_DRIVER
from scada.polling.component import COMMS

from ..keys import CONTEXT, LIVE
from ..live import CATEGORIES, FilterError, LiveRooms, RoomFilter, meter_json
from .links import link_json
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["RoomQuery", "room_filter", "router"]

# reads are not audited (the audit log records writes); they need the default permission: view
router = ApiRouter("rooms")


class RoomQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    building: str | None = Field(default=None, max_length=64, description="building id")
    floor: str | None = Field(default=None, max_length=64, description="floor id")
    state: Literal[CATEGORIES] | None = Field(default=None, description="room state: " + ", ".join(CATEGORIES))  # type: ignore[valid-type]
    q: str | None = Field(default=None, max_length=64, description="part of the room's name or id")
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=120, ge=1, le=1000)


def room_filter(live: LiveRooms, query: RoomQuery) -> RoomFilter:
    f = RoomFilter(query.building or None, query.floor or None, query.state, query.q or None)
    try:
        live.check_filter(f)
    except FilterError as exc:
        raise ApiError(422, f"{exc.field}: {exc.message}", field=exc.field) from None
    return f


@router.get("/rooms", query=RoomQuery, summary="Rooms with live status, filtered and paged on the server", audit=False)
async def list_rooms(call: ApiCall[Any]) -> dict[str, Any]:
    live = call.request.app[LIVE]
    query = call.request[API_QUERY]
    assert isinstance(query, RoomQuery)
    page = live.page(room_filter(live, query), query.page, query.page_size)
    return {"rooms": page.rooms, "total": page.total, "page": page.page, "pages": page.pages, "page_size": page.page_size, "counts": page.counts}


@router.get("/rooms/{room}", summary="One room: live status and its meters' live values with quality", audit=False)
async def get_room(call: ApiCall[Any]) -> dict[str, Any]:
    live = call.request.app[LIVE]
    detail = live.room_detail(call.params["room"])
    if detail is None:
        raise ApiError(404, f"unknown room {call.params['room']!r}", field="room")
    driver = call.request.app[CONTEXT].get(SUPPLY_DRIVER)
    for m in detail["meters"]:
        m["supply_control"] = bool(driver is not None and driver.supports_supply(live.snapshot.meters[m["id"]]))
    return detail


@router.get("/meters/{meter}", summary="One meter: registry data and every live value with quality and timestamps", audit=False)
async def get_meter(call: ApiCall[Any]) -> dict[str, Any]:
    live = call.request.app[LIVE]
    meter = live.snapshot.meters.get(call.params["meter"])
    if meter is None:
        raise ApiError(404, f"unknown meter {call.params['meter']!r}", field="meter")
    out = meter_json(meter) | {"points": live.meter_points(meter.id)}
    ctx = call.request.app[CONTEXT]
    driver = ctx.get(SUPPLY_DRIVER)
    out["supply_control"] = bool(driver is not None and driver.supports_supply(meter))
    poller = ctx.get(COMMS)
    stats = poller.device_stats(meter.id) if poller is not None else []
    out["comm"] = link_json(stats[0]) if stats else None
    return out


@router.get("/site", summary="The site's buildings and floors with room counts by state", audit=False)
async def get_site(call: ApiCall[Any]) -> dict[str, Any]:
    live = call.request.app[LIVE]
    snap = live.snapshot
    return {
        "site": snap.site,
        "buildings": [
            {
                "id": b.id,
                "name": b.name,
                "counts": live.counts(b.id),
                "floors": [{"id": f.id, "name": f.name, "level": f.level, "counts": live.counts(b.id, f.id)} for f in snap.floors_of_building(b.id)],
            }
            for b in sorted(snap.buildings.values(), key=lambda b: b.id)
        ],
    }

