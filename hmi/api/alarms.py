"""``/api/v1/alarms``: the alarm console's backend (list, history, acknowledge, confirm, comment,
shelve, out-of-service) and the notification delivery log.

Permissions: listing needs ``view``; acknowledging and confirming ``alarm_ack`` *and* a role the
alarm's class allows (``alarms.classes.<class>.ack_roles``); commenting ``alarm_ack``; shelving
``alarm_shelve``; out-of-service ``meter_service``; the delivery log ``alarm_ack`` — its recipients
(tenants' phone numbers and e-mail addresses) and message texts (they greet the tenant by name)
only for users who may see tenants' contact details; for the others the recipient is masked and
the text left out. OPC UA clients act through the conditions' methods with the same checks.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.alarms.alarm import STANDING_STATES, AlarmState, alarm_document
from scada.alarms.component import ALARMS, NOTIFIER
from scada.alarms.engine import AlarmEngine
from scada.alarms.lifecycle import IllegalTransition
from scada.alarms.operations import AlarmNotFound, NotPermitted
from scada.alarms.store import AlarmFilter
from scada.core.inputs import AwareDateTime, Id64, InputError, parse_id, quote
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["router"]

router = ApiRouter("alarms")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcknowledgeIn(_Body):
    reason: str = Field(default="", max_length=500)


class ConfirmIn(_Body):
    reason: str = Field(default="", max_length=500)


class CommentIn(_Body):
    comment: str = Field(min_length=1, max_length=500)


class AcknowledgeManyIn(_Body):
    ids: list[Id64] = Field(min_length=1, max_length=500)
    reason: str = Field(default="", max_length=500)


class ShelveIn(_Body):
    reason: str = Field(min_length=1, max_length=500)
    minutes: float = Field(gt=0, le=31 * 24 * 60)


class UnshelveIn(_Body):
    reason: str = Field(default="", max_length=500)


class ServiceIn(_Body):
    object_type: Literal["meter", "room", "link"]
    object_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=500)


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: str = Field(default="standing", description="standing (default), open, or states separated by commas")
    classes: str | None = Field(default=None, description="alarm classes separated by commas")
    min_priority: int = Field(default=0, ge=0, le=4)
    room: str | None = None
    meter: str | None = None
    link: str | None = None
    limit: int = Field(default=500, ge=1, le=5000)


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDateTime | None = Field(default=None, description="raised at or after (ISO 8601 with offset)")
    until: AwareDateTime | None = Field(default=None, description="raised before")
    classes: str | None = Field(default=None, description="alarm classes separated by commas")
    room: str | None = None
    meter: str | None = None
    limit: int = Field(default=200, ge=1, le=5000)


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alarm_id: Id64 | None = None
    status: Literal["pending", "held", "sent", "failed", "skipped", "cancelled"] | None = None
    limit: int = Field(default=200, ge=1, le=5000)


def _engine(call: ApiCall[Any]) -> AlarmEngine:
    engine = call.request.app[CONTEXT].get(ALARMS)
    if engine is None:
        raise ApiError(503, "alarms are not running on this server (alarms.enabled = false)")
    return engine


def _classes(value: str | None, engine: AlarmEngine) -> frozenset[str] | None:
    if not value:
        return None
    wanted = frozenset(v.strip() for v in value.split(",") if v.strip())
    unknown = sorted(wanted - set(engine.classes))
    if unknown:
        raise ApiError(422, f"classes: unknown alarm class {', '.join(unknown)}", field="classes")
    return wanted


def _states(value: str) -> tuple[frozenset[AlarmState] | None, bool]:
    if value == "standing":
        return STANDING_STATES, True
    if value == "open":
        return None, True
    try:
        return frozenset(AlarmState(v.strip()) for v in value.split(",")), True
    except ValueError:
        allowed = ", ".join(["standing", "open", *(s.value for s in AlarmState)])
        raise ApiError(422, f"state: expected one of {allowed}", field="state") from None


def _alarm_id(call: ApiCall[Any]) -> int:
    raw = call.params["alarm_id"]
    try:
        return parse_id(raw, "alarm id")
    except InputError:
        raise ApiError(404, f"no alarm {quote(raw)}", field="alarm_id") from None


# the engine names the duration it was given; the API's field is minutes
_FIELDS = {"duration": "minutes"}


def _refusal(exc: Exception) -> ApiError:
    """The answer to an engine's refusal."""
    if isinstance(exc, AlarmNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, NotPermitted):
        return ApiError(403, str(exc))
    if isinstance(exc, IllegalTransition):
        return ApiError(409, str(exc))
    if isinstance(exc, LookupError):
        return ApiError(404, str(exc.args[0] if exc.args else exc))
    if isinstance(exc, ValueError):
        message = str(exc)
        field = message.split(":", 1)[0] if ":" in message else None
        return ApiError(422, message, field=_FIELDS.get(field or "", field))
    raise exc


