"""Tariffs over the JSON API: create, list, show, add a version (a price change from its
effective time), assign to rooms, and quote a consumption without touching any account."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.core.inputs import AwareDateTime, BoundedDecimal
from scada.prepaid.charges import days_in_month
from scada.prepaid.errors import PrepaidError
from scada.prepaid.money import format_minor
from scada.prepaid.pricing import (
    PricingError,
    TariffTimeline,
    cycle_key,
    price_consumption,
    prorata_minor,
    round_fraction,
)
from scada.prepaid.tariff_definition import MAX_WHOLE_DIGITS
from scada.prepaid.tariff_store import TariffError, parse_definition
from scada.users.auth import Permission
from tags import utcnow

from .accounts import engine_of
from .router import ApiCall, ApiError, ApiRouter

__all__ = ["router"]

router = ApiRouter("tariffs")

QuantityIn = Annotated[Decimal, BoundedDecimal(MAX_WHOLE_DIGITS + 6, 6, what="quantity", description='a quantity as a decimal string, e.g. "12.5"')]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TariffIn(_In):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    commodity: Literal["electricity", "water"]
    definition: dict[str, Any] = Field(description="flat 'price' or 'tou', optional 'tiers' and 'two_part' (see config/README.md)")
    effective_from: AwareDateTime | None = None
    reason: str = Field(default="", max_length=500)


class VersionIn(_In):
    definition: dict[str, Any]
    effective_from: AwareDateTime | None = None
    retroactive: bool = Field(default=False, description="takes effect in the past (电费退补); billed consumption is re-priced by an approved adjustment")
    reason: str = Field(default="", max_length=500)


class AssignIn(_In):
    rooms: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=10_000)
    reason: str = Field(default="", max_length=500)


class QuoteIn(_In):
    at: AwareDateTime | None = Field(default=None, description="the moment whose tariff version applies (default now)")
    consumption: dict[str, QuantityIn] | None = Field(default=None, description="quantity per TOU period, e.g. {\"peak\": \"10\"}")
    quantity: QuantityIn | None = Field(default=None, description="a total quantity, split by time between start and end")
    start: AwareDateTime | None = None
    end: AwareDateTime | None = None
    cycle_to_date: QuantityIn | None = Field(default=None, description="consumption already in the tier cycle")
    capacity_kva: QuantityIn | None = None
    demand_kw: QuantityIn | None = None
    days: int | None = Field(default=None, ge=1, le=31, description="charge the two-part charge for this many days (pro rata)")


def _tariff_failed(exc: TariffError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


@router.get("/tariffs", summary="Every tariff with its versions")
async def list_tariffs(call: ApiCall[Any]) -> dict[str, Any]:
    engine = engine_of(call)
    now = utcnow()
    return {"tariffs": [t.as_json(now) for t in await engine.tariffs.list()]}


@router.get("/tariffs/{id}", summary="One tariff with its versions")
async def get_tariff(call: ApiCall[Any]) -> dict[str, Any]:
    engine = engine_of(call)
    info = await engine.tariffs.get(call.params["id"])
    if info is None:
        raise ApiError(404, f"no tariff {call.params['id']!r}")
    return info.as_json(utcnow())


@router.post("/tariffs", body=TariffIn, permission=Permission.TARIFF_MANAGE, status=201,
             summary="Create a tariff with its first version")
async def create_tariff(call: ApiCall[TariffIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    try:
        definition = parse_definition(b.definition)
        info = await engine.tariffs.create(b.id, b.name, b.commodity, definition, call.actor, effective_from=b.effective_from, reason=b.reason)
    except TariffError as exc:
        raise _tariff_failed(exc) from None
    return info.as_json(utcnow())


@router.post("/tariffs/{id}/versions", body=VersionIn, permission=Permission.TARIFF_MANAGE, status=201,
             summary="Add a version (a price change) taking effect at effective_from (default now; in the past only when retroactive)")
async def add_version(call: ApiCall[VersionIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    try:
        version = await engine.tariffs.add_version(call.params["id"], parse_definition(b.definition), call.actor,
                                                   effective_from=b.effective_from, reason=b.reason, retroactive=b.retroactive)
    except TariffError as exc:
        raise _tariff_failed(exc) from None
    return {"tariff": version.tariff_id, "version": version.version, "effective_from": version.effective_from.isoformat(),
            "kind": version.definition.kind, "definition": version.definition.to_json()}


@router.post("/tariffs/{id}/assign", body=AssignIn, permission=Permission.ACCOUNT_MANAGE,
             summary="Assign the tariff to the open accounts of rooms (for the tariff's commodity)")
async def assign(call: ApiCall[AssignIn]) -> dict[str, Any]:
    engine = engine_of(call)
    try:
        views = await engine.assign_tariff(call.params["id"], call.body.rooms, actor=call.actor, reason=call.body.reason)
    except PrepaidError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    return {"tariff": call.params["id"], "accounts": [v.as_json(engine.minor_units, contact=call.user.sees_contacts) for v in views]}


@router.post("/tariffs/{id}/quote", body=QuoteIn, summary="Price a consumption with the tariff, without touching any account")
async def quote(call: ApiCall[QuoteIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    info = await engine.tariffs.get(call.params["id"])
    if info is None:
        raise ApiError(404, f"no tariff {call.params['id']!r}")
    timeline = TariffTimeline(info.versions)
    at = b.at or utcnow()
    if (b.consumption is None) == (b.quantity is None) and b.capacity_kva is None and b.demand_kw is None:
        raise ApiError(422, "give 'consumption' (per period) or 'quantity' (with 'start' and 'end'), or a capacity/demand", field="consumption")
    if b.consumption is not None and b.quantity is not None:
        raise ApiError(422, "give either 'consumption' or 'quantity', not both", field="quantity")
    lines: list[dict[str, Any]] = []
    energy_total = Decimal(0)
    version = timeline.at(at)
    usage_key = None
    if b.consumption is not None or b.quantity is not None:
        if b.consumption is not None:
            periods = dict(b.consumption)
            if not periods:
                raise ApiError(422, "consumption: give at least one period", field="consumption")
            known = set(version.definition.periods)
            for name in periods:
                if version.definition.tou is None and name != "total":
                    raise ApiError(422, f"consumption.{name}: a flat tariff takes {{\"total\": …}}", field=f"consumption.{name}")
                if version.definition.tou is not None and name not in known:
                    raise ApiError(422, f"consumption.{name}: not a period of this tariff ({', '.join(sorted(known))})", field=f"consumption.{name}")
            quantity = sum(periods.values(), Decimal(0))
            start = end = at
            registers = periods if version.definition.tou is not None else None
        else:
            quantity = b.quantity
            start, end = b.start or at, b.end or at
            if end < start:
                raise ApiError(422, "end: before start", field="end")
            if end - start > dt.timedelta(days=400):
                raise ApiError(422, "end: at most 400 days after start", field="end")
            registers = None
        usage: dict[str, Decimal] = {}
        tiers = timeline.at(start).definition.tiers
        if tiers is not None and b.cycle_to_date is not None:
            usage_key = cycle_key(tiers.cycle, start.astimezone(engine.tz).date())
            usage[usage_key] = b.cycle_to_date
        try:
            q = price_consumption(timeline, engine.tz, start, end, quantity, registers=registers, cycle_usage=usage)
        except PricingError as exc:
            raise ApiError(422, str(exc)) from None
        lines = [ln.as_json() for ln in q.lines]
        energy_total = q.total
    fixed: list[dict[str, Any]] = []
    fixed_minor = 0
    tp = version.definition.two_part
    for field, value in (("capacity_kva", b.capacity_kva), ("demand_kw", b.demand_kw)):
        if value is None:
            continue
        amount = value
        basis = "capacity" if field == "capacity_kva" else "demand"
        if tp is None or tp.basis != basis:
            raise ApiError(422, f"{field}: this tariff has no {basis} charge", field=field)
        monthly = tp.price * amount
        line: dict[str, Any] = {"kind": basis, "version": version.version, "quantity": format(amount, "f"),
                                "unit_price": format(tp.price, "f"), "monthly": format(monthly, "f"), "charging": tp.charging}
        if b.days is not None:
            local = at.astimezone(engine.tz).date()
            dim = days_in_month(local)
            days = min(b.days, dim)
            minor = sum(prorata_minor(monthly, d, dim, engine.minor_units, engine.rounding.mode) for d in range(1, days + 1))
            line["days"] = days
        else:
            minor = round_fraction(Fraction(monthly), engine.minor_units, engine.rounding.mode)
        line["amount"] = format_minor(minor, engine.minor_units)
        fixed_minor += minor
        fixed.append(line)
    energy_minor = engine.rounding.to_minor(energy_total)
    return {
        "tariff": info.id, "version": version.version, "kind": version.definition.kind, "currency": engine.currency,
        "lines": lines, "energy_total": format(energy_total, "f"), "energy_amount": format_minor(energy_minor, engine.minor_units),
        "fixed": fixed, "total": format_minor(energy_minor + fixed_minor, engine.minor_units),
        **({"cycle": usage_key} if usage_key else {}),
    }
