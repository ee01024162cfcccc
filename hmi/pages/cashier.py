"""The cashier: find a room, see its account and recent ledger, recharge, refund, reverse an
entry, and print a receipt. Money moves only through the prepaid API (``/api/v1/rooms/{room}/
account/...``, ``/api/v1/ledger/{entry}/reverse``), which authorises, validates and audits."""

from __future__ import annotations

import secrets
from datetime import datetime

from aiohttp import web

from scada.config import CONFIG
from scada.core.inputs import MAX_ID, InputError, parse_id
from scada.prepaid.engine import PREPAID
from scada.prepaid.errors import PrepaidError
from scada.users.auth import Permission

from ..keys import LIVE
from ..live import RoomFilter
from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["pages", "receipt_reference"]

pages = PageSet("cashier", requires=(PREPAID,))

CHANNELS = ("cash", "card", "transfer", "wechat", "alipay")
REVERSIBLE = frozenset({"opening", "recharge", "refund", "deduction", "charge", "late_fee", "apportionment"})
MAX_RESULTS = 20


def receipt_reference(now: datetime) -> str:
    """A fresh reference for one recharge form: sending the form twice posts once."""
    return f"HMI-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


@pages.get("/cashier", permission=Permission.RECHARGE, nav=("nav.cashier", 30))
async def cashier(call: PageCall) -> web.StreamResponse:
    live = call.request.app[LIVE]
    engine = call.ctx[PREPAID]
    q = call.request.query.get("q", "").strip()[:64]
    room_id = call.request.query.get("room", "").strip()[:64]
    results = []
    if q:
        results = [live.summary(r) for r in live.matching(RoomFilter(q=q))[:MAX_RESULTS]]
    room = live.summary(room_id) if room_id else None
    account = entries = None
    if room_id and room is None:
        return error_page(call.request, 404, call.t("room.unknown", room=room_id))
    if room is not None:
        try:
            view, ledger = await engine.ledger(room_id, limit=20)
            account, entries = view.as_json(engine.minor_units, contact=call.user.sees_contacts), [e.as_json(engine.minor_units) for e in ledger]
        except PrepaidError:
            account = entries = None  # no account: the page says so
    now = datetime.now(call.ctx[CONFIG].site.tz)
    return render(
        call.request, "cashier.html", q=q, results=results, room=room, account=account, entries=entries,
        channels=CHANNELS, reference=receipt_reference(now), reversible=REVERSIBLE,
        can_refund=call.user.can(Permission.REFUND), can_manage=call.user.can(Permission.ACCOUNT_MANAGE),
    )


@pages.get("/cashier/receipt/{room}/{entry}", permission=Permission.RECHARGE)
async def receipt(call: PageCall) -> web.StreamResponse:
    engine = call.ctx[PREPAID]
    room_id = call.request.match_info["room"]
    raw = call.request.match_info["entry"]
    room = call.request.app[LIVE].summary(room_id)
    try:
        entry_id = parse_id(raw, "entry")  # ASCII digits within 64 bits ("¹" is a digit to str.isdigit)
    except InputError:
        entry_id = None
    if entry_id == MAX_ID:  # the lookup asks for the entries before entry_id + 1
        entry_id = None
    if room is None or entry_id is None:
        return error_page(call.request, 404, call.t("receipt.unknown", entry=raw[:20], room=room_id[:64]))
    try:
        view, ledger = await engine.ledger(room_id, limit=1, before_id=entry_id + 1)
    except PrepaidError:
        ledger = []
    entry = next((e for e in ledger if e.id == entry_id), None)
    if entry is None:
        return error_page(call.request, 404, call.t("receipt.unknown", entry=entry_id, room=room_id))
    m = engine.minor_units
    return render(call.request, "receipt.html", room=room, entry=entry.as_json(m), account=view.as_json(m, contact=call.user.sees_contacts))
