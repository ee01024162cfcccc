"""Tables of online payment (Alembic branch ``payments``, revisions ``1100``–``1199``).

An order moves ``created`` → ``paid`` → ``credited``, or ends ``expired``, ``failed`` or
``refunded``. ``(provider, transaction_id)`` is unique: one provider payment belongs to one
order. The credit is a ledger recharge with channel = provider and reference = transaction id
(``recharge:<provider>:<transaction id>``, unique in the ledger), committed together with the
order's ``credited`` state. ``payment_nonces`` keeps the nonces of accepted notifications for the
replay window. ``payment_sandbox`` is the sandbox provider's own book (what a real provider
keeps on its side). ``payment_reconciliations`` keeps each day's report.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["ORDER_STATES", "PaymentNonce", "PaymentOrder", "Reconciliation", "SandboxPayment"]

ORDER_STATES = ("created", "paid", "credited", "expired", "failed", "refunded")


class PaymentOrder(Base):
    """One online payment of a room's account through a provider, from creation to credit (or refund)."""

    __tablename__ = "payment_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    room_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))  # a user's name, or tenant:<account|phone>
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    return_url: Mapped[str] = mapped_column(Text, default="")
    provider_order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pay_url: Mapped[str] = mapped_column(Text, default="")
    transaction_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)  # paid after it had expired
    credited_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the recharge's ledger entry
    refunded_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    refund_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the ledger refund, when it was credited
    refund_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the provider's refund
    detail: Mapped[str] = mapped_column(Text, default="")  # why it failed, expired, was refunded, waits
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("provider", "transaction_id", name="uq_payment_orders_provider_transaction"),
        Index("ix_payment_orders_paid", "provider", "paid_at"),
    )


class PaymentNonce(Base):
    """A nonce of an accepted notification, kept for the replay window."""

    __tablename__ = "payment_nonces"
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class SandboxPayment(Base):
    """The sandbox provider's side of one order (a real provider keeps this in its own books)."""

    __tablename__ = "payment_sandbox"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the provider's order id
    order_no: Mapped[str] = mapped_column(String(64), unique=True)  # the merchant's (our) order number
    transaction_id: Mapped[str | None] = mapped_column(String(40), nullable=True, unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16))  # created | paid | declined | refunded
    notify_url: Mapped[str] = mapped_column(Text)
    return_url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    refund_no: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Reconciliation(Base):
    """One day's reconciliation of one provider's statement against the orders and the ledger."""

    __tablename__ = "payment_reconciliations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ok: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[Any] = mapped_column(JSON)

    __table_args__ = (Index("ix_payment_reconciliations_day", "provider", "day"),)
