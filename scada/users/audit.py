"""The audit log: who did what, to what, when, why, with the state before and after.

``record`` adds the entry to the caller's session, so it commits (or rolls back) together with
the change it describes. Entries are never updated or deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.db import Database
from scada.users.models import AuditEntry
from tags import utcnow

__all__ = ["Actor", "AuditLog", "SYSTEM", "jsonable"]

Source = Literal["cli", "api", "hmi", "opcua", "engine", "import"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user name (and role) or a system component, and through which channel."""

    name: str
    source: Source
    role: str = ""

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(f"system:{component}", "engine", "system")


SYSTEM = Actor("system", "engine", "system")


def jsonable(value: Any) -> Any:
    """Plain JSON for before/after snapshots: Decimal and dates become strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def record(
        session: AsyncSession,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str,
        *,
        reason: str = "",
        before: Any = None,
        after: Any = None,
        outcome: str = "ok",
    ) -> AuditEntry:
        entry = AuditEntry(
            ts=utcnow(),
            actor=actor.name,
            source=actor.source,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            reason=reason or "",
            outcome=outcome,
            before=jsonable(before),
            after=jsonable(after),
        )
        session.add(entry)
        return entry

    async def write(self, actor: Actor, action: str, target_type: str, target_id: str, **kw: Any) -> None:
        """Record in a transaction of its own (for refusals and failures that change nothing)."""
        async with self.db.transaction() as session:
            self.record(session, actor, action, target_type, target_id, **kw)

    async def query(
        self,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if target_type:
            stmt = stmt.where(AuditEntry.target_type == target_type)
        if target_id:
            stmt = stmt.where(AuditEntry.target_id == target_id)
        if action:
            stmt = stmt.where(AuditEntry.action.startswith(action))
        if actor:
            stmt = stmt.where(AuditEntry.actor == actor)
        if since:
            stmt = stmt.where(AuditEntry.ts >= since)
        async with self.db.sessions() as session:
            return list((await session.scalars(stmt)).all())
