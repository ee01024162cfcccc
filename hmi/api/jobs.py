"""Batch and scheduled jobs, pre-set accounts, meter settings and tenant messages over the JSON API.

``POST /jobs`` ``{"kind", "targets", "params", "run_at": ISO or null, "repeat": cron or null}``;
``GET /jobs``, ``GET /jobs/{id}`` (state, total / done / failed counts, each item with its
target, state and detail), ``POST /jobs/{id}/cancel``, ``POST /jobs/{id}/approve`` (a supervisor,
not the creator), ``POST /jobs/preview`` (the count of targets before confirming).
``POST /accounts/import`` (CSV or XLSX; ``?dry_run=true`` reports every bad row and creates
nothing), ``GET /accounts/prepared``, ``POST /accounts/prepared/{id}/withdraw`` (one that will not
be opened); ``GET /meters/{meter}/settings`` (the TOU table as read
back, the clock drift; ``?read=true`` reads them now); ``GET /messages`` (the delivery log of
tenant messages).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.alarms.component import NOTIFIER
from scada.core.inputs import AwareDateTime, BoundedDecimal, Date, Text
from scada.operations.component import JOBS
from scada.operations.messages import MESSAGE_EVENTS
from scada.operations.prepared import XLSX_TYPE, ImportFormatError, PreparedStateError
from scada.operations.service import JobError, JobService
from scada.operations.targets import TargetsIn
from scada.site.component import ASSETS
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import API_QUERY, ApiCall, ApiError, ApiRouter, json_response

__all__ = ["router"]

router = ApiRouter("jobs")

MAX_UPLOAD = 2 * 1024 * 1024


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


Kind = Literal["relay", "recharge", "assign_tariff", "set_thresholds", "set_credit", "message", "tou_download", "clock_sync",
               "meter_params", "read_now", "open"]
# money is read by parse_money (the bounds of parse_decimal, then the currency's decimals and the
# configured maximum), which names the field; the schema says a decimal string
Amount = Annotated[Any, Field(description='an amount as a decimal string, e.g. "100.00"', json_schema_extra={"type": "string"})]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# a meter parameter's value (meter_params: {"load_limit": "5.5"}); the block's own range and
# decimals are checked against the meter's profile when the item runs
BlockValue = Annotated[Decimal, BoundedDecimal(12, 6, negative=True, what="value")]


class ThresholdIn(_In):
    level: int = Field(ge=1, le=3)
    money: Amount | None = None
    days: Amount | None = None


class ParamsIn(BaseModel):
    """A job's ``params``: the fields its kind takes (another kind's field is refused by the
    kind, naming it); any other name is a meter parameter block of ``meter_params``."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, BlockValue] = Field(init=False)  # type: ignore[assignment]
    action: Literal["connect", "disconnect"] | None = Field(default=None, description="relay")
    amount: Amount | None = Field(default=None, description="recharge")
    tariff: Ident | None = Field(default=None, description="assign_tariff, tou_download")
    at: Date | None = Field(default=None, description="tou_download: the day whose table is downloaded")
    thresholds: list[ThresholdIn] | None = Field(default=None, min_length=1, max_length=3, description="set_thresholds")
    credit_limit: Amount | None = Field(default=None, description="set_credit")
    template: Literal["reminder", "notice"] | None = Field(default=None, description="message")
    text: Text | None = Field(default=None, max_length=500, description="message")
    max_drift_s: Annotated[Decimal, BoundedDecimal(8, 3, what="seconds")] | None = Field(default=None, description="clock_sync")

    def as_dict(self) -> dict[str, Any]:
        """The fields given (exact decimals stay Decimal, dates ISO strings)."""
        out = self.model_dump(exclude_unset=True)
        if isinstance(out.get("at"), dt.date):
            out["at"] = out["at"].isoformat()
        return out


class JobIn(_In):
    kind: Kind
    targets: TargetsIn
    params: ParamsIn = Field(default_factory=ParamsIn, description="the kind's parameters, e.g. {\"action\": \"disconnect\"}")
    run_at: AwareDateTime | None = Field(default=None, description="when to run (ISO 8601 with an offset); null: now")
    repeat: Text | None = Field(default=None, max_length=120, description="a cron expression (site time) to run it again")
    reason: Text = Field(default="", max_length=500)


