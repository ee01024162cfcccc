"""The tenant's own API scope, ``/api/v1/tenant/…``: only a signed-in tenant (the tenant
portal's session) may call it, and every route resolves only that tenant's accounts — another
account's number, like one that does not exist, is a 404. An operator's token or session gets a
401 here, and a tenant's session gets a 401 on every operator route.

Also the cashier's side: ``PUT /api/v1/rooms/{room}/account/pin`` sets a tenant's PIN (it is also
set when an account is opened with ``"pin"``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.billing.errors import BillingError
from scada.billing.service import BILLING_SERVICE, BillingService
from scada.core.inputs import InputError, parse_id, quote
from scada.prepaid.engine import PREPAID, PrepaidEngine
from scada.prepaid.ledger import AccountView, account_view
from scada.prepaid.models import Account
from scada.tenants.component import TENANTS
from scada.tenants.service import TenantError, TenantService
from scada.tenants.usage import account_summary
from scada.users.auth import Permission
from tags import utcnow

from ..keys import CONTEXT
from .billing import _csv, _document, _instant
from .router import ApiCall, ApiError, ApiRouter, TenantCaller

__all__ = ["router", "tenant_service"]

router = ApiRouter("tenant")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PinIn(_In):
    pin: str = Field(min_length=4, max_length=12, pattern=r"^[0-9]+$")


def tenant_service(call: ApiCall[Any]) -> TenantService:
    service = call.request.app[CONTEXT].get(TENANTS)
    if service is None:
        raise ApiError(503, "tenant self-service is not running (tenants.enabled)")
    return service


def _engine(call: ApiCall[Any]) -> PrepaidEngine:
    engine = call.request.app[CONTEXT].get(PREPAID)
    if engine is None:
        raise ApiError(503, "the prepaid engine is not running")
    return engine


def _tenant(call: ApiCall[Any]) -> TenantCaller:
    if call.tenant is None:
        raise ApiError(401, "a tenant's session is needed: sign in on the tenant portal (/tenant/login)")
    return call.tenant


async def own_account(call: ApiCall[Any]) -> AccountView:
    """The account of the path, if it is one of the signed-in tenant's; else 404 (as for none)."""
    tenant = _tenant(call)
    text = call.params["account"]
    try:
        account_id = parse_id(text, "account")
    except InputError:
        raise ApiError(404, f"no account {quote(text)}", field="account") from None
    if account_id not in tenant.account_ids:
        raise ApiError(404, f"no account {account_id}", field="account")
    engine = _engine(call)
    async with engine.db.reads() as s:
        row = await s.get(Account, account_id)
        if row is None:
            raise ApiError(404, f"no account {account_id}", field="account")
        return account_view(row)


def _account_json(engine: PrepaidEngine, a: AccountView) -> dict[str, Any]:
    m = engine.minor_units
    out = a.as_json(m, contact=False)
    room = engine.assets.snapshot.rooms.get(a.room_id)
    out["room_name"] = room.name if room is not None else a.room_id
    return out


@router.get("/tenant/accounts", permission=None, tenant=True, audit=False, summary="The signed-in tenant's accounts")
async def accounts(call: ApiCall[Any]) -> dict[str, Any]:
    tenant = _tenant(call)
    engine = _engine(call)
    views = [v for v in (await engine.accounts.open_accounts()) if v.id in tenant.account_ids]
    return {"tenant": tenant.subject, "accounts": [_account_json(engine, v) for v in sorted(views, key=lambda v: v.room_id)]}


@router.get("/tenant/accounts/{account}", permission=None, tenant=True, audit=False,
            summary="One of the tenant's accounts: balance, days of credit left, today's and this month's use and cost, the last 30 days")
async def summary(call: ApiCall[Any]) -> dict[str, Any]:
    account = await own_account(call)
    engine = _engine(call)
    result = await account_summary(engine, account, now=utcnow())
    return _account_json(engine, account) | result.as_json(engine.minor_units, engine.currency)


@router.get("/tenant/accounts/{account}/ledger", permission=None, tenant=True, audit=False,
            summary="The ledger of one of the tenant's accounts, newest first (?limit=, ?before=)")
