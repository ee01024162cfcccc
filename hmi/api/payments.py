"""Online payment over the JSON API.

- ``POST /api/v1/payments/orders {"room", "amount", "provider"}`` → ``{"id", "state", "pay_url", …}``:
  a cashier (``recharge``) for any room, or a signed-in tenant for a room of their own accounts.
- ``GET /api/v1/payments/orders/{id}``: the order (a tenant sees only their own: 404 otherwise).
- ``POST /api/v1/payments/notify/{provider}``: the provider's asynchronous notification. No user
  authentication: the provider's signature (over timestamp, nonce and body, within the replay
  window) is the authentication. A forged, replayed, stale, unknown or amount-mismatched
  notification is a 4xx that writes and credits nothing (and is logged).
- ``GET /api/v1/payments/orders``, ``POST /api/v1/payments/orders/{id}/refund`` (four eyes
  above ``approvals.refund_above``, like a cash refund), ``GET|POST /api/v1/payments/reconciliations``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.approvals.service import ApprovalView
from scada.core.inputs import BoundedDecimal, Date, InputError, Text, parse_id, quote
from scada.payments.component import PAYMENTS
from scada.payments.errors import PaymentError
from scada.payments.models import ORDER_STATES
from scada.payments.orders import OrderView, PaymentService
from scada.payments.reconcile import reconcile_day, reports
from scada.prepaid.money import MONEY_WHOLE_DIGITS, MoneyError, parse_money
from scada.users.auth import Permission

from ..keys import CONTEXT
from .approvals import pending
from .router import ApiCall, ApiError, ApiRouter

__all__ = ["router", "service_of"]

router = ApiRouter("payments")

Amount = Annotated[Decimal, BoundedDecimal(MONEY_WHOLE_DIGITS + 4, 4, what="amount", description='an amount as a decimal string, e.g. "50.00"')]
MAX_NOTIFY_BYTES = 16_384
SENT_FOR_APPROVAL = {202: "sent for approval: the pending approval request; nothing happened yet"}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderIn(_In):
    room: Text = Field(min_length=1, max_length=64)
    amount: Amount
    provider: str = Field(default="", max_length=32, pattern=r"^[a-z0-9_]*$")
    # where the payer's browser returns after paying: a path on this server
    return_path: str = Field(default="", max_length=500, pattern=r"^(/[^/\\\s][^\s]*|/)?$")


class RefundIn(_In):
    reason: Text = Field(min_length=1, max_length=500)


class ReconcileIn(_In):
    day: Date
    provider: str = Field(default="", max_length=32, pattern=r"^[a-z0-9_]*$")


def service_of(call: ApiCall[Any]) -> PaymentService:
    service = call.request.app[CONTEXT].get(PAYMENTS)
    if service is None:
        raise ApiError(503, "online payment is not running (payments.enabled)")
    return service


def _failed(exc: PaymentError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


def _order_id(call: ApiCall[Any]) -> int:
    text = call.params["order"]
    try:
        return parse_id(text.removeprefix("P"), "order")
    except InputError:
        raise ApiError(404, f"no order {quote(text)}", field="order") from None


def order_json(service: PaymentService, view: OrderView) -> dict[str, Any]:
    return view.as_json(service.minor_units)


async def _visible_order(call: ApiCall[Any], service: PaymentService) -> OrderView:
    """The order of the path: any for a cashier, only one of their accounts' for a tenant."""
    order_id = _order_id(call)
    view = await service.order(order_id)
    if view is None or (call.tenant is not None and view.account_id not in call.tenant.account_ids):
        raise ApiError(404, f"no order {order_id}", field="order")
    return view


@router.post("/payments/orders", body=OrderIn, permission=Permission.RECHARGE, tenant=True, status=201,
             summary="Create an online payment order for a room's account → its pay URL (a tenant: only for their own accounts)")
async def create_order(call: ApiCall[OrderIn]) -> dict[str, Any]:
    service = service_of(call)
    b = call.body
    try:
        amount = parse_money(b.amount, "amount", service.minor_units)
    except MoneyError as exc:
        raise ApiError(422, str(exc), field=exc.field) from None
    provider = b.provider or next(iter(service.providers), "")
    account_id: int | None = None
    if call.tenant is not None:
        view = await service.engine.account(b.room)
        if view is None or not view.open or view.id not in call.tenant.account_ids:
            raise ApiError(404, f"room: no account of yours in room {quote(b.room)}", field="room")
        account_id = view.id
        return_path = b.return_path or f"/tenant/accounts/{view.id}"
        created_by = call.actor.name
    else:
        return_path = b.return_path or f"/cashier?room={b.room}"
        created_by = call.user.name
    try:
        order = await service.create_order(b.room, amount, provider, actor=call.actor, created_by=created_by,
                                           return_path=return_path, account_id=account_id)
    except PaymentError as exc:
        raise _failed(exc) from None
    return order_json(service, order)


