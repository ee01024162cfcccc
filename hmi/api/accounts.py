"""Prepaid accounts over the JSON API: open, recharge, refund, close, ledger, reversals, settings,
emergency credit, operator reconnect, register review and meter replacement.

Amounts are decimal strings (``"100.00"``); JSON numbers are read exactly (never as binary
floats). Negative, zero where not allowed, NaN, infinite, more decimals than the currency has,
or larger than ``prepaid.max_amount`` is a 422 naming the field.

Four eyes (``[approvals]``): a refund above a limit, a reversal that credits an account, an
opening balance, a credit limit or emergency credit above a limit, and protection answer
``202 Accepted`` with the pending approval request instead of acting (see ``approvals``).
Tenants' contact details are in an account's JSON only for users who manage accounts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.approvals.service import ApprovalView
from scada.core.inputs import BoundedDecimal, InputError, Phone, Text, parse_id, quote
from scada.prepaid.accounts import AccountSettings, OpenRequest, PostResult
from scada.prepaid.approvals import PREPAID_APPROVALS, PrepaidApprovals
from scada.prepaid.engine import PREPAID, PrepaidEngine
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import Contact
from scada.prepaid.levels import parse_thresholds
from scada.prepaid.money import MONEY_WHOLE_DIGITS, MoneyError, parse_money
from scada.site.assets import RegistryError
from scada.tenants.component import TENANTS
from scada.tenants.service import TenantError
from scada.users.auth import Permission

from ..keys import CONTEXT
from .approvals import pending
from .router import ApiCall, ApiError, ApiRouter

# the answer of an action the four-eyes rule holds back, in the OpenAPI document
SENT_FOR_APPROVAL = {202: "sent for approval: the pending approval request (Location: /api/v1/approvals/{id}); nothing happened yet"}

__all__ = ["router"]

router = ApiRouter("accounts")

# Syntax and size are checked by the model (bounded before anything is computed); the
# currency's decimals, sign, zero and prepaid.max_amount by parse_money in the handler.
Amount = Annotated[Decimal, BoundedDecimal(MONEY_WHOLE_DIGITS + 4, 4, what="amount", description='an amount as a decimal string, e.g. "100.00"')]
SignedAmount = Annotated[Decimal, BoundedDecimal(MONEY_WHOLE_DIGITS + 4, 4, negative=True, what="amount")]
ReadingIn = Annotated[Decimal, BoundedDecimal(24, 8, what="reading", description='a register reading as a decimal string, e.g. "1234.56"')]
QuantityIn = Annotated[Decimal, BoundedDecimal(12, 3, what="quantity")]  # kVA, kW
DaysIn = Annotated[Decimal, BoundedDecimal(8, 4, what="number of days")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(_In):
    name: Text = Field(default="", max_length=200)
    phone: Phone | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=255)
    language: Literal["en", "zh-CN"] = "en"


class TariffsIn(_In):
    electricity: str | None = None
    water: str | None = None


class ThresholdIn(_In):
    level: int = Field(ge=1, le=3)
    money: SignedAmount | None = None
    days: DaysIn | None = None


class SettingsIn(_In):
    credit_limit: Amount | None = None
    thresholds: list[ThresholdIn] | None = Field(default=None, max_length=3)
    contact: ContactIn | None = None
    protected: bool | None = None
    friendly_credit: bool | None = None
    auto_reconnect: bool | None = None
    emergency_credit: Amount | None = None
    capacity_kva: QuantityIn | None = None
    demand_kw: QuantityIn | None = None
    mode: Literal["prepaid", "postpaid"] | None = None
    reason: str = Field(default="", max_length=500)


class OpenIn(SettingsIn):
    tariffs: TariffsIn
    opening_balance: Amount = Decimal(0)
    readings: dict[str, ReadingIn] | None = None
    # the tenant's PIN for the tenant portal (set once the account is open; tenants.pin_digits digits)
    pin: str | None = Field(default=None, min_length=4, max_length=12, pattern=r"^[0-9]+$")


class RechargeIn(_In):
    amount: Amount
    reference: str = Field(min_length=1, max_length=128)
    channel: str = Field(default="cash", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    reason: str = Field(default="", max_length=500)


class RefundIn(_In):
    amount: Amount
    reason: str = Field(min_length=1, max_length=500)
    channel: str = Field(default="cash", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    reference: str | None = Field(default=None, min_length=1, max_length=128)


class CloseIn(_In):
    reason: str = Field(min_length=1, max_length=500)
    final_readings: dict[str, ReadingIn] | None = None
    channel: str = Field(default="cash", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=500)


class OptionalReasonIn(_In):
    reason: str = Field(default="", max_length=500)


class ReviewIn(_In):
    action: Literal["accept", "reset"]
    reason: str = Field(min_length=1, max_length=500)
    final_reading: ReadingIn | None = None
    new_baseline: ReadingIn | None = None


class ReplaceIn(_In):
    new_meter: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    final_reading: ReadingIn
    initial_reading: ReadingIn = Decimal(0)
    unit_id: int | None = Field(default=None, ge=1, le=247)
    reason: str = Field(min_length=1, max_length=500)


def engine_of(call: ApiCall[Any]) -> PrepaidEngine:
    ctx = call.request.app[CONTEXT]
    engine = ctx.get(PREPAID)
    if engine is None:
        raise ApiError(503, "the prepaid engine is not running")
    return engine


def gate_of(call: ApiCall[Any]) -> PrepaidApprovals:
    gate = call.request.app[CONTEXT].get(PREPAID_APPROVALS)
    if gate is None:
        raise ApiError(503, "the prepaid engine is not running")
    return gate


def account_json(call: ApiCall[Any], engine: PrepaidEngine, view: Any) -> dict[str, Any]:
    """An account as the caller may see it (contact details only for those who manage accounts)."""
    return view.as_json(engine.minor_units, contact=call.user.sees_contacts)  # type: ignore[no-any-return]


def _money(engine: PrepaidEngine, value: Decimal, field: str, *, allow_zero: bool = False) -> int:
    try:
        return parse_money(value, field, engine.minor_units, allow_zero=allow_zero, maximum=engine.cfg.max_amount)
    except MoneyError as exc:
        raise ApiError(422, str(exc), field=exc.field) from None


def _failed(exc: PrepaidError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


def _settings(engine: PrepaidEngine, body: SettingsIn) -> AccountSettings:
    m = engine.minor_units
    thresholds = None
    if body.thresholds is not None:
        try:
            thresholds = tuple(parse_thresholds([t.model_dump(exclude_none=True) for t in body.thresholds], m))
        except MoneyError as exc:
            raise ApiError(422, str(exc), field=exc.field) from None
    c = body.contact
    return AccountSettings(
        credit_limit_minor=_money(engine, body.credit_limit, "credit_limit", allow_zero=True) if body.credit_limit is not None else None,
        thresholds=thresholds,
        contact=Contact(c.name, c.phone, c.email, c.language) if c is not None else None,
        protected=body.protected, friendly_credit=body.friendly_credit, auto_reconnect=body.auto_reconnect,
        emergency_credit_minor=_money(engine, body.emergency_credit, "emergency_credit", allow_zero=True) if body.emergency_credit is not None else None,
        capacity_kva=body.capacity_kva,
        demand_kw=body.demand_kw,
        mode=body.mode,
    )


def _posted(call: ApiCall[Any], engine: PrepaidEngine, result: PostResult) -> dict[str, Any]:
    m = engine.minor_units
    return {"entry": result.entry.as_json(m), "account": account_json(call, engine, result.account), "replayed": result.replayed}


@router.get("/rooms/{room}/account", summary="A room's prepaid account (its open one, else its last closed one)")
async def get_account(call: ApiCall[Any]) -> dict[str, Any]:
    engine = engine_of(call)
    room = call.params["room"]
    view = await engine.account(room)
    if view is None:
        if room not in engine.assets.snapshot.rooms:
            raise ApiError(404, f"no room {room!r}")
        raise ApiError(404, f"room {room} has no account")
    return account_json(call, engine, view)


@router.post("/rooms/{room}/account/open", body=OpenIn, responses=SENT_FOR_APPROVAL, permission=Permission.ACCOUNT_MANAGE, status=201,
             summary="Open a prepaid account for a room (tariffs, opening balance, credit limit, alarm thresholds, contact)")
async def open_account(call: ApiCall[OpenIn]) -> dict[str, Any] | web.Response:
    engine = engine_of(call)
    body = call.body
    settings = _settings(engine, body)
    defaults = engine.defaults()
    merged = AccountSettings(**{f: getattr(settings, f) if getattr(settings, f) is not None else getattr(defaults, f)
                                for f in AccountSettings.__dataclass_fields__})
    readings = dict(body.readings or {})
    req = OpenRequest(
        call.params["room"], merged, electricity_tariff_id=body.tariffs.electricity, water_tariff_id=body.tariffs.water,
        opening_minor=_money(engine, body.opening_balance, "opening_balance", allow_zero=True), readings=readings, reason=body.reason,
    )
    tenants = call.request.app[CONTEXT].get(TENANTS)
    if body.pin is not None:
        if tenants is None:
            raise ApiError(422, "pin: tenant self-service is off (tenants.enabled)", field="pin")
        try:
            tenants.check_pin(body.pin)
        except TenantError as exc:
            raise ApiError(exc.status, exc.message, field=exc.field) from None
    try:
        view = await gate_of(call).open_account(req, settings, call.actor)
    except PrepaidError as exc:
        raise _failed(exc) from None
    if isinstance(view, ApprovalView):
        return pending(view)  # the PIN is set once the account is open (PUT /rooms/{room}/account/pin)
    if body.pin is not None and tenants is not None:
        await tenants.set_pin(view.id, body.pin, call.actor)
    return account_json(call, engine, view)


@router.post("/rooms/{room}/account/recharge", body=RechargeIn, permission=Permission.RECHARGE,
             summary="Recharge; the same channel and reference again returns the first result, with another amount it is a 409")
async def recharge(call: ApiCall[RechargeIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    amount = _money(engine, b.amount, "amount")
    try:
        result = await engine.recharge(call.params["room"], amount, channel=b.channel, reference=b.reference, actor=call.actor, reason=b.reason)
    except PrepaidError as exc:
        raise _failed(exc) from None
    return _posted(call, engine, result)


@router.post("/rooms/{room}/account/refund", body=RefundIn, responses=SENT_FOR_APPROVAL, permission=Permission.REFUND,
             summary="Refund part of the balance (never more than the balance)")
async def refund(call: ApiCall[RefundIn]) -> dict[str, Any] | web.Response:
    engine = engine_of(call)
    b = call.body
    amount = _money(engine, b.amount, "amount")
    try:
        result = await gate_of(call).refund(call.params["room"], amount, actor=call.actor, reason=b.reason, channel=b.channel,
                                            reference=b.reference)
    except PrepaidError as exc:
        raise _failed(exc) from None
    if isinstance(result, ApprovalView):
        return pending(result)
    return _posted(call, engine, result)


@router.post("/rooms/{room}/account/close", body=CloseIn, permission=Permission.ACCOUNT_MANAGE,
             summary="Close with final settlement: final readings billed, balance refunded, supply cut")
async def close_account(call: ApiCall[CloseIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    finals = dict(b.final_readings or {})
    try:
        view, settlement = await engine.close_account(call.params["room"], actor=call.actor, reason=b.reason, final_readings=finals, channel=b.channel)
    except PrepaidError as exc:
        raise _failed(exc) from None
    m = engine.minor_units
    return {"account": account_json(call, engine, view), "settlement": settlement.as_json(m) if settlement else None}


@router.get("/rooms/{room}/account/ledger", summary="Ledger entries of a room's account, newest first (?limit=, ?before=<entry id>)")
async def ledger(call: ApiCall[Any]) -> dict[str, Any]:
    engine = engine_of(call)
    limit_text, before = call.query("limit"), call.query("before")
    try:
        limit = parse_id(limit_text, "limit") if limit_text else 100
    except InputError:
        raise ApiError(422, "limit: an integer 1..1000", field="limit") from None
    if not 1 <= limit <= 1000:
        raise ApiError(422, "limit: 1..1000", field="limit")
    try:
        before_id = parse_id(before, "before") if before else None
    except InputError as exc:
        raise ApiError(422, f"before: {exc}", field="before") from None
    try:
        view, entries = await engine.ledger(call.params["room"], limit=limit, before_id=before_id)
    except PrepaidError as exc:
        raise _failed(exc) from None
    m = engine.minor_units
    return {"account": account_json(call, engine, view), "entries": [e.as_json(m) for e in entries]}


@router.post("/ledger/{entry}/reverse", body=ReasonIn, responses=SENT_FOR_APPROVAL, permission=Permission.REFUND,
             summary="Reverse a wrong entry with a compensating entry (nothing is edited or deleted)")
async def reverse(call: ApiCall[ReasonIn]) -> dict[str, Any] | web.Response:
    engine = engine_of(call)
    try:
        entry_id = parse_id(call.params["entry"], "entry")
    except InputError:
        raise ApiError(404, f"no ledger entry {quote(call.params['entry'])}", field="entry") from None
    try:
        result = await gate_of(call).reverse(entry_id, actor=call.actor, reason=call.body.reason)
    except PrepaidError as exc:
        raise _failed(exc) from None
    if isinstance(result, ApprovalView):
        return pending(result)
    return _posted(call, engine, result)


@router.post("/rooms/{room}/account/settings", body=SettingsIn, responses=SENT_FOR_APPROVAL, permission=Permission.ACCOUNT_MANAGE,
             summary="Change an account's credit limit, alarm thresholds, contact, protection, friendly credit, reconnect, emergency credit")
async def settings(call: ApiCall[SettingsIn]) -> dict[str, Any] | web.Response:
    engine = engine_of(call)
    try:
        view = await gate_of(call).update_settings(call.params["room"], _settings(engine, call.body), actor=call.actor,
                                                   reason=call.body.reason)
    except PrepaidError as exc:
        raise _failed(exc) from None
    if isinstance(view, ApprovalView):
        return pending(view)
    return account_json(call, engine, view)


@router.post("/rooms/{room}/account/emergency-credit", body=OptionalReasonIn, permission=Permission.RECHARGE,
             summary="Take the account's emergency credit (once, until a recharge repays it)")
async def emergency_credit(call: ApiCall[OptionalReasonIn]) -> dict[str, Any]:
    engine = engine_of(call)
    try:
        view = await engine.take_emergency_credit(call.params["room"], actor=call.actor, reason=call.body.reason)
    except PrepaidError as exc:
        raise _failed(exc) from None
    return account_json(call, engine, view)


@router.post("/rooms/{room}/account/reconnect", body=ReasonIn, permission=Permission.RELAY_CONTROL,
             summary="Release the reconnect of a room whose account waits for an operator")
async def reconnect(call: ApiCall[ReasonIn]) -> dict[str, Any]:
    engine = engine_of(call)
    try:
        view = await engine.release_reconnect(call.params["room"], call.actor, call.body.reason)
    except PrepaidError as exc:
        raise _failed(exc) from None
    return account_json(call, engine, view)


@router.get("/prepaid/review-holds", summary="Meter readings held for review (register went back, rolled over or jumped)")
async def review_holds(call: ApiCall[Any]) -> dict[str, Any]:
    engine = engine_of(call)
    return {"holds": [h.as_json() for h in await engine.holds()]}


@router.post("/meters/{meter}/review", body=ReviewIn, permission=Permission.METER_SERVICE,
             summary="Resolve a held reading: accept it, or record a register reset")
async def review(call: ApiCall[ReviewIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    try:
        view = await engine.resolve_hold(call.params["meter"], b.action, actor=call.actor, reason=b.reason,
                                         final_reading=b.final_reading, new_baseline=b.new_baseline)
    except PrepaidError as exc:
        raise _failed(exc) from None
    return {"meter": call.params["meter"], "account": account_json(call, engine, view) if view else None}


@router.post("/meters/{meter}/replace", body=ReplaceIn, permission=Permission.METER_SERVICE,
             summary="Replace a meter: the old meter's final reading is billed, the new one starts from its initial reading")
async def replace_meter(call: ApiCall[ReplaceIn]) -> dict[str, Any]:
    engine = engine_of(call)
    b = call.body
    try:
        view = await engine.replace_meter(
            call.params["meter"], b.new_meter, actor=call.actor, reason=b.reason,
            final_reading=b.final_reading, initial_reading=b.initial_reading,
            unit_id=b.unit_id,
        )
    except PrepaidError as exc:
        raise _failed(exc) from None
    except RegistryError as exc:  # the registry's refusals (the new meter exists already …)
        raise ApiError(409, str(exc)) from None
    return {"meter": call.params["meter"], "new_meter": b.new_meter, "account": account_json(call, engine, view) if view else None}
