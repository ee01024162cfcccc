"""The delivery log: every message the notifier created, and every attempt to send it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["DeliveryAttemptRow", "DeliveryRow", "DeliveryStatus"]


class DeliveryStatus:
    """The states of one message's delivery."""
    PENDING = "pending"  # waiting for its first or next attempt
    HELD = "held"  # waiting for the quiet hours to end
    SENT = "sent"
    FAILED = "failed"  # gave up: a permanent error, or out of attempts
    SKIPPED = "skipped"  # not sent on purpose: duplicate, rate limit, no address
    CANCELLED = "cancelled"  # the alarm ended before the message could go

    OPEN = ("pending", "held")


class DeliveryRow(Base):
    """One message to one recipient over one channel, with its outcome."""
    __tablename__ = "notification_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    alarm_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    alarm_key: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(16))  # raised | cleared | acknowledged
    route: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # JSON of the alarm, for webhooks
    dedup_key: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)  # why it is held, skipped, failed or cancelled, or was sent late
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_notification_deliveries_dedup", "dedup_key", "created_at"),
        Index("ix_notification_deliveries_recipient", "recipient", "created_at"),
        Index("ix_notification_deliveries_status", "status"),
    )


class DeliveryAttemptRow(Base):
    """One attempt of a delivery, with the error it met."""
    __tablename__ = "notification_attempts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notification_deliveries.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # sent | retry | failed
    error: Mapped[str] = mapped_column(Text)
