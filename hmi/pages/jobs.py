"""Jobs: the list with live progress (over the WebSocket feed), a job's items, the job form
(targets by building, floor, state or alarm level, with a count before confirming), the import
of pre-set accounts with its per-row errors, and the delivery log of tenant messages. Writes go
through the JSON API (``/api/v1/jobs...``, ``/api/v1/accounts/import``)."""

from __future__ import annotations

from aiohttp import web

from scada.operations.component import JOBS
from scada.operations.kinds import KINDS
from scada.operations.service import JobError
from scada.operations.targets import ROOM_STATES
from scada.site.component import ASSETS
from scada.users.auth import Permission

from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["pages"]

pages = PageSet("jobs", requires=(JOBS,))


@pages.get("/jobs", permission=Permission.VIEW, nav=("nav.jobs", 55))
async def jobs(call: PageCall) -> web.StreamResponse:
    service = call.ctx[JOBS]
    snap = call.ctx[ASSETS].snapshot
    kinds = [k for k in KINDS.values() if call.user.can(k.permission) and all(getattr(service.ctx, n) is not None for n in k.needs)]
    buildings = [{"id": b.id, "name": b.name} for b in snap.buildings.values()]
    floors = [{"id": f.id, "name": f.name, "building": f.building_id} for b in snap.buildings for f in snap.floors_of_building(b)]
    return render(
        call.request, "jobs.html", jobs=[j.as_json() for j in await service.list(limit=100)], kinds=[k.name for k in kinds],
        buildings=buildings, floors=floors, states=ROOM_STATES, can_approve=call.user.can(Permission.APPROVE),
        user_name=call.user.name,
    )


@pages.get("/jobs/{id}", permission=Permission.VIEW)
async def job(call: PageCall) -> web.StreamResponse:
    text = call.request.match_info["id"]
    try:
        view = await call.ctx[JOBS].get(int(text) if text.isdigit() and len(text) < 18 else -1)
    except JobError as exc:
        return error_page(call.request, exc.status, exc.message)
    return render(call.request, "job.html", job=view.as_json(), can_approve=call.user.can(Permission.APPROVE), user_name=call.user.name)


@pages.get("/accounts/import", permission=Permission.ACCOUNT_MANAGE)
async def account_import(call: PageCall) -> web.StreamResponse:
    prepared = call.ctx[JOBS].ctx.prepared
    if prepared is None:
        return error_page(call.request, 503, "the prepaid engine is not running")
    return render(call.request, "account_import.html", prepared=await prepared.list())
