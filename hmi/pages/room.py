"""Room detail: live status, the room's meters with every value and its quality (kept live by
the WebSocket feed), its standing alarms, relay and valve control, its account and recent
ledger entries, and a chart of its consumption by hour or day."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from scada.alarms.component import ALARMS
from scada.commands.service import COMMANDS, SUPPLY_DRIVER
from scada.config import CONFIG
from scada.history.service import HISTORY
from scada.prepaid.engine import PREPAID
from scada.prepaid.errors import PrepaidError
from scada.users.auth import Permission

from ..keys import LIVE
from ..render import render
from . import PageCall, PageSet, error_page
from .cashier import REVERSIBLE

__all__ = ["pages"]

pages = PageSet("room")

LEDGER_ROWS = 10


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
    engine = call.ctx.get(PREPAID)
    account = entries = None
    if engine is not None:
        try:
            view, ledger = await engine.ledger(room_id, limit=LEDGER_ROWS)
            account, entries = view.as_json(engine.minor_units, contact=call.user.sees_contacts), [e.as_json(engine.minor_units) for e in ledger]
        except PrepaidError:
            pass  # no account yet: the page offers to open one
    return render(
        call.request, "room.html", detail=detail, room=detail["room"], meters=detail["meters"],
        alarms_running=ALARMS in call.ctx, can_switch=call.user.can(Permission.RELAY_CONTROL),
        commands_running=COMMANDS in call.ctx, prepaid_running=engine is not None, account=account, entries=entries,
        reversible=REVERSIBLE, can_reverse=call.user.can(Permission.REFUND), can_recharge=call.user.can(Permission.RECHARGE),
        can_manage=call.user.can(Permission.ACCOUNT_MANAGE),
        history_running=HISTORY in call.ctx, today=datetime.now(call.ctx[CONFIG].site.tz).date().isoformat(),
    )
