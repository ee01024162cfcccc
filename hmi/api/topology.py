"""The meter tree and manual readings over the JSON API.

- ``GET /meters``: every meter with its ``id``, ``kind``, ``role`` (tenant, common, utility,
  virtual), room, ``parent`` and ``state`` (online, offline, unknown, config_error, manual,
  virtual, inactive), its children and newest reading;
- ``PUT /meters/{meter}`` ``{"parent": ID}`` (null: no parent; optional ``from``, ``reason``):
  a new parent from that moment on, audited; the past keeps its tree;
- ``POST /meters/{meter}/readings`` ``{"value", "ts", "reason"}`` (a reset: ``"reset": true``
  with ``final``/``initial``): a reading of a meter read by hand, judged against the previous
  one; ``GET`` lists them;
- ``POST /readings/import`` ``{"csv", "dry_run", "reason"}``: many readings at once, all or none;
  every bad row is named by line, column and why;
- ``GET /losses?from=&to=&meter=`` (``format=csv``, ``by=day``): for each meter with children,
  its consumption, its children's, the loss in kWh (m³) and per cent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from historian import BackendError, QueryError, parse_time
from scada.core.inputs import AwareDateTime, BoundedDecimal, Text
from scada.polling.component import MODBUS
from scada.prepaid.tariff_definition import MAX_WHOLE_DIGITS
from scada.site.assets import RegistryError
from scada.topology.readings import READING_DECIMALS, REASON_MAX, ReadingError, ReadingInput, parse_reading_time
from scada.topology.service import TOPOLOGY, Topology
from scada.users.auth import Permission

from ..keys import CONTEXT
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["router", "topology_of"]

router = ApiRouter("topology")

ReadingValue = Annotated[Decimal, BoundedDecimal(
    MAX_WHOLE_DIGITS + READING_DECIMALS, READING_DECIMALS, what="reading",
    description='a register reading as a decimal string, e.g. "1234.56"',
)]
MeterId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetersQuery(_In):
    building: MeterId | None = Field(default=None, description="building id")
    role: Literal["tenant", "common", "utility", "virtual"] | None = Field(default=None, description="meter role")
    kind: Literal["electricity", "water"] | None = Field(default=None, description="meter kind")


class ParentIn(_In):
    parent: MeterId | None = Field(description="the parent meter's id, or null for none")
    from_: AwareDateTime | None = Field(default=None, alias="from", description="when it takes effect (default now)")
    reason: Text = Field(default="", max_length=REASON_MAX)


class ReadingIn(_In):
    value: ReadingValue
    ts: str = Field(min_length=1, max_length=64, description="ISO 8601 with an offset; without one: site time (1970 to 2200)")
    reason: Text = Field(min_length=1, max_length=REASON_MAX)
    reset: bool = False
    final: ReadingValue | None = None
    initial: ReadingValue | None = None


class ImportIn(_In):
    csv: Text = Field(min_length=1, max_length=900_000, description="meter,ts,value[,reason,reset,final,initial]")
    dry_run: bool = False
    reason: Text = Field(default="", max_length=REASON_MAX)


class ReadingsQuery(_In):
    limit: int = Field(default=100, ge=1, le=1000)


class LossesQuery(_In):
    from_: str = Field(alias="from", max_length=64, description="ISO 8601 with an offset, or a date (local midnight)")
    to: str = Field(max_length=64, description="exclusive; ISO 8601 with an offset, or a date (local midnight)")
    meter: MeterId | None = Field(default=None, description="one parent meter (default: every meter with children)")
    by: Literal["period", "day"] = Field(default="period", description="one row per meter for the period, or per day")
    format: Literal["json", "csv"] = "json"


MAX_LOSS_DAYS = 400
MAX_LOSS_DAYS_BY_DAY = 92


def topology_of(call: ApiCall[Any]) -> Topology:
    topology = call.request.app[CONTEXT].get(TOPOLOGY)
    if topology is None:
        raise ApiError(503, "the meter topology is disabled in this server's configuration")
    return topology


def _device_state(call: ApiCall[Any]) -> Any:
    poller = call.request.app[CONTEXT].get(MODBUS)
    if poller is None:
        return None

    def state(meter_id: str) -> str | None:
        stats = poller.device_stats(meter_id)
        return stats[0].state if stats else None

    return state


@router.get("/meters", query=MetersQuery, audit=False, summary="Every meter with its role, room, parent and state")
async def list_meters(call: ApiCall[Any]) -> dict[str, Any]:
    topology = topology_of(call)
    q = call.request[API_QUERY]
    assert isinstance(q, MetersQuery)
    state = _device_state(call)
    meters = topology.meters_json([
        m for m in sorted(topology.snapshot.meters.values(), key=lambda m: (m.building_id, m.id))
        if (q.building is None or m.building_id == q.building) and (q.role is None or m.role == q.role)
        and (q.kind is None or m.kind == q.kind)
    ], state)
    return {"meters": meters, "total": len(meters)}


@router.put("/meters/{meter}", body=ParentIn, permission=Permission.SITE_MANAGE,
            summary="Change a meter's parent from now (or from a given moment) on; the past keeps its tree")
async def put_meter(call: ApiCall[ParentIn]) -> dict[str, Any]:
    topology = topology_of(call)
    b = call.body
    try:
        await topology.set_parent(call.params["meter"], b.parent, call.actor, valid_from=b.from_, reason=b.reason)
    except RegistryError as exc:
        raise ApiError(exc.status, str(exc), field=exc.field) from None
    meter = topology.snapshot.meters[call.params["meter"]]
    return topology.meter_json(meter, _device_state(call))


@router.post("/meters/{meter}/readings", body=ReadingIn, permission=Permission.METER_SERVICE, status=201,
             summary="Enter a reading of a meter read by hand (stored with source = manual)")
async def post_reading(call: ApiCall[ReadingIn]) -> dict[str, Any]:
    topology = topology_of(call)
    b = call.body
    try:
        ts = parse_reading_time(b.ts, topology.tz)
    except ValueError as exc:
        raise ApiError(422, f"ts: {exc}", field="ts") from None
    reading = ReadingInput(call.params["meter"], b.value, ts, b.reason, b.reset, b.final, b.initial)
    try:
        view = await topology.readings.enter(reading, call.actor)
    except ReadingError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    return view.as_json()


@router.get("/meters/{meter}/readings", query=ReadingsQuery, audit=False, summary="A manual meter's readings, newest first")
async def get_readings(call: ApiCall[Any]) -> dict[str, Any]:
    topology = topology_of(call)
    meter_id = call.params["meter"]
    if meter_id not in topology.snapshot.meters:
        raise ApiError(404, f"unknown meter {meter_id!r}", field="meter")
    q = call.request[API_QUERY]
    assert isinstance(q, ReadingsQuery)
    return {"meter": meter_id, "readings": [r.as_json() for r in await topology.readings.readings(meter_id, limit=q.limit)]}


@router.post("/readings/import", body=ImportIn, permission=Permission.METER_SERVICE,
             summary="Import manual readings from CSV (all or none); a dry run names every bad row")
async def import_readings(call: ApiCall[ImportIn]) -> dict[str, Any]:
    topology = topology_of(call)
    b = call.body
    report = await topology.readings.import_csv(b.csv, call.actor, dry_run=b.dry_run, reason=b.reason)
    if report.problems and not b.dry_run:
        lines = len({p.line for p in report.problems})
        raise ApiError(422, f"csv: {lines} bad row(s); nothing was stored", field="csv", **report.as_json())
    return report.as_json()


LOSS_CSV_COLUMNS = ("meter", "from", "to", "unit", "consumption", "children_consumption", "loss", "loss_pct", "estimated")


@router.get("/losses", query=LossesQuery, audit=False,
            summary="Losses of the meters with children: consumption, children's, loss in kWh/m³ and per cent (JSON or CSV)")
async def get_losses(call: ApiCall[Any]) -> Any:
    topology = topology_of(call)
    q = call.request[API_QUERY]
    assert isinstance(q, LossesQuery)
    try:
        start = parse_time(q.from_, topology.tz, "from")
        end = parse_time(q.to, topology.tz, "to")
    except QueryError as exc:
        raise ApiError(422, str(exc), field=exc.param) from None
    if end <= start:
        raise ApiError(422, "to: must be after from", field="to")
    limit = MAX_LOSS_DAYS_BY_DAY if q.by == "day" else MAX_LOSS_DAYS
    if end - start > dt.timedelta(days=limit):
        raise ApiError(422, f"to: at most {limit} days from 'from'" + (" by day" if q.by == "day" else ""), field="to")
    if q.meter is not None and q.meter not in topology.snapshot.meters:
        raise ApiError(404, f"unknown meter {q.meter!r}", field="meter")
    try:
        if q.by == "day":
            first = start.astimezone(topology.tz).date()
            last = (end - dt.timedelta(microseconds=1)).astimezone(topology.tz).date()
            rows = await topology.losses_by_day(first, last, q.meter)
        else:
            rows = await topology.losses(start, end, q.meter)
    except BackendError as exc:
        raise ApiError(503, f"historian backend unavailable: {exc}") from None
    items = [r.as_json(topology.tz) for r in rows]
    if q.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(LOSS_CSV_COLUMNS)
        for item in items:
            writer.writerow(["" if item[c] is None else item[c] for c in LOSS_CSV_COLUMNS])
        name = f"losses-{start.astimezone(topology.tz).date()}-{end.astimezone(topology.tz).date()}.csv"
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return {"from": start.astimezone(topology.tz).isoformat(), "to": end.astimezone(topology.tz).isoformat(), "by": q.by, "losses": items}
