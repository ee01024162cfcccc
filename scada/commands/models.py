"""The ``commands`` table: every command to a meter (relay, valve, parameter block), its outcome and its timing.

Rows are written when a command is accepted (status ``queued``), when it starts (``running``)
and when it ends (``confirmed``, ``failed``, ``denied``, ``superseded``); the audit log holds
the same events with who and why. ``relay_fault`` is the condition a finished command left
(True: the meter did not follow), so it survives a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["CommandRow", "FINISHED", "PENDING"]

PENDING = ("queued", "running")
FINISHED = ("confirmed", "failed", "denied", "superseded")


class CommandRow(Base):
    """One relay or valve command: who asked, why, and how it ended."""
    __tablename__ = "commands"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # connect | disconnect | write
    status: Mapped[str] = mapped_column(String(16))  # queued running confirmed failed denied superseded
    detail: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    relay_fault: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # parameter writes: the block, the value written and what it read back (revision 1001)
    block: Mapped[str | None] = mapped_column(String(32), nullable=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    readback: Mapped[Any] = mapped_column(JSON, nullable=True)
    # who asked, to find the outcome after a restart (a job item: job:<id>:<run>:<target>)
    reference: Mapped[str | None] = mapped_column(String(160), nullable=True)

    __table_args__ = (
        Index("ix_commands_meter", "meter_id", "id"),
        Index("ix_commands_status", "status"),
        Index("ix_commands_reference", "reference"),
    )
