"""Four-eyes approvals over the JSON API: list and read requests, approve or reject them.

An endpoint whose action needs a second user's approval answers ``202 Accepted`` with the
pending request (:func:`pending`, ``Location: /api/v1/approvals/{id}``) instead of acting.
``POST /approvals/{id}/approve`` then runs it once (``executed`` with its result, or ``failed``
with the error); approving again answers the request as it stands. Deciding needs the
``approve`` permission and must be done by another user than the requester (403 otherwise,
nothing moves). Users without ``approve`` see only their own requests.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.approvals.component import APPROVALS
from scada.approvals.models import STATES
from scada.approvals.service import ApprovalError, ApprovalService, ApprovalView
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import API_QUERY, PREFIX, ApiCall, ApiError, ApiRouter, json_response

__all__ = ["pending", "router"]

router = ApiRouter("approvals")

State = Literal[STATES]  # type: ignore[valid-type]


class ApprovalQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: State | None = Field(default=None, description=f"one of {', '.join(STATES)}")
    limit: int = Field(default=100, ge=1, le=1000, description="at most this many, newest first")


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(default="", max_length=500)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(min_length=1, max_length=500)


def pending(view: ApprovalView) -> web.Response:
    """The answer of an endpoint whose action waits for approval: 202 with the request."""
    response = json_response(view.as_json(), status=202)
    response.headers["Location"] = f"{PREFIX}/approvals/{view.id}"
    return response


def service_of(call: ApiCall[Any]) -> ApprovalService:
    service = call.request.app[CONTEXT].get(APPROVALS)
    if service is None:
        raise ApiError(503, "approvals are not running in this server")
    return service


def _failed(exc: ApprovalError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


def _id(call: ApiCall[Any]) -> int:
    raw = call.params["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(404, f"no approval request {raw[:32]!r}")
    return int(raw)


@router.get("/approvals", query=ApprovalQuery, audit=False,
            summary="Approval requests, newest first (?state=pending…); without `approve`, only the caller's own")
async def list_approvals(call: ApiCall[Any]) -> dict[str, Any]:
    q: ApprovalQuery = call.request[API_QUERY]  # type: ignore[assignment]
    mine_only = not call.user.can(Permission.APPROVE)
    views = await service_of(call).list(state=q.state, requested_by=call.user.name if mine_only else None, limit=q.limit)
    return {"approvals": [v.as_json() for v in views], "count": len(views)}


@router.get("/approvals/{id}", audit=False, summary="One approval request (without `approve`, only the caller's own)")
async def get_approval(call: ApiCall[Any]) -> dict[str, Any]:
    view = await service_of(call).get(_id(call))
    if view is None or (not call.user.can(Permission.APPROVE) and view.requested_by != call.user.name):
        raise ApiError(404, f"no approval request {call.params['id']!r}")
    return view.as_json()


@router.post("/approvals/{id}/approve", body=ApproveIn, permission=Permission.APPROVE,
             summary="Approve another user's request: it runs once (executed, or failed with the error)")
async def approve(call: ApiCall[ApproveIn]) -> dict[str, Any]:
    try:
        view = await service_of(call).approve(_id(call), call.user, source=call.actor.source, reason=call.body.reason)
    except ApprovalError as exc:
        raise _failed(exc) from None
    return view.as_json()


@router.post("/approvals/{id}/reject", body=RejectIn, permission=Permission.APPROVE,
             summary="Reject another user's request (nothing runs)")
async def reject(call: ApiCall[RejectIn]) -> dict[str, Any]:
    try:
        view = await service_of(call).reject(_id(call), call.user, source=call.actor.source, reason=call.body.reason)
    except ApprovalError as exc:
        raise _failed(exc) from None
    return view.as_json()
