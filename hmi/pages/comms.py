"""Communications: every link (Modbus, DL/T 645, MQTT gateways) with its state and request statistics, and on demand the
meters of a link with theirs (refreshed from ``/api/v1/links`` while the page is open)."""

from __future__ import annotations

from aiohttp import web

from scada.polling.component import COMMS
from scada.users.auth import Permission

from ..api.links import link_json
from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("comms", requires=(COMMS,))


@pages.get("/comms", permission=Permission.VIEW, nav=("nav.comms", 50))
async def comms(call: PageCall) -> web.StreamResponse:
    links = [link_json(s) for s in sorted(call.ctx[COMMS].link_stats(), key=lambda s: s.name)]
    return render(call.request, "comms.html", links=links)
