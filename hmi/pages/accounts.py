"""Accounts management: rooms with their account state; for one room, open an account (tariffs,
opening balance, credit limit, contact), change its settings, release a held reconnect, or
close it with final settlement. Writes go through the prepaid API."""

from __future__ import annotations

from aiohttp import web

from scada.prepaid.engine import PREPAID
from scada.prepaid.money import format_minor
from scada.users.auth import Permission
from tags import utcnow

from ..api.rooms import RoomQuery
from ..keys import LIVE
from ..live import CATEGORIES, RoomFilter
from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["pages"]

pages = PageSet("accounts", requires=(PREPAID,))


@pages.get("/accounts", permission=Permission.ACCOUNT_MANAGE, nav=("nav.accounts", 35))
async def accounts(call: PageCall) -> web.StreamResponse:
    live = call.request.app[LIVE]
    engine = call.ctx[PREPAID]
    room_id = call.request.query.get("room", "").strip()[:64]
    if room_id:
        room = live.summary(room_id)
        if room is None:
            return error_page(call.request, 404, call.t("room.unknown", room=room_id))
        view = await engine.account(room_id)
        account = view.as_json(engine.minor_units, contact=call.user.sees_contacts) if view is not None else None
        now = utcnow()
        tariffs = [t.as_json(now) for t in await engine.tariffs.list()]
        kinds = {m["kind"] for m in live.room_detail(room_id)["meters"]}  # type: ignore[index]
        return render(
            call.request, "account.html", room=room, account=account, tariffs=tariffs, kinds=kinds,
            default_credit_limit=format_minor(engine.defaults().credit_limit_minor or 0, engine.minor_units),
            channels=("cash", "card", "transfer", "wechat", "alipay"),
            can_reconnect=call.user.can(Permission.RELAY_CONTROL),
        )
    raw = {k: v for k, v in call.request.query.items() if v != "" and k in ("q", "state", "page")}
    try:
        query = RoomQuery.model_validate(raw | {"page_size": "50"})
    except ValueError:
        query = RoomQuery(page_size=50)
    page = live.page(RoomFilter(state=query.state, q=query.q), query.page, 50)
    return render(call.request, "accounts.html", page=page, query=query, categories=CATEGORIES)
