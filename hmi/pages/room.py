"""Room detail: live status, the room's meters with every value and its quality (kept live by
the WebSocket feed)."""

from __future__ import annotations

from aiohttp import web

from scada.alarms.component import ALARMS
from scada.auth import Permission
from scada.commands import COMMANDS, SUPPLY_DRIVER

from ..keys import LIVE
from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["pages"]

pages = PageSet("room")


@pages.get("/rooms/{room}", permission=Permission.VIEW)
async def room_detail(call: PageCall) -> web.StreamResponse:
    room_id = call.request.match_info["room"]
    detail = call.request.app[LIVE].room_detail(room_id)
    if detail is None:
        return error_page(call.request, 404, call.t("room.unknown", room=room_id))
    driver = call.ctx.get(SUPPLY_DRIVER)
    snap = call.request.app[LIVE].snapshot
    for m in detail["meters"]:
        m["supply_control"] = bool(driver is not None and COMMANDS in call.ctx and driver.supports_supply(snap.meters[m["id"]]))
    return render(
        call.request, "room.html", detail=detail, room=detail["room"], meters=detail["meters"],
        alarms_running=ALARMS in call.ctx, can_switch=call.user.can(Permission.RELAY_CONTROL),
        commands_running=COMMANDS in call.ctx,
    )
