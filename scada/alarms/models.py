"""Tables of the alarm engine: occurrences, their transitions, and objects out of service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["AlarmRow", "AlarmTransitionRow", "OutOfServiceRow"]


class AlarmRow(Base):
    """One occurrence of an alarm point: from leaving normal to returning to it.

    ``version`` grows with every update; writers update ``WHERE version = <what they read>``
    so that the engine and the command line never overwrite each other's changes.
    """

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))  # <class>:<object type>:<object id>
    alarm_class: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(128))
    meter_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    room_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    link: Mapped[str | None] = mapped_column(String(64), nullable=True)
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    condition_active: Mapped[bool] = mapped_column(Boolean)
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(String(200))
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_active_at: Mapped[datetime] = mapped_column(UtcDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ack_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    shelved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    shelved_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    shelved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    shelve_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    activations: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)
    # migration 0700 (OPC UA Alarms & Conditions): Confirm, comments, one-shot shelving
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comment_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    shelve_one_shot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_alarms_key", "key"),
        Index("ix_alarms_closed_at", "closed_at"),
        Index("ix_alarms_raised_at", "raised_at"),
        Index("ix_alarms_room_id", "room_id"),
    )


class AlarmTransitionRow(Base):
    """Append-only: every transition of every occurrence, with who and why."""

    __tablename__ = "alarm_transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(String(200))


class OutOfServiceRow(Base):
    """An object (meter, link, room) whose alarms are out of service, e.g. under maintenance."""

    __tablename__ = "alarm_out_of_service"
    object_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
