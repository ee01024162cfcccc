"""The table of approval requests (Alembic branch ``approvals``, first revision ``0500``).

A request is a row: what is asked (``kind``, ``target``, ``payload``), why it needs a second
user (``rule``), who asked and when, until when it may be decided, its state, who decided and
why, and what running it gave (``result``). Rows are never deleted; their states only move on:

    pending → approved → executed | failed
    pending → rejected | expired
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["ApprovalRequest", "STATES"]

STATES = ("pending", "approved", "rejected", "expired", "executed", "failed")


class ApprovalRequest(Base):
    """One request for a second user's approval, and what became of it."""

    __tablename__ = "approval_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))  # e.g. account.refund, ledger.reverse
    target: Mapped[str] = mapped_column(String(128))  # e.g. room:R1, ledger:42
    payload: Mapped[Any] = mapped_column(JSON)  # what the executor needs to run it
    summary: Mapped[str] = mapped_column(Text, default="")  # one line for people
    rule: Mapped[Any] = mapped_column(JSON)  # why it needs approval: ["refund 800.00 above 500.00"]
    reason: Mapped[str] = mapped_column(Text, default="")  # the requester's
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_role: Mapped[str] = mapped_column(String(32))
    requested_source: Mapped[str] = mapped_column(String(16))  # api | hmi | cli …
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    executed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)  # the action's answer, or {"error": …}

    __table_args__ = (
        Index("ix_approval_requests_state", "state", "expires_at"),
        Index("ix_approval_requests_target", "kind", "target"),
    )
