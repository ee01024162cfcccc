"""The audit log: who did what, to what, when, why, with the state before and after.

``record`` adds the entry to the caller's session, so it commits (or rolls back) together with
the change it describes. Entries are never updated or deleted.

Every entry has a bounded size whatever its callers pass: the text columns are cut to their
column's length (:data:`LIMITS`, ``reason`` to :data:`MAX_REASON`), control characters (NUL
breaks PostgreSQL's text) are replaced, and a ``before``/``after`` snapshot larger than
:data:`MAX_SNAPSHOT` characters of JSON is kept as its size and a prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.core.runtime import database_locked
from scada.db import Database
from scada.users.models import AuditEntry
from tags import utcnow

__all__ = ["Actor", "AuditLog", "LIMITS", "MAX_REASON", "MAX_SNAPSHOT", "SYSTEM", "bounded", "jsonable"]

# the column lengths of audit_log (scada/users/models.py)
LIMITS = {"actor": 64, "source": 16, "action": 64, "target_type": 32, "target_id": 128, "outcome": 16}
MAX_REASON = 500
MAX_SNAPSHOT = 16_000  # characters of JSON: a tariff with its whole definition fits
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# An entry written on its own (a refusal, a sign-in, the API router's record of a request) has
# no change to roll back with it: when SQLite's write lock stays taken past a writer's wait (an
# overloaded server) it is tried again rather than lost, this many times in all.
WRITE_ATTEMPTS = 3
_RETRY_PAUSE_S = 0.5

log = logging.getLogger(__name__)

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


def bounded(text: object, limit: int) -> str:
    """``text`` as a string of at most ``limit`` characters, control characters replaced."""
    value = text if isinstance(text, str) else str(text)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return _CONTROL.sub("\ufffd", value) if _CONTROL.search(value) else value


def _snapshot(value: Any) -> Any:
    data = jsonable(value)
    if data is None:
        return None
    text = json.dumps(data, ensure_ascii=False, default=str)
    if len(text) <= MAX_SNAPSHOT:
        return data
    return {"truncated": True, "size": len(text), "prefix": bounded(text, 500)}


def jsonable(value: Any) -> Any:
    """Plain JSON for before/after snapshots: Decimal and dates become strings."""
    if isinstance(value, str):
        return _CONTROL.sub("\ufffd", value) if _CONTROL.search(value) else value
    if isinstance(value, dict):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        # never expand a huge exponent into digits: "1E+200000000" stays as it is
        return format(value, "f") if isinstance(exponent, int) and abs(exponent) <= 64 else str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return jsonable(str(value))


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
            actor=bounded(actor.name, LIMITS["actor"]),
            source=bounded(actor.source, LIMITS["source"]),
            action=bounded(action, LIMITS["action"]),
            target_type=bounded(target_type, LIMITS["target_type"]),
            target_id=bounded(target_id, LIMITS["target_id"]),
            reason=bounded(reason or "", MAX_REASON),
            outcome=bounded(outcome, LIMITS["outcome"]),
            before=_snapshot(before),
            after=_snapshot(after),
        )
        session.add(entry)
        return entry

    async def write(self, actor: Actor, action: str, target_type: str, target_id: str, **kw: Any) -> None:
        """Record in a transaction of its own (for refusals and failures that change nothing).

        A locked SQLite database is waited out up to :data:`WRITE_ATTEMPTS` times; if it still
        fails, the entry goes to the error log whole before the error is raised, so that it is
        never simply gone."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self.db.transaction() as session:
                    self.record(session, actor, action, target_type, target_id, **kw)
                return
            except Exception as exc:
                locked = database_locked(exc)
                if not locked or attempt == WRITE_ATTEMPTS:
                    log.error(
                        "audit entry not written",
                        extra={"actor": actor.name, "source": actor.source, "action": action, "target_type": target_type,
                               "target_id": target_id, "attempts": attempt, "entry": {k: _snapshot(v) for k, v in kw.items()}},
                    )
                    raise
                log.warning("audit entry met a locked database; trying again",
                            extra={"actor": actor.name, "action": action, "target_id": target_id, "attempt": attempt})
            await asyncio.sleep(_RETRY_PAUSE_S)

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
        async with self.db.reads() as session:
            return list((await session.scalars(stmt)).all())
