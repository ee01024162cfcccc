"""Apportionment over the JSON API: rules, previews and runs.

- ``POST /apportionment/rules`` ``{"name", "source": METER or "loss:METER", "method":
  "consumption" | "area" | "equal" | "ratio", "targets": {"rooms": [...]} | {"floor": ID} |
  {"building": ID}, "weights": {ROOM: W} (ratio), "pricing": "tariff" | {"price": "0.85"},
  "settle": "balance" | "bill", "schedule": "monthly" | "daily"}``; ``GET`` lists them, ``PUT
  /apportionment/rules/{rule}`` ``{"active": false}`` stops one;
- ``POST /apportionment/preview`` ``{"rule", "from", "to"}``: the source ``quantity``, the priced
  ``total`` and the ``shares`` (room, quantity, amount, key) without posting anything;
- ``POST /apportionment/runs`` ``{"rule", "period": "2026-11"}``: posts each share (a ledger
  entry of kind ``apportionment``, or a pending bill line) once per rule and period, audited;
  ``GET`` lists the runs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from historian import QueryError, parse_time
from scada.core.inputs import BoundedDecimal, Id64, InputError, Text, parse_id, quote
from scada.topology.apportion import ApportionmentError, RuleSpec
from scada.users.auth import Permission

from .router import API_QUERY, ApiCall, ApiError, ApiRouter, json_response
from .topology import topology_of

__all__ = ["router"]

router = ApiRouter("apportionment")

_ROOM = r"^[A-Za-z0-9_-]{1,64}$"
Price = Annotated[Decimal, BoundedDecimal(18, 6, what="price", description='a price per kWh or m³ as a decimal string, e.g. "0.85"')]
Weight = Annotated[Decimal, BoundedDecimal(18, 6, what="weight", description='a weight as a decimal string, e.g. "2.5"')]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetsIn(_In):
    rooms: list[Annotated[str, Field(pattern=_ROOM)]] | None = Field(default=None, min_length=1, max_length=10_000)
    floor: str | None = Field(default=None, pattern=_ROOM)
    building: str | None = Field(default=None, pattern=_ROOM)

    @model_validator(mode="after")
    def _one(self) -> TargetsIn:
        given = [k for k in ("rooms", "floor", "building") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of rooms, floor or building")
        return self

    def as_dict(self) -> dict[str, Any]:
        if self.rooms is not None:
            return {"rooms": sorted(set(self.rooms))}
        return {"floor": self.floor} if self.floor is not None else {"building": self.building}


class PriceIn(_In):
    price: Price


class RuleIn(_In):
    name: Text = Field(min_length=1, max_length=200)
    source: str = Field(pattern=r"^(loss:)?[A-Za-z0-9_-]{1,64}$", description="a meter id, or loss:<meter id>")
    method: Literal["consumption", "area", "equal", "ratio"]
    targets: TargetsIn
    weights: dict[Annotated[str, Field(pattern=_ROOM)], Weight] | None = Field(default=None, max_length=10_000)
    pricing: Any = Field(description='"tariff" (each target\'s own tariff) or {"price": "0.85"}')
    settle: Literal["balance", "bill"]
    schedule: Literal["monthly", "daily"]

    @field_validator("pricing", mode="before")
    @classmethod
    def _pricing(cls, value: Any) -> Any:
        if value == "tariff":
            return value
        if isinstance(value, dict) and set(value) == {"price"}:
            try:
                return PriceIn.model_validate(value)
            except ValidationError as exc:
                raise ValueError(f"price: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        raise ValueError('expected "tariff" or {"price": "0.85"}')


class RuleUpdateIn(_In):
    active: bool
    reason: Text = Field(default="", max_length=500)


class PreviewIn(_In):
    rule: Id64
    from_: str = Field(alias="from", max_length=64, description="ISO 8601 with an offset, or a date (local midnight)")
    to: str = Field(max_length=64, description="exclusive; ISO 8601 with an offset, or a date (local midnight)")


class RunIn(_In):
    rule: Id64
    period: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$", description='"2026-11" (monthly rule) or "2026-11-05" (daily rule)')


class RunsQuery(_In):
    rule: Id64 | None = None
    limit: int = Field(default=50, ge=1, le=500)


def _error(exc: ApportionmentError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


@router.post("/apportionment/rules", body=RuleIn, permission=Permission.TARIFF_MANAGE, status=201,
             summary="Create an apportionment rule")
async def create_rule(call: ApiCall[RuleIn]) -> dict[str, Any]:
    topology = topology_of(call)
    b = call.body
    spec = RuleSpec(
        b.name, b.source, b.method, b.targets.as_dict(),
        dict(b.weights) if b.weights else None,
        "tariff" if b.pricing == "tariff" else b.pricing.price,
        b.settle, b.schedule,
    )
    try:
        view = await topology.apportionment.create_rule(spec, call.actor)
    except ApportionmentError as exc:
        raise _error(exc) from None
    return view.as_json()


@router.get("/apportionment/rules", audit=False, summary="The apportionment rules")
async def list_rules(call: ApiCall[Any]) -> dict[str, Any]:
    topology = topology_of(call)
    return {"rules": [r.as_json() for r in await topology.apportionment.rules()]}


@router.put("/apportionment/rules/{rule}", body=RuleUpdateIn, permission=Permission.TARIFF_MANAGE,
            summary="Start or stop an apportionment rule")
async def update_rule(call: ApiCall[RuleUpdateIn]) -> dict[str, Any]:
    topology = topology_of(call)
    try:
        rule_id = parse_id(call.params["rule"], "rule")
    except InputError:
        raise ApiError(404, f"unknown rule {quote(call.params['rule'])}", field="rule") from None
    try:
        view = await topology.apportionment.set_active(rule_id, call.body.active, call.actor, call.body.reason)
    except ApportionmentError as exc:
        raise _error(exc) from None
    return view.as_json()


@router.post("/apportionment/preview", body=PreviewIn, audit=False,
             summary="A rule's source quantity, priced total and shares over a period, posting nothing")
async def preview(call: ApiCall[PreviewIn]) -> dict[str, Any]:
    topology = topology_of(call)
    b = call.body
    try:
        start = parse_time(b.from_, topology.tz, "from")
        end = parse_time(b.to, topology.tz, "to")
    except QueryError as exc:
        raise ApiError(422, str(exc), field=exc.param) from None
    try:
        result = await topology.apportionment.preview(b.rule, start, end)
    except ApportionmentError as exc:
        raise _error(exc) from None
    return result.as_json(topology.minor_units, topology.tz)


@router.post("/apportionment/runs", body=RunIn, permission=Permission.ACCOUNT_MANAGE, status=201,
             summary="Post a rule's shares for a period, once (a second run answers the first)")
async def run(call: ApiCall[RunIn]) -> Any:
    topology = topology_of(call)
    try:
        result = await topology.apportionment.run(call.body.rule, call.body.period, call.actor)
    except ApportionmentError as exc:
        raise _error(exc) from None
    body = {"run": result.run_id, "rule": result.rule_id, "period": result.period, "replayed": result.replayed, **result.detail}
    return json_response(body, status=200 if result.replayed else 201)


@router.get("/apportionment/runs", query=RunsQuery, audit=False, summary="Apportionment runs, newest first")
async def list_runs(call: ApiCall[Any]) -> dict[str, Any]:
    topology = topology_of(call)
    q = call.request[API_QUERY]
    assert isinstance(q, RunsQuery)
    return {"runs": await topology.apportionment.runs(q.rule, q.limit)}