async def _guard(action: Any) -> Any:
    """Run an engine action, answering its refusals with the right status."""
    try:
        return await action
    except (LookupError, PermissionError, ValueError) as exc:
        raise _refusal(exc) from None


@router.get("/alarms", query=ListQuery, audit=False, summary="Standing alarms, in console order")
async def list_alarms(call: ApiCall[Any]) -> dict[str, Any]:
    engine = _engine(call)
    q: ListQuery = call.request[API_QUERY]
    states, open_only = _states(q.state)
    f = AlarmFilter(
        states=states, open_only=open_only, classes=_classes(q.classes, engine), min_priority=q.min_priority,
        room_id=q.room, meter_id=q.meter, link=q.link, limit=q.limit,
    )
    alarms = engine.active(f)
    return {"alarms": [alarm_document(a) for a in alarms], "count": len(alarms), "stats": engine.stats()}


@router.get("/alarms/history", query=HistoryQuery, audit=False, summary="Alarm occurrences from the database, newest first")
async def alarm_history(call: ApiCall[Any]) -> dict[str, Any]:
    engine = _engine(call)
    q: HistoryQuery = call.request[API_QUERY]
    for name, value in (("since", q.since), ("until", q.until)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, f"{name}: give a time zone offset (e.g. 2026-03-01T00:00:00+08:00)", field=name)
    f = AlarmFilter(
        states=None, open_only=False, classes=_classes(q.classes, engine), room_id=q.room, meter_id=q.meter,
        since=q.since, until=q.until, limit=q.limit,
    )
    alarms = await engine.history(f)
    return {"alarms": [alarm_document(a) for a in alarms], "count": len(alarms)}


@router.get("/alarms/out-of-service", audit=False, summary="Objects whose alarms are out of service")
async def out_of_service_list(call: ApiCall[Any]) -> dict[str, Any]:
    return {"out_of_service": _engine(call).out_of_service()}


@router.post("/alarms/out-of-service", body=ServiceIn, permission=Permission.METER_SERVICE,
             summary="Take the alarms of a meter (room, link) out of service, e.g. for maintenance")
async def out_of_service(call: ApiCall[ServiceIn]) -> dict[str, Any]:
    b = call.body
    oos = await _guard(_engine(call).set_out_of_service(b.object_type, b.object_id, call.actor, b.reason))
    return {"out_of_service": oos}


@router.post("/alarms/return-to-service", body=ServiceIn, permission=Permission.METER_SERVICE,
             summary="Put an object's alarms back in service")
async def return_to_service(call: ApiCall[ServiceIn]) -> dict[str, Any]:
    b = call.body
    await _guard(_engine(call).return_to_service(b.object_type, b.object_id, call.actor, b.reason))
    return {"object_type": b.object_type, "object_id": b.object_id, "out_of_service": False}


@router.post("/alarms/acknowledge", body=AcknowledgeManyIn, permission=Permission.ALARM_ACK,
             summary="Acknowledge several alarms in one go; each answers for itself")
async def acknowledge_many(call: ApiCall[AcknowledgeManyIn]) -> dict[str, Any]:
    engine = _engine(call)
    outcomes = await _guard(engine.acknowledge_many(call.body.ids, call.actor, call.body.reason))
    results: list[dict[str, Any]] = []
    for alarm_id, outcome in outcomes:
        if isinstance(outcome, Exception):
            error = _refusal(outcome)
            results.append({"id": alarm_id, "ok": False, "status": error.status, "error": error.message})
        else:
            results.append({"id": alarm_id, "ok": True, "alarm": alarm_document(outcome)})
    return {"results": results, "acknowledged": sum(r["ok"] for r in results)}


