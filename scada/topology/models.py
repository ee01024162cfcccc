"""Tables of the meter topology (Alembic branch ``topology``, revisions ``0900``-``0999``).

- ``topology_readings``: readings entered by hand (or imported), one per meter and time, with
  who entered them and why. A reading marked ``reset`` starts a new register (a reset or a
  replacement): ``final`` is the old register's last value, ``initial`` the new one's start.
- ``topology_rules``: apportionment rules (what is shared, by which key, to whom, at which
  price, settled how, how often).
- ``topology_runs``: one posted run per rule and period (unique: a run is done once).
- ``topology_shares``: each run's shares, one per target account: posted to the balance (the
  ledger entry's id) or waiting for a bill (``state = "pending"`` until a billing run posts it:
  then ``billed``, with its ledger entry and the billed month in ``bill_ref``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import ExactDecimal, UtcDateTime

__all__ = ["ApportionmentRule", "ApportionmentRun", "ApportionmentShare", "ManualReading"]

ReadingValue = ExactDecimal(24, 8)
Quantity = ExactDecimal(40, 20)


class ManualReading(Base):
    """A meter reading entered or imported by hand (a ``reset`` starts a new register)."""

    __tablename__ = "topology_readings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(ForeignKey("meters.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    value: Mapped[Decimal] = mapped_column(ReadingValue)
    reset: Mapped[bool] = mapped_column(Boolean, default=False)
    final: Mapped[Decimal | None] = mapped_column(ReadingValue, nullable=True)
    initial: Mapped[Decimal | None] = mapped_column(ReadingValue, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual: entered or imported by hand
    reason: Mapped[str] = mapped_column(Text, default="")
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    entered_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("meter_id", "ts", name="uq_topology_readings_meter_ts"),)


class ApportionmentRule(Base):
    """What is shared (a meter or a loss), by which key, to which rooms, at which price, settled how, how often."""

    __tablename__ = "topology_rules"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(80))  # a meter id, or "loss:<meter id>"
    method: Mapped[str] = mapped_column(String(16))  # consumption | area | equal | ratio
    targets: Mapped[Any] = mapped_column(JSON)  # {"rooms": [...]} | {"floor": id} | {"building": id}
    weights: Mapped[Any] = mapped_column(JSON, nullable=True)  # ratio: {room: "2.5"}
    pricing: Mapped[Any] = mapped_column(JSON)  # "tariff" | {"price": "0.85"}
    settle: Mapped[str] = mapped_column(String(16))  # balance | bill
    schedule: Mapped[str] = mapped_column(String(16))  # monthly | daily
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class ApportionmentRun(Base):
    """One posted run of a rule for one period (done once)."""

    __tablename__ = "topology_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("topology_rules.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))  # 2026-11 | 2026-11-05
    start: Mapped[datetime] = mapped_column(UtcDateTime())
    end: Mapped[datetime] = mapped_column(UtcDateTime())
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("rule_id", "period", name="uq_topology_runs_rule_period"),)


class ApportionmentShare(Base):
    """One account's share of a run: posted to the balance or waiting for a bill."""

    __tablename__ = "topology_shares"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("topology_runs.id"), index=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("topology_rules.id"))
    period: Mapped[str] = mapped_column(String(16))
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[Any] = mapped_column(JSON)  # what the share was weighed by
    days_open: Mapped[int] = mapped_column(Integer)
    settle: Mapped[str] = mapped_column(String(16))  # balance | bill
    state: Mapped[str] = mapped_column(String(16))  # posted | pending | billed | nothing
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("prepaid_ledger.id"), nullable=True)
    bill_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the billed month (YYYY-MM) whose bill took it

    __table_args__ = (
        UniqueConstraint("rule_id", "period", "account_id", name="uq_topology_shares_rule_period_account"),
    )
