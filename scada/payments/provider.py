"""The one interface of a payment provider, and the values it exchanges with the order service.

A provider (the built-in sandbox; WeChat Pay, Alipay, Stripe when someone adds them) does five
things for :class:`scada.payments.orders.PaymentService`:

1. :meth:`PaymentProvider.create_order` — an order of ours (number, amount, currency, where to
   notify, where to send the payer back) becomes a payment URL and a QR payload the payer opens.
2. :meth:`PaymentProvider.verify_notification` — an asynchronous notification (HTTP headers and
   the raw body) is authenticated by its signature over the timestamp, the nonce and the body,
   refused outside the replay window, and parsed into a :class:`Notification`. The service then
   refuses a nonce seen before, an unknown order, and an amount or currency that differs from
   the order's.
3. :meth:`PaymentProvider.query` — what the provider knows of an order (after a lost notification).
4. :meth:`PaymentProvider.refund` — give a payment back (idempotent by our refund number).
5. :meth:`PaymentProvider.statement` — the provider's statement of a day, for reconciliation.

How a real provider plugs in is in ``config/README.md`` (``[payments]``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "NotificationStatus",
    "Notification",
    "OrderRequest",
    "PayTarget",
    "PaymentProvider",
    "ProviderOrder",
    "RefundResult",
    "StatementLine",
]

NotificationStatus = Literal["paid", "failed", "pending"]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order of ours, as a provider is asked to collect it."""

    order_no: str  # our order number (the provider's "out_trade_no")
    amount_minor: int
    currency: str
    minor_units: int
    description: str
    notify_url: str  # where the provider sends its notifications
    return_url: str  # where the payer's browser goes after paying
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PayTarget:
    """What the payer opens: a URL (a pay page) and the same as a QR code's payload."""

    provider_order_id: str
    pay_url: str
    qr_payload: str


@dataclass(frozen=True, slots=True)
class Notification:
    """An authenticated notification: what the provider says happened to one order."""

    event_id: str
    nonce: str
    timestamp: dt.datetime
    status: NotificationStatus
    order_no: str
    transaction_id: str
    amount_minor: int
    currency: str
    paid_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ProviderOrder:
    """What the provider knows of an order (:meth:`PaymentProvider.query`)."""

    order_no: str
    state: Literal["created", "paid", "declined", "refunded", "unknown"]
    transaction_id: str | None
    amount_minor: int
    currency: str
    paid_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    amount_minor: int
    replayed: bool = False  # refunded before with this refund number


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a provider's daily statement: a payment or a refund."""

    kind: Literal["payment", "refund"]
    order_no: str
    transaction_id: str
    amount_minor: int
    currency: str
    ts: dt.datetime


class PaymentProvider(Protocol):
    """A payment provider; see the module docstring. Every method may raise
    :class:`scada.payments.errors.PaymentError`."""

    name: str

    async def create_order(self, req: OrderRequest) -> PayTarget:
        """Register the order with the provider; the payer opens what comes back."""
        ...

    def verify_notification(self, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Notification:
        """Authenticate and parse a notification, or raise ``PaymentError`` (401 forged, 400
        malformed, 408 outside the replay window). Pure: no I/O, nothing written."""
        ...

    async def query(self, order_no: str) -> ProviderOrder:
        ...

    async def refund(self, order_no: str, transaction_id: str, amount_minor: int, *, refund_no: str, reason: str) -> RefundResult:
        ...

    async def statement(self, start: dt.datetime, end: dt.datetime) -> list[StatementLine]:
        """The payments and refunds the provider booked in ``[start, end)`` (a local day)."""
        ...

    async def close(self) -> None:
        ...
