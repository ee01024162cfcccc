"""Relay and valve commands through the one command path: ``POST /meters/{meter}/supply``
(connect or disconnect, with a reason) and the meter's command history.

The command path authorises (``relay_control``), queues, audits, writes, confirms by reading
the status back and retries; this endpoint waits for the outcome (up to ``wait_s``) and answers
it: 200 confirmed, 409 superseded by a newer command, 422 not possible for this meter, 504 the
meter did not confirm (the body carries the command either way), 202 still running.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.commands.service import (
    COMMANDS,
    CommandKind,
    CommandRequest,
    CommandResult,
    CommandService,
    CommandTimeout,
)
from scada.site.component import ASSETS
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import ApiCall, ApiError, ApiRouter, json_response

__all__ = ["router"]

router = ApiRouter("supply")


class SupplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    action: Literal["connect", "disconnect"] = Field(description="connect: relay closed / valve open; disconnect: tripped / closed")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S", description="why (kept in the audit log)")
    wait_s: float = Field(default=60, ge=0, le=300, description="how long to wait for the outcome")


def command_json(r: CommandResult) -> dict[str, Any]:
    return {
        "id": r.id, "meter": r.meter_id, "action": r.kind.value, "status": r.status, "detail": r.detail,
        "attempts": r.attempts, "requested_at": r.requested_at, "finished_at": r.finished_at,
    }


def _service(call: ApiCall[Any]) -> CommandService:
    service = call.request.app[CONTEXT].get(COMMANDS)
    if service is None:
        raise ApiError(503, "the command path is not running on this server")
    return service


def _meter(call: ApiCall[Any]) -> str:
    meter_id = call.params["meter"]
    if meter_id not in call.request.app[CONTEXT][ASSETS].snapshot.meters:
        raise ApiError(404, f"unknown meter {meter_id!r}", field="meter")
    return meter_id


@router.post("/meters/{meter}/supply", body=SupplyIn, permission=Permission.RELAY_CONTROL,
             summary="Connect or disconnect a meter's supply (relay or valve), confirmed by read-back")
async def set_supply(call: ApiCall[SupplyIn]) -> Any:
    service = _service(call)
    meter_id = _meter(call)
    b = call.body
    request = CommandRequest(meter_id, CommandKind(b.action), call.actor, b.reason.strip(), user=call.user)
    try:
        result = await service.execute(request, timeout=b.wait_s)
    except CommandTimeout as exc:
        return json_response({"id": exc.command_id, "meter": meter_id, "action": b.action, "status": "running"}, status=202)
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise ApiError(422, str(exc), field=field if field in SupplyIn.model_fields else None) from None
    body = command_json(result)
    if result.status == "confirmed":
        return body
    if result.status == "superseded":
        raise ApiError(409, f"command superseded: {result.detail}", command=body)
    if result.status == "denied":
        raise ApiError(403, f"command denied: {result.detail}", command=body)
    if result.attempts == 0:
        raise ApiError(422, f"command not possible: {result.detail}", field="meter", command=body)
    raise ApiError(504, f"the meter did not confirm: {result.detail}", command=body)


@router.get("/meters/{meter}/commands", audit=False, summary="A meter's finished supply commands, newest first")
async def command_history(call: ApiCall[Any]) -> dict[str, Any]:
    service = _service(call)
    meter_id = _meter(call)
    return {"commands": [command_json(r) for r in await service.history(meter_id, limit=50)]}


