"""Tariffs: every tariff with its versions (prices by period, tiers, two-part charges); engineers
create tariffs and add versions (price changes from a date), account managers assign them to
rooms. Writes go through the prepaid API (``/api/v1/tariffs...``)."""

from __future__ import annotations

from aiohttp import web

from scada.prepaid.engine import PREPAID
from scada.users.auth import Permission
from tags import utcnow

from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("tariffs", requires=(PREPAID,))


@pages.get("/tariffs", permission=Permission.VIEW, nav=("nav.tariffs", 60))
async def tariffs(call: PageCall) -> web.StreamResponse:
    engine = call.ctx[PREPAID]
    now = utcnow()
    items = [t.as_json(now) for t in await engine.tariffs.list()]
    return render(
        call.request, "tariffs.html", tariffs=items,
        can_edit=call.user.can(Permission.TARIFF_MANAGE), can_assign=call.user.can(Permission.ACCOUNT_MANAGE),
    )
