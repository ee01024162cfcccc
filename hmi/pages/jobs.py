"""Jobs: the list with live progress (over the WebSocket feed), a job's items, the job form
(targets by building, floor, state or alarm level, with a count before confirming), the import
of pre-set accounts with its per-row errors, and (its own page, ``/messages``) the delivery log
of tenant messages: queued, held, sent, failed with why. Writes go through the JSON API
(``/api/v1/jobs...``, ``/api/v1/accounts/import``)."""

from __future__ import annotations

from aiohttp import web

from scada.alarms.component import NOTIFIER
from scada.operations.component import JOBS
from scada.operations.kinds import KINDS
from scada.operations.messages import MESSAGE_EVENTS
from scada.operations.service import JobError
from scada.operations.targets import ROOM_STATES
from scada.site.component import ASSETS
from scada.users.auth import Permission

from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["message_pages", "pages"]

pages = PageSet("jobs", requires=(JOBS,))
# the tenant messages go out through the notifier's delivery path: the log is where both run
message_pages = PageSet("messages", requires=(JOBS, NOTIFIER))
MESSAGE_STATES = ("pending", "held", "sent", "failed", "skipped", "cancelled")


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
        user_name=call.user.name, messages=NOTIFIER in call.ctx and call.user.can(Permission.ACCOUNT_MANAGE),
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


@message_pages.get("/messages", permission=Permission.ACCOUNT_MANAGE, nav=("nav.messages", 56))
async def messages(call: PageCall) -> web.StreamResponse:
    """The delivery log of messages to tenants, newest first (the permission is the API's
    ``GET /api/v1/messages``: the log holds tenants' phone numbers and addresses)."""
    status = call.request.query.get("status", "")
    if status not in MESSAGE_STATES:
        status = ""
    rows = await call.ctx[NOTIFIER].deliveries(status=status or None, limit=200, events=MESSAGE_EVENTS)
    return render(call.request, "messages.html", messages=[
        {"id": d.id, "created_at": d.created_at, "event": d.event, "route": d.route, "job": d.route.removeprefix("job:")
         if d.route.startswith("job:") else None, "channel": d.channel, "room": d.alarm_key.removeprefix("room:"),
         "recipient": d.recipient, "subject": d.subject, "body": d.body, "status": d.status, "reason": d.reason,
         "attempts": d.attempts, "next_attempt_at": d.next_attempt_at, "sent_at": d.sent_at}
        for d in rows
    ], shown=status, states=MESSAGE_STATES)
