"""Tables of the back office (Alembic branch ``billing``, revisions ``0600``–``0699``).

Customers hold accounts (``billing_account_settings`` ties an account to its customer and
keeps its dunning and late-fee overrides). Charge rules post ledger entries of kind ``charge``
naming their rule. A billing run issues bills: one per account, or one per customer with a
section per account; a section is unique per (account, period), which makes a run idempotent.
Bills are immutable once issued except for what is paid and credited against them and their
status; a correction is a credit note. Money is in integer minor units, rates and rule amounts
are exact decimals.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import ExactDecimal, UtcDateTime

__all__ = [
    "AccountBilling",
    "Adjustment",
    "AdjustmentAccount",
    "Bill",
    "BillPayment",
    "BillSection",
    "BillingRun",
    "ChargeRule",
    "CreditNote",
    "Customer",
]

Rate = ExactDecimal(12, 8)


class Customer(Base):
    """A person or a company holding one or more rooms' accounts."""

    __tablename__ = "billing_customers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # person | company
    phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    language: Mapped[str] = mapped_column(String(16), default="zh-CN")
    address: Mapped[str] = mapped_column(Text, default="")
    tax_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bill_per: Mapped[str] = mapped_column(String(16), default="account")  # account | customer
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AccountBilling(Base):
    """An account's customer and its overrides of the configured dunning and late fee."""

    __tablename__ = "billing_account_settings"
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("billing_customers.id"), nullable=True, index=True)
    grace_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cut_when_overdue: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    late_fee_rate: Mapped[Decimal | None] = mapped_column(Rate, nullable=True)  # a fraction per day
    late_fee_cap_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ChargeRule(Base):
    """Rent, property fee, service fee …: ``fixed`` or ``per_area`` (× the room's m²), per
    period or once, settled ``from_balance`` (on the period's first day) or ``on_bill``."""

    __tablename__ = "billing_charge_rules"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # fixed | per_area
    amount: Mapped[Decimal] = mapped_column(ExactDecimal(20, 6))  # a period's amount (per m² for per_area), tax included
    period: Mapped[str] = mapped_column(String(16))  # monthly | quarterly | yearly | once
    targets: Mapped[Any] = mapped_column(JSON)  # "all" | {"rooms": [...]} | {"floor": ID} | {"building": ID}
    settle: Mapped[str] = mapped_column(String(16))  # from_balance | on_bill
    tax_rate: Mapped[Decimal | None] = mapped_column(Rate, nullable=True)
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date | None] = mapped_column(Date, nullable=True)  # the first day it no longer applies
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class BillingRun(Base):
    """One billing run: the period, who ran it, for which rooms, how many bills and ledger entries it made."""

    __tablename__ = "billing_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    rooms: Mapped[Any] = mapped_column(JSON, nullable=True)  # the rooms named, or null for every account
    bills: Mapped[int] = mapped_column(Integer, default=0)  # bills issued by this run
    posted: Mapped[int] = mapped_column(Integer, default=0)  # ledger entries it posted


class Bill(Base):
    """A bill of one period: one account's, or one customer's (a section per account)."""

    __tablename__ = "billing_bills"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("billing_customers.id"), nullable=True, index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    due_date: Mapped[date] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(16))
    opening_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)  # the sum of the lines (charges less credits)
    closing_minor: Mapped[int] = mapped_column(BigInteger)
    total_due_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)  # issued | partly_paid | paid | overdue
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BillSection(Base):
    """One account's part of a bill: its opening and closing balance and its lines."""

    __tablename__ = "billing_bill_sections"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("billing_bills.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    period: Mapped[str] = mapped_column(String(7))
    opening_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    closing_minor: Mapped[int] = mapped_column(BigInteger)
    due_minor: Mapped[int] = mapped_column(BigInteger)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    late_fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # late fees charged for this section so far
    lines: Mapped[Any] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("account_id", "period", name="uq_billing_bill_sections_account_period"),)


class BillPayment(Base):
    """A payment of a bill, idempotent by (channel, reference); its ledger entries per account."""

    __tablename__ = "billing_payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("billing_bills.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(128))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    allocations: Mapped[Any] = mapped_column(JSON)  # [{"account", "entry", "amount_minor"}]

    __table_args__ = (UniqueConstraint("channel", "reference", name="uq_billing_payments_channel_reference"),)


class CreditNote(Base):
    """The correction of an issued bill: a credit, posted once a second user approves it."""

    __tablename__ = "billing_credit_notes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("billing_bills.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # draft | approved | rejected
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    allocations: Mapped[Any] = mapped_column(JSON, nullable=True)  # once approved: [{"account", "entry", "amount_minor"}]


class Adjustment(Base):
    """A retroactive price adjustment (电费退补): billed consumption re-priced under a tariff version."""

    __tablename__ = "billing_adjustments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tariff_id: Mapped[str] = mapped_column(ForeignKey("prepaid_tariffs.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_ts: Mapped[datetime] = mapped_column(UtcDateTime())
    to_ts: Mapped[datetime] = mapped_column(UtcDateTime())
    rooms: Mapped[Any] = mapped_column(JSON, nullable=True)
    apply: Mapped[str] = mapped_column(String(16))  # ledger | next_bill
    state: Mapped[str] = mapped_column(String(16), index=True)  # draft | approved | rejected
    reason: Mapped[str] = mapped_column(Text, default="")
    charged_minor: Mapped[int] = mapped_column(BigInteger)
    repriced_minor: Mapped[int] = mapped_column(BigInteger)
    difference_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")


class AdjustmentAccount(Base):
    """One account of an adjustment: what it was charged, what it is re-priced at, the difference."""

    __tablename__ = "billing_adj_accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    adjustment_id: Mapped[int] = mapped_column(ForeignKey("billing_adjustments.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    room_id: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(Integer)  # deductions re-priced
    first_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    charged_minor: Mapped[int] = mapped_column(BigInteger)
    repriced_minor: Mapped[int] = mapped_column(BigInteger)
    difference_minor: Mapped[int] = mapped_column(BigInteger)  # repriced − charged: > 0 the tenant owes more
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("prepaid_ledger.id"), nullable=True)  # once posted
    posted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("adjustment_id", "account_id", name="uq_billing_adj_accounts_adjustment_account"),)
