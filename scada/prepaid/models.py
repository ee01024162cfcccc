"""Tables of the prepaid engine (Alembic branch ``prepaid``, first revision ``0200``).

The ledger is append-only: an entry is never updated or deleted; a wrong entry is undone by a
reversal (a compensating entry pointing at it, at most one per entry). Amounts are signed
integers in the currency's minor unit (credit positive, debit negative); exact costs,
remainders, readings and quantities are exact decimals. An account keeps its balance (the sum
of its entries, checked by ``scada reconcile``) and the rounding remainder carried to its next
deduction.

Exactly once: a deduction carries ``idem_key`` = ``reading:<meter>:<segment>:<reading>`` (unique),
and is committed in the same transaction as the meter's ``last_reading``; a recharge carries
``recharge:<channel>:<reference>``; a periodic charge ``charge:<account>:<period>``; the back office
(``scada.billing``) keys its charges, payments, adjustments and late fees likewise.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import ExactDecimal, UtcDateTime

__all__ = [
    "Account",
    "CycleUsage",
    "LedgerEntry",
    "MeterSegment",
    "MeterState",
    "Tariff",
    "TariffVersionRow",
]

Reading = ExactDecimal(24, 8)
Exact = ExactDecimal(40, 20)  # exact costs and remainders (prices have ≤ 6, quantities ≤ 10 decimals)


class Tariff(Base):
    """A named tariff for one commodity; its prices are in its versions."""

    __tablename__ = "prepaid_tariffs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    commodity: Mapped[str] = mapped_column(String(16))  # electricity | water
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class TariffVersionRow(Base):
    """One version of a tariff's definition, in force from ``effective_from``."""

    __tablename__ = "prepaid_tariff_versions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tariff_id: Mapped[str] = mapped_column(ForeignKey("prepaid_tariffs.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime())
    definition: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("tariff_id", "version", name="uq_prepaid_tariff_versions_tariff_version"),)


class Account(Base):
    """A room's prepaid (or postpaid) account: its balance, settings, tenant contact and supply state."""

    __tablename__ = "prepaid_accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    # the room while the account is open, NULL once closed: at most one open account per room
    open_room_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    state: Mapped[str] = mapped_column(String(16))  # open | closed
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_by: Mapped[str] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    electricity_tariff_id: Mapped[str | None] = mapped_column(ForeignKey("prepaid_tariffs.id"), nullable=True)
    water_tariff_id: Mapped[str | None] = mapped_column(ForeignKey("prepaid_tariffs.id"), nullable=True)
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contact_email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    credit_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    thresholds: Mapped[Any] = mapped_column(JSON)  # [{"level": 1, "money": "20.00"} | {"level": 1, "days": "3"}]
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    friendly_credit: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_reconnect: Mapped[bool] = mapped_column(Boolean, default=True)
    emergency_credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    emergency_taken_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    capacity_kva: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)
    demand_kw: Mapped[Decimal | None] = mapped_column(ExactDecimal(12, 3), nullable=True)
    charges_through: Mapped[date | None] = mapped_column(Date, nullable=True)  # periodic charges done up to this local day
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    remainder: Mapped[Decimal] = mapped_column(Exact, default=Decimal(0))
    alarm_level: Mapped[int] = mapped_column(Integer, default=0)
    supply_state: Mapped[str] = mapped_column(String(16), default="on")  # on | cutting | off | restoring
    reconnect_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # waits for an operator
    # prepaid: levels and cutoff follow the balance; postpaid: priced and posted alike (the
    # balance goes negative: arrears), billed each period, never cut for a low balance; its
    # alarm level is the dunning level of its overdue bills, and it is cut only when dunning
    # says so (both set by the back office, scada.billing)
    mode: Mapped[str] = mapped_column(String(16), default="prepaid")  # prepaid | postpaid
    dunning_level: Mapped[int] = mapped_column(Integer, default=0)
    dunning_cut: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerEntry(Base):
    """One append-only money movement of an account, with the balance after it."""

    __tablename__ = "prepaid_ledger"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(16))  # see ledger.KINDS
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    idem_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("prepaid_ledger.id"), nullable=True, unique=True)
    meter_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    segment: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reading_from: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)
    reading_to: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)
    from_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reading_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    quantity: Mapped[Decimal | None] = mapped_column(Exact, nullable=True)
    cost: Mapped[Decimal | None] = mapped_column(Exact, nullable=True)  # exact, before rounding
    tariff_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("ix_prepaid_ledger_meter", "meter_id", "segment"),)


class MeterState(Base):
    """Billing cursor of one meter: the last billed reading, and a review hold if any.

    On PostgreSQL the table keeps room on each page (fill factor 60, migration 0201): every
    billing batch writes a new version of each billed meter's row, which then stays on its page
    without new index entries (a HOT update)."""

    __tablename__ = "prepaid_meter_state"
    meter_id: Mapped[str] = mapped_column(ForeignKey("meters.id"), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("prepaid_accounts.id"), nullable=True, index=True)
    segment: Mapped[int] = mapped_column(Integer, default=0)
    last_reading: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)  # None: baseline pending
    last_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_registers: Mapped[Any] = mapped_column(JSON, nullable=True)  # {"peak": "12.34", ...}
    hold_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)  # backwards | jump | rollover
    hold_detail: Mapped[str] = mapped_column(Text, default="")
    hold_reading: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)
    hold_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    hold_registers: Mapped[Any] = mapped_column(JSON, nullable=True)
    hold_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)  # replaced: final reading billed
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MeterSegment(Base):
    """A stretch of one meter's register billed to one account from one baseline.

    A new segment starts when an account opens, after a register reset and after a
    replacement; within a segment the billed readings form one unbroken chain.
    """

    __tablename__ = "prepaid_meter_segments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(64))
    segment: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    baseline: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)
    baseline_ts: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    final_reading: Mapped[Decimal | None] = mapped_column(Reading, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("meter_id", "segment", name="uq_prepaid_meter_segments_meter_segment"),)


class CycleUsage(Base):
    """Consumption billed per account, commodity and tier cycle (``monthly:2026-03``)."""

    __tablename__ = "prepaid_cycle_usage"
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), primary_key=True)
    commodity: Mapped[str] = mapped_column(String(16), primary_key=True)
    cycle: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(Exact, default=Decimal(0))