async def ledger(call: ApiCall[Any]) -> dict[str, Any]:
    account = await own_account(call)
    engine = _engine(call)
    try:
        limit = parse_id(call.query("limit") or "50", "limit")
        before = parse_id(call.query("before") or "", "before") if call.query("before") else None
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
    if limit > 500:
        raise ApiError(422, "limit: 1..500", field="limit")
    entries = await engine.accounts.ledger(account.id, limit=limit, before_id=before)
    return {"account": account.id, "entries": [e.as_json(engine.minor_units) for e in entries]}


def _billing(call: ApiCall[Any]) -> BillingService:
    svc = call.request.app[CONTEXT].get(BILLING_SERVICE)
    if svc is None:
        raise ApiError(404, "bills are not kept here (billing.enabled)")
    return svc


def _owned_bill(tenant: TenantCaller, bill: dict[str, Any]) -> bool:
    """A bill is the tenant's when every account on it is (a customer's bill covers several)."""
    return bool(bill["accounts"]) and all(sec["account"] in tenant.account_ids for sec in bill["accounts"])


@router.get("/tenant/accounts/{account}/bills", permission=None, tenant=True, audit=False,
            summary="The bills of one of the tenant's accounts, newest first")
async def bills(call: ApiCall[Any]) -> dict[str, Any]:
    account = await own_account(call)
    tenant = _tenant(call)
    found = await _billing(call).bills(room=account.room_id, limit=60)
    return {"bills": [b for b in found if _owned_bill(tenant, b) and any(sec["account"] == account.id for sec in b["accounts"])]}


@router.get("/tenant/accounts/{account}/bills/{bill}", permission=None, tenant=True, audit=False,
            summary="One bill of the tenant's account (?format=json|html|pdf)")
async def bill(call: ApiCall[Any]) -> Any:
    account = await own_account(call)
    tenant = _tenant(call)
    fmt = call.query("format") or "json"
    if fmt not in ("json", "html", "pdf"):
        raise ApiError(422, "format: json, html or pdf", field="format")
    try:
        bill_id = parse_id(call.params["bill"], "bill")
        found = await _billing(call).bill(bill_id)
    except (InputError, BillingError):
        raise ApiError(404, f"no bill {quote(call.params['bill'])}", field="bill") from None
    if not _owned_bill(tenant, found) or not any(sec["account"] == account.id for sec in found["accounts"]):
        raise ApiError(404, f"no bill {bill_id}", field="bill")
    if fmt == "json":
        return found
    return await _document(call, "bill.html", fmt, f"bill-{found['number']}", found["language"], bill=found)


@router.get("/tenant/accounts/{account}/statement", permission=None, tenant=True, audit=False,
            summary="A statement of one of the tenant's accounts (?from=&to= dates; ?format=json|csv|pdf)")
async def statement(call: ApiCall[Any]) -> Any:
    account = await own_account(call)
    svc = _billing(call)
    fmt = call.query("format") or "json"
    if fmt not in ("json", "csv", "pdf"):
        raise ApiError(422, "format: json, csv or pdf", field="format")
    now = svc.clock()
    start = _instant(call, "from", now - dt.timedelta(days=30))
    end = _instant(call, "to", now)
    try:
        st = await svc.statement_of_account(account.id, start, end)
    except BillingError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    data = st.as_json(svc.minor_units)
    name = f"statement-{account.room_id}-{start.date().isoformat()}"
    if fmt == "json":
        return data
    if fmt == "csv":
        return web.Response(text=_csv(data), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return await _document(call, "statement.html", "pdf", name, account.contact.language, statement=data)


@router.put("/rooms/{room}/account/pin", body=PinIn, permission=Permission.ACCOUNT_MANAGE,
            summary="Set the tenant PIN of a room's open account (the tenant signs in with the account number and it)")
async def set_pin(call: ApiCall[PinIn]) -> dict[str, Any]:
    engine = _engine(call)
    view = await engine.account(call.params["room"])
    if view is None or not view.open:
        raise ApiError(404, f"room {quote(call.params['room'])} has no open account", field="room")
    try:
        await tenant_service(call).set_pin(view.id, call.body.pin, call.actor)
    except TenantError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    return {"account": view.id, "room": view.room_id, "pin": "set"}