@router.get("/alarms/deliveries", query=DeliveryQuery, permission=Permission.ALARM_ACK, audit=False,
            summary="The notification delivery log: sent, held, failed, skipped, and why")
async def deliveries(call: ApiCall[Any]) -> dict[str, Any]:
    notifier = call.request.app[CONTEXT].get(NOTIFIER)
    if notifier is None:
        raise ApiError(503, "notifications are not running on this server")
    q: DeliveryQuery = call.request[API_QUERY]
    rows = await notifier.deliveries(alarm_id=q.alarm_id, status=q.status, limit=q.limit)
    if not call.user.sees_contacts:
        rows = [dataclasses.replace(r, recipient=mask_recipient(r.recipient), body="") for r in rows]
    return {"deliveries": rows, "count": len(rows)}


def mask_recipient(value: str) -> str:
    """A recipient as users who may not see contact details get it: ``+86…0000``, ``l…@example.com``."""
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}…@{domain}"
    if value.startswith("room:"):  # a placeholder, not an address
        return value
    return f"{value[:3]}…{value[-4:]}" if len(value) > 8 else "…"


@router.get("/alarms/{alarm_id}", audit=False, summary="One alarm occurrence with its transitions")
async def get_alarm(call: ApiCall[Any]) -> dict[str, Any]:
    engine = _engine(call)
    alarm_id = _alarm_id(call)
    alarm = engine.get(alarm_id) or await engine.find(alarm_id)
    if alarm is None:
        raise ApiError(404, f"no alarm {alarm_id}")
    return {"alarm": alarm_document(alarm), "transitions": await engine.transitions(alarm_id)}


@router.post("/alarms/{alarm_id}/acknowledge", body=AcknowledgeIn, permission=Permission.ALARM_ACK,
             summary="Acknowledge an alarm (the class decides which roles may)")
async def acknowledge(call: ApiCall[AcknowledgeIn]) -> dict[str, Any]:
    alarm = await _guard(_engine(call).acknowledge(_alarm_id(call), call.actor, call.body.reason))
    return {"alarm": alarm_document(alarm)}


@router.post("/alarms/{alarm_id}/confirm", body=ConfirmIn, permission=Permission.ALARM_ACK,
             summary="Confirm an acknowledged alarm: it was dealt with (the roles that may acknowledge it)")
async def confirm(call: ApiCall[ConfirmIn]) -> dict[str, Any]:
    alarm = await _guard(_engine(call).confirm(_alarm_id(call), call.actor, call.body.reason))
    return {"alarm": alarm_document(alarm)}


@router.post("/alarms/{alarm_id}/comment", body=CommentIn, permission=Permission.ALARM_ACK,
             summary="Add a comment to an open alarm")
async def comment(call: ApiCall[CommentIn]) -> dict[str, Any]:
    alarm = await _guard(_engine(call).comment(_alarm_id(call), call.actor, call.body.comment))
    return {"alarm": alarm_document(alarm)}


@router.post("/alarms/{alarm_id}/shelve", body=ShelveIn, permission=Permission.ALARM_SHELVE,
             summary="Shelve a standing alarm for some minutes, with a reason")
async def shelve(call: ApiCall[ShelveIn]) -> dict[str, Any]:
    b = call.body
    alarm = await _guard(_engine(call).shelve(_alarm_id(call), call.actor, b.reason, timedelta(minutes=b.minutes)))
    return {"alarm": alarm_document(alarm)}


@router.post("/alarms/{alarm_id}/unshelve", body=UnshelveIn, permission=Permission.ALARM_SHELVE,
             summary="Return a shelved alarm to the active list before its expiry")
async def unshelve(call: ApiCall[UnshelveIn]) -> dict[str, Any]:
    alarm = await _guard(_engine(call).unshelve(_alarm_id(call), call.actor, call.body.reason))
    return {"alarm": alarm_document(alarm)}