@router.get("/payments/orders/{order}", permission=Permission.RECHARGE, tenant=True, audit=False,
            summary="An online payment order and its state (a tenant: only their own)")
async def get_order(call: ApiCall[Any]) -> dict[str, Any]:
    service = service_of(call)
    return order_json(service, await _visible_order(call, service))


@router.get("/payments/orders", permission=Permission.RECHARGE, tenant=True, audit=False,
            summary="Online payment orders, newest first (?room=, ?state=, ?limit=); a tenant: their own")
async def list_orders(call: ApiCall[Any]) -> dict[str, Any]:
    service = service_of(call)
    state = call.query("state")
    if state is not None and state not in ORDER_STATES:
        raise ApiError(422, f"state: one of {', '.join(ORDER_STATES)}", field="state")
    limit_text = call.query("limit")
    try:
        limit = parse_id(limit_text, "limit") if limit_text else 100
    except InputError:
        raise ApiError(422, "limit: an integer 1..500", field="limit") from None
    if limit > 500:
        raise ApiError(422, "limit: an integer 1..500", field="limit")
    account_ids = sorted(call.tenant.account_ids) if call.tenant is not None else None
    room = call.query("room")
    if room is not None:
        view = await service.engine.account(room)
        ids = [view.id] if view is not None else []
        account_ids = [i for i in ids if account_ids is None or i in account_ids]
    orders = await service.orders(account_ids=account_ids, state=state, limit=limit)
    return {"orders": [order_json(service, o) for o in orders]}


@router.post("/payments/notify/{provider}", permission=None, audit=False,
             summary="A payment provider's notification (authenticated by its signature, not by a user)")
async def notify(call: ApiCall[Any]) -> dict[str, Any]:
    service = service_of(call)
    request = call.request
    if request.content_length is not None and request.content_length > MAX_NOTIFY_BYTES:
        raise ApiError(413, f"body too large: at most {MAX_NOTIFY_BYTES} bytes")
    body = await request.content.read(MAX_NOTIFY_BYTES + 1)
    if len(body) > MAX_NOTIFY_BYTES:
        raise ApiError(413, f"body too large: at most {MAX_NOTIFY_BYTES} bytes")
    try:
        view = await service.notify(call.params["provider"], request.headers, body, address=request.remote or "?")
    except PaymentError as exc:
        raise _failed(exc) from None
    return {"ok": True, "order": view.order_no, "state": view.state}


@router.post("/payments/orders/{order}/refund", body=RefundIn, permission=Permission.REFUND, responses=SENT_FOR_APPROVAL,
             summary="Refund an online payment: the balance is debited and the provider refunds the payer")
async def refund(call: ApiCall[RefundIn]) -> dict[str, Any] | web.Response:
    service = service_of(call)
    try:
        result = await service.refund(_order_id(call), actor=call.actor, reason=call.body.reason)
    except PaymentError as exc:
        raise _failed(exc) from None
    if isinstance(result, ApprovalView):
        return pending(result)
    return order_json(service, result)


@router.post("/payments/reconciliations", body=ReconcileIn, permission=Permission.RECHARGE,
             summary="Reconcile a day's provider statement against the orders and the ledger now")
async def reconcile(call: ApiCall[ReconcileIn]) -> dict[str, Any]:
    service = service_of(call)
    names = [call.body.provider] if call.body.provider else list(service.providers)
    out = []
    for name in names:
        try:
            provider = service.provider(name)
        except PaymentError as exc:
            raise _failed(exc) from None
        report = await reconcile_day(service.db, provider, call.body.day, tz=service.engine.tz, minor_units=service.minor_units,
                                     now=service.clock())
        out.append(report.as_json())
    return {"reports": out, "ok": all(r["ok"] for r in out)}


@router.get("/payments/reconciliations", permission=Permission.RECHARGE,
            summary="The kept reconciliation reports, newest first (?day=YYYY-MM-DD)")
async def list_reconciliations(call: ApiCall[Any]) -> dict[str, Any]:
    service = service_of(call)
    day_text = call.query("day")
    try:
        day = dt.date.fromisoformat(day_text) if day_text else None
    except ValueError:
        raise ApiError(422, f"day: expected YYYY-MM-DD, found {quote(day_text)}", field="day") from None
    return {"reports": await reports(service.db, day=day)}