class PreviewIn(_In):
    kind: Kind
    targets: TargetsIn
    params: ParamsIn = Field(default_factory=ParamsIn)


class ReasonIn(_In):
    reason: Text = Field(default="", max_length=500)


class JobsQuery(_In):
    state: Literal["scheduled", "running", "done", "failed", "cancelled"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class ImportQuery(_In):
    dry_run: Literal["true", "false", "1", "0"] = "false"


class SettingsQuery(_In):
    read: Literal["true", "false", "1", "0"] = "false"


class MessagesQuery(_In):
    status: Literal["pending", "held", "sent", "failed", "skipped", "cancelled"] | None = None
    limit: int = Field(default=200, ge=1, le=1000)


def jobs_of(call: ApiCall[Any]) -> JobService:
    service = call.request.app[CONTEXT].get(JOBS)
    if service is None:
        raise ApiError(503, "operations are not running on this server")
    return service


def _failed(exc: JobError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


def _job_id(call: ApiCall[Any]) -> int:
    text = call.params["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no job {text!r}")
    return int(text)


@router.post("/jobs", body=JobIn, status=201, summary="Create a batch job: run now, at run_at, or on a cron schedule")
async def create_job(call: ApiCall[JobIn]) -> dict[str, Any]:
    b = call.body
    try:
        view = await jobs_of(call).create(b.kind, b.targets, b.params.as_dict(), user=call.user, actor=call.actor, run_at=b.run_at,
                                          repeat=b.repeat, reason=b.reason)
    except JobError as exc:
        raise _failed(exc) from None
    return view.as_json()


@router.post("/jobs/preview", body=PreviewIn, audit=False, summary="What a job would act on now: the count of its targets")
async def preview_job(call: ApiCall[PreviewIn]) -> dict[str, Any]:
    b = call.body
    try:
        return await jobs_of(call).preview(b.kind, b.targets, b.params.as_dict(), call.user)
    except JobError as exc:
        raise _failed(exc) from None


@router.get("/jobs", query=JobsQuery, audit=False, summary="Jobs, newest first, with their counts")
async def list_jobs(call: ApiCall[Any]) -> dict[str, Any]:
    q: JobsQuery = call.request[API_QUERY]  # type: ignore[assignment]
    return {"jobs": [j.as_json() for j in await jobs_of(call).list(state=q.state, limit=q.limit)]}


@router.get("/jobs/{id}", audit=False, summary="A job: its state, counts and every item with its target, state and detail")
async def get_job(call: ApiCall[Any]) -> dict[str, Any]:
    try:
        return (await jobs_of(call).get(_job_id(call))).as_json()
    except JobError as exc:
        raise _failed(exc) from None


@router.post("/jobs/{id}/cancel", body=ReasonIn, summary="Cancel a scheduled or running job (items under way finish)")
async def cancel_job(call: ApiCall[ReasonIn]) -> dict[str, Any]:
    try:
        return (await jobs_of(call).cancel(_job_id(call), call.user, call.actor, call.body.reason)).as_json()
    except JobError as exc:
        raise _failed(exc) from None


@router.post("/jobs/{id}/approve", body=ReasonIn, permission=Permission.APPROVE,
             summary="Approve a job that waits for a supervisor (another user than its creator)")
async def approve_job(call: ApiCall[ReasonIn]) -> dict[str, Any]:
    try:
        return (await jobs_of(call).approve(_job_id(call), call.user, call.actor, call.body.reason)).as_json()
    except JobError as exc:
        raise _failed(exc) from None


async def _upload(request: web.Request) -> tuple[bytes, str, str]:
    """The uploaded file: a raw CSV/XLSX body, or the ``file`` field of a multipart form."""
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) == "file":
                data = bytearray()
                while chunk := await part.read_chunk():  # type: ignore[union-attr]
                    data += chunk
                    if len(data) > MAX_UPLOAD:
                        raise ApiError(413, f"file: larger than {MAX_UPLOAD // 1024} KiB", field="file")
                name = getattr(part, "filename", None) or "upload"
                ctype = part.headers.get("Content-Type", "")
                return bytes(data), ctype if ctype != "application/octet-stream" else "", name
        raise ApiError(422, "file: missing (a CSV or XLSX file in the form field 'file')", field="file")
    if request.content_type not in ("text/csv", "text/plain", XLSX_TYPE):
        raise ApiError(415, f"expected a CSV (text/csv) or XLSX ({XLSX_TYPE}) body, got {request.content_type or 'none'}")
    data = await request.read()
    if len(data) > MAX_UPLOAD:
        raise ApiError(413, f"body: larger than {MAX_UPLOAD // 1024} KiB")
    return data, request.content_type, request.headers.get("X-Filename", "upload")[:100]


@router.post("/accounts/import", query=ImportQuery, permission=Permission.ACCOUNT_MANAGE,
             summary="Import pre-set accounts from CSV or XLSX (?dry_run=true: report every bad row, create nothing)")
async def import_accounts(call: ApiCall[Any]) -> Any:
    q: ImportQuery = call.request[API_QUERY]  # type: ignore[assignment]
    prepared = jobs_of(call).ctx.prepared
    if prepared is None:
        raise ApiError(503, "the prepaid engine is not running")
    data, ctype, name = await _upload(call.request)
    dry_run = q.dry_run in ("true", "1")
    try:
        result = await prepared.import_file(data, ctype, dry_run=dry_run, actor=call.actor, source=name)
    except ImportFormatError as exc:
        raise ApiError(422, str(exc), field="file") from None
    body = result.as_json()
    if result.errors and not dry_run:
        return json_response({"error": f"{len({e.line for e in result.errors})} of {result.rows} rows are bad: nothing was created",
                              **body}, status=422)
    return json_response(body, status=200 if dry_run else 201)


@router.get("/accounts/prepared", audit=False, permission=Permission.ACCOUNT_MANAGE, summary="Accounts prepared and not yet opened")
async def prepared_accounts(call: ApiCall[Any]) -> dict[str, Any]:
    prepared = jobs_of(call).ctx.prepared
    if prepared is None:
        raise ApiError(503, "the prepaid engine is not running")
    return {"accounts": await prepared.list()}


@router.post("/accounts/prepared/{id}/withdraw", body=ReasonIn, permission=Permission.ACCOUNT_MANAGE,
             summary="Withdraw a prepared account that will not be opened: its room may be prepared again")
async def withdraw_prepared(call: ApiCall[ReasonIn]) -> dict[str, Any]:
    prepared = jobs_of(call).ctx.prepared
    if prepared is None:
        raise ApiError(503, "the prepaid engine is not running")
    text = call.params["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no prepared account {text!r}")
    try:
        return await prepared.withdraw(int(text), call.actor, call.body.reason)
    except PreparedStateError as exc:
        raise ApiError(exc.status, exc.message) from None


@router.get("/meters/{meter}/settings", query=SettingsQuery, audit=False,
            summary="A meter's settings: its TOU table as read back and its clock drift (?read=true reads them now)")
async def meter_settings(call: ApiCall[Any]) -> dict[str, Any]:
    q: SettingsQuery = call.request[API_QUERY]  # type: ignore[assignment]
    meters = jobs_of(call).ctx.meters
    meter = call.request.app[CONTEXT][ASSETS].snapshot.meters.get(call.params["meter"])
    if meter is None:
        raise ApiError(404, f"unknown meter {call.params['meter']!r}", field="meter")
    if meters is None:
        raise ApiError(503, "meter settings need the Modbus poller")
    return await meters.settings(meter, read=q.read in ("true", "1"))


@router.get("/messages", query=MessagesQuery, audit=False, permission=Permission.ACCOUNT_MANAGE,
            summary="The delivery log of messages to tenants (queued, sent, failed with why)")
async def messages(call: ApiCall[Any]) -> dict[str, Any]:
    q: MessagesQuery = call.request[API_QUERY]  # type: ignore[assignment]
    notifier = call.request.app[CONTEXT].get(NOTIFIER)
    if notifier is None:
        raise ApiError(503, "notifications are not running")
    rows = await notifier.deliveries(status=q.status, limit=q.limit, events=MESSAGE_EVENTS)
    return {"messages": [
        {"id": d.id, "created_at": d.created_at, "event": d.event, "route": d.route, "channel": d.channel, "room": d.alarm_key.removeprefix("room:"),
         "recipient": d.recipient, "language": d.language, "subject": d.subject, "body": d.body, "status": d.status,
         "reason": d.reason, "attempts": d.attempts, "next_attempt_at": d.next_attempt_at, "sent_at": d.sent_at}
        for d in rows
    ]}
