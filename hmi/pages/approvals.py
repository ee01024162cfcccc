"""Pending approvals (four eyes): the requests waiting for a second user, approved or rejected
here through ``/api/v1/approvals/{id}/approve|reject``. A user with ``approve`` sees every request
and decides the others' ones; anyone else sees their own requests and what became of them."""

from __future__ import annotations

from aiohttp import web

from scada.approvals.component import APPROVALS
from scada.approvals.models import STATES
from scada.users.auth import Permission

from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("approvals", requires=(APPROVALS,))


@pages.get("/approvals", permission=Permission.VIEW, nav=("nav.approvals", 37), nav_permission=Permission.APPROVE)
async def approvals(call: PageCall) -> web.StreamResponse:
    state = call.request.query.get("state", "pending")
    if state not in (*STATES, "all"):
        state = "pending"
    approver = call.user.can(Permission.APPROVE)
    requests = await call.ctx[APPROVALS].list(
        state=None if state == "all" else state, requested_by=None if approver else call.user.name, limit=200,
    )
    return render(call.request, "approvals.html", requests=requests, state=state, states=("pending", *STATES[1:], "all"),
                  approver=approver)
