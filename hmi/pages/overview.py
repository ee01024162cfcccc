"""The overview: a grid of every room, filtered by building, floor and state on the server,
paged, and kept live by the WebSocket feed."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from scada.users.auth import Permission

from ..api.rooms import RoomQuery
from ..keys import LIVE
from ..live import CATEGORIES, FilterError, RoomFilter
from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("overview")


@pages.get("/", permission=Permission.VIEW, nav=("nav.overview", 10))
async def overview(call: PageCall) -> web.StreamResponse:
    live = call.request.app[LIVE]
    error = None
    raw = {k: v for k, v in call.request.query.items() if v != ""}
    try:
        query = RoomQuery.model_validate(raw)
        f = RoomFilter(query.building, query.floor, query.state, query.q)
        live.check_filter(f)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        error = call.t("overview.bad_filter", field=field)
        query, f = RoomQuery(), RoomFilter()
    except FilterError as exc:
        error = call.t("overview.bad_filter", field=exc.field)
        query, f = RoomQuery(), RoomFilter()
    page = live.page(f, query.page, query.page_size)
    snap = live.snapshot
    buildings = sorted(snap.buildings.values(), key=lambda b: b.id)
    floors = [fl for b in buildings for fl in snap.floors_of_building(b.id) if f.building is None or fl.building_id == f.building]
    return render(
        call.request, "overview.html", page=page, filter=f, buildings=buildings, floors=floors,
        categories=CATEGORIES, error=error, multi_building=len(buildings) > 1,
    )
