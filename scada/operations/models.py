"""Tables of operations (Alembic branch ``operations``, revisions ``1000``-``1099``).

``jobs``: one batch or scheduled job (its kind, targets, parameters, schedule, who asked and
who approved); ``job_items``: one row per target of one run, unique by (job, run, target), so a
job resumed after a crash never does a done item again; ``prepared_accounts``: accounts
prepared in advance by an import, opened later by an ``open`` job; ``message_reminders``: how
often each account was reminded at its balance level.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["ITEM_STATES", "JOB_STATES", "JobItemRow", "JobRow", "PreparedAccountRow", "ReminderRow"]

JOB_STATES = ("scheduled", "running", "done", "failed", "cancelled")
ITEM_STATES = ("pending", "running", "done", "failed", "cancelled")


class JobRow(Base):
    """A batch job: run now, at ``run_at``, or on a cron schedule (``repeat``)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    targets: Mapped[Any] = mapped_column(JSON)
    params: Mapped[Any] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    run_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # the next run; None: now
    repeat: Mapped[str | None] = mapped_column(String(128), nullable=True)  # cron expression, site time
    state: Mapped[str] = mapped_column(String(16))  # scheduled running done failed cancelled
    run: Mapped[int] = mapped_column(Integer, default=0)  # the current (or last) run, from 1
    detail: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_role: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    approval: Mapped[str] = mapped_column(String(16), default="none")  # none | required | approved | rejected
    approval_why: Mapped[str] = mapped_column(Text, default="")
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_jobs_state", "state", "run_at"),)


class JobItemRow(Base):
    """One target of one run of a job, with how it ended."""

    __tablename__ = "job_items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    run: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(64))  # a room or a meter id
    target_type: Mapped[str] = mapped_column(String(8))  # room | meter
    link: Mapped[str | None] = mapped_column(String(64), nullable=True)  # commands are paced per link
    state: Mapped[str] = mapped_column(String(16))  # pending running done failed cancelled
    detail: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("job_id", "run", "target", name="uq_job_items_job_run_target"),
        Index("ix_job_items_state", "job_id", "run", "state"),
    )


class PreparedAccountRow(Base):
    """An account prepared in advance (by an import), opened later by an ``open`` job."""

    __tablename__ = "prepared_accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    # the room while prepared, NULL once opened or withdrawn: at most one prepared account per room
    pending_room_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    state: Mapped[str] = mapped_column(String(16))  # prepared | opened | withdrawn
    customer: Mapped[str] = mapped_column(String(200))
    # the back office's customer (scada.billing) the account is opened for, when that feature runs
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("billing_customers.id"), nullable=True, index=True)
    contact_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contact_email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    language: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))  # prepaid | postpaid
    tariff_id: Mapped[str] = mapped_column(String(64))  # the electricity (or water) tariff
    water_tariff_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opening_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_limit_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    thresholds: Mapped[Any] = mapped_column(JSON, nullable=True)
    source: Mapped[str] = mapped_column(String(200), default="")  # the imported file and line
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # once opened
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    opening_readings: Mapped[Any] = mapped_column(JSON, nullable=True)  # {meter: "1234.56"}


class ReminderRow(Base):
    """Reminders sent to an account while it stays at a balance level."""

    __tablename__ = "message_reminders"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
