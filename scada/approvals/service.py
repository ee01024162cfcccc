"""Four-eyes approvals: request, approve or reject by another user, expire, run exactly once.

A feature that wants a second user's agreement before an action registers an *executor* for
its kind of request, and asks instead of acting::

    approvals.register("account.refund", run_refund)
    view = await approvals.request("account.refund", "room:R1", payload, actor,
                                   reason="tenant leaves", rule=["refund 800.00 above 500.00"])

``approve`` (by a user with the ``approve`` permission who is not the requester) first moves the
request from ``pending`` to ``approved`` in one transaction holding the row's lock — of two
approvers at once, one wins — and then calls the executor with the request and the approver;
the request ends ``executed`` with the executor's result or ``failed`` with its error. Both
steps are audited with the requester and the approver.

An executor must be idempotent for a request id (e.g. by a ledger reference derived from it): a
request left ``approved`` by a crash between the two steps is run again by :meth:`resume` at
the next start.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from scada.db import Database
from scada.users.audit import Actor, AuditLog, jsonable
from scada.users.auth import Permission, UserInfo
from tags import utcnow

from .models import STATES, ApprovalRequest

__all__ = ["ApprovalError", "ApprovalService", "ApprovalView", "Executor"]

log = logging.getLogger(__name__)


class ApprovalError(Exception):
    """A refused approval operation; ``status`` is the HTTP status that fits it."""

    def __init__(self, message: str, *, status: int = 409, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class ApprovalView:
    """A request as the rest of the server sees it (immutable)."""

    id: int
    kind: str
    target: str
    payload: Any
    summary: str
    rule: list[str]
    reason: str
    requested_by: str
    requested_role: str
    requested_source: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    state: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str
    executed_at: dt.datetime | None
    result: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "target": self.target, "payload": self.payload,
            "summary": self.summary, "rule": list(self.rule), "reason": self.reason,
            "requested_by": self.requested_by, "requested_role": self.requested_role,
            "requested_source": self.requested_source, "requested_at": self.requested_at.isoformat(),
            "expires_at": self.expires_at.isoformat(), "state": self.state,
            "decided_by": self.decided_by, "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_reason": self.decision_reason,
            "executed_at": self.executed_at.isoformat() if self.executed_at else None,
            "result": self.result,
        }


def _view(r: ApprovalRequest) -> ApprovalView:
    return ApprovalView(
        r.id, r.kind, r.target, r.payload, r.summary, list(r.rule or []), r.reason, r.requested_by, r.requested_role,
        r.requested_source, r.requested_at, r.expires_at, r.state, r.decided_by, r.decided_at, r.decision_reason,
        r.executed_at, r.result,
    )


# runs an approved request: (the request, the approver) -> a JSON-able result; raising fails it
Executor = Callable[[ApprovalView, Actor], Awaitable[Any]]
_SYSTEM = Actor.system("approvals")


def _error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message if isinstance(message, str) and message else exc) or type(exc).__name__


class ApprovalService:
    """Approval requests in the database and the executors that run them once approved."""

    def __init__(self, db: Database, *, expire_after: dt.timedelta) -> None:
        self.db = db
        self.expire_after = expire_after
        self.clock: Callable[[], dt.datetime] = utcnow  # tests drive it
        self._executors: dict[str, Executor] = {}

    # -- executors --------------------------------------------------------------------------------
    def register(self, kind: str, executor: Executor) -> Callable[[], None]:
        """Run approved requests of ``kind`` with ``executor``; returns the unregister callable."""
        if kind in self._executors:
            raise ValueError(f"an executor for approval kind {kind!r} is registered already")
        self._executors[kind] = executor

        def unregister() -> None:
            if self._executors.get(kind) is executor:
                del self._executors[kind]

        return unregister

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._executors)

    # -- asking ------------------------------------------------------------------------------------
    async def request(
        self,
        kind: str,
        target: str,
        payload: dict[str, Any],
        actor: Actor,
        *,
        reason: str = "",
        rule: Sequence[str] = (),
        summary: str = "",
        expires_after: dt.timedelta | None = None,
    ) -> ApprovalView:
        """Record a pending request (audited as ``approval.request``) and return it."""
        if kind not in self._executors:
            raise ApprovalError(f"no executor for approval kind {kind!r}", status=500)
        now = self.clock()
        async with self.db.transaction() as s:
            row = ApprovalRequest(
                kind=kind, target=target[:128], payload=jsonable(payload), summary=summary, rule=list(rule),
                reason=reason, requested_by=actor.name, requested_role=actor.role[:32], requested_source=actor.source,
                requested_at=now, expires_at=now + (expires_after or self.expire_after), state="pending",
                decided_by=None, decided_at=None, decision_reason="", executed_at=None, result=None,
            )
            s.add(row)
            await s.flush()
            AuditLog.record(s, actor, "approval.request", "approval", str(row.id), reason=reason,
                            after={"kind": kind, "target": target, "rule": list(rule), "summary": summary})
            view = _view(row)
        log.info("approval requested", extra={"approval": view.id, "kind": kind, "target": target, "user": actor.name})
        return view

    # -- reading -------------------------------------------------------------------------------------
    async def get(self, approval_id: int) -> ApprovalView | None:
        await self.expire_due()
        async with self.db.reads() as s:
            row = await s.get(ApprovalRequest, approval_id)
            return _view(row) if row is not None else None

    async def list(
        self, *, state: str | None = None, requested_by: str | None = None, kind: str | None = None, limit: int = 200
    ) -> list[ApprovalView]:
        """Requests, newest first."""
        if state is not None and state not in STATES:
            raise ApprovalError(f"state: one of {', '.join(STATES)}", status=422, field="state")
        await self.expire_due()
        stmt = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(limit)
        if state is not None:
            stmt = stmt.where(ApprovalRequest.state == state)
        if requested_by is not None:
            stmt = stmt.where(ApprovalRequest.requested_by == requested_by)
        if kind is not None:
            stmt = stmt.where(ApprovalRequest.kind == kind)
        async with self.db.reads() as s:
            return [_view(r) for r in (await s.scalars(stmt)).all()]

    # -- deciding ------------------------------------------------------------------------------------
    def _check_approver(self, row: ApprovalRequest, user: UserInfo) -> None:
        if not user.can(Permission.APPROVE):
            raise ApprovalError(f"role {user.role.value} may not approve", status=403)
        if user.name == row.requested_by:
            raise ApprovalError(f"approval #{row.id}: the requester may not decide their own request; another user must", status=403)

    async def _locked(self, s: Any, approval_id: int) -> ApprovalRequest:
        row = await s.scalar(select(ApprovalRequest).where(ApprovalRequest.id == approval_id).with_for_update())
        if row is None:
            raise ApprovalError(f"no approval request {approval_id}", status=404)
        return row  # type: ignore[no-any-return]

    def _expire(self, s: Any, row: ApprovalRequest, now: dt.datetime) -> None:
        row.state = "expired"
        row.decided_at = now
        AuditLog.record(s, _SYSTEM, "approval.expire", "approval", str(row.id),
                        after={"kind": row.kind, "target": row.target, "requested_by": row.requested_by})

    async def approve(self, approval_id: int, user: UserInfo, *, source: str, reason: str = "") -> ApprovalView:
        """Approve and run a pending request. Approving again (by the same user) answers the
        request as it stands; anything else than a pending request is a 409."""
        actor = user.actor(source)
        now = self.clock()
        expired = False
        async with self.db.transaction() as s:
            row = await self._locked(s, approval_id)
            self._check_approver(row, user)
            if row.state == "pending" and row.expires_at <= now:
                self._expire(s, row, now)
                expired = True
            elif row.state != "pending":
                if row.state in ("approved", "executed", "failed") and row.decided_by == user.name:
                    return _view(row)  # a repeated approval: it ran (or runs) once
                raise ApprovalError(f"approval #{row.id} is {row.state}" + (f" (by {row.decided_by})" if row.decided_by else ""))
            else:
                if row.kind not in self._executors:
                    raise ApprovalError(f"approval #{row.id}: no executor for kind {row.kind!r} in this server", status=503)
                row.state, row.decided_by, row.decided_at, row.decision_reason = "approved", user.name, now, reason
                AuditLog.record(s, actor, "approval.approve", "approval", str(row.id), reason=reason,
                                after={"kind": row.kind, "target": row.target, "requested_by": row.requested_by,
                                       "approved_by": user.name})
            view = _view(row)
        if expired:
            raise ApprovalError(f"approval #{approval_id} expired at {view.expires_at.isoformat()}")
        log.info("approval granted", extra={"approval": view.id, "kind": view.kind, "requested_by": view.requested_by, "user": user.name})
        return await self._execute(view, actor)

    async def reject(self, approval_id: int, user: UserInfo, *, source: str, reason: str) -> ApprovalView:
        """Reject a pending request (nothing runs)."""
        if not reason.strip():
            raise ApprovalError("reason: a rejection needs a reason", status=422, field="reason")
        actor = user.actor(source)
        now = self.clock()
        expired = False
        async with self.db.transaction() as s:
            row = await self._locked(s, approval_id)
            self._check_approver(row, user)
            if row.state == "pending" and row.expires_at <= now:
                self._expire(s, row, now)
                expired = True
            elif row.state != "pending":
                if row.state == "rejected" and row.decided_by == user.name:
                    return _view(row)
                raise ApprovalError(f"approval #{row.id} is {row.state}" + (f" (by {row.decided_by})" if row.decided_by else ""))
            else:
                row.state, row.decided_by, row.decided_at, row.decision_reason = "rejected", user.name, now, reason
                AuditLog.record(s, actor, "approval.reject", "approval", str(row.id), reason=reason,
                                after={"kind": row.kind, "target": row.target, "requested_by": row.requested_by,
                                       "rejected_by": user.name})
            view = _view(row)
        if expired:
            raise ApprovalError(f"approval #{approval_id} expired at {view.expires_at.isoformat()}")
        log.info("approval rejected", extra={"approval": view.id, "kind": view.kind, "user": user.name})
        return view

    async def _execute(self, view: ApprovalView, approver: Actor) -> ApprovalView:
        executor = self._executors[view.kind]
        outcome, result = "ok", None
        try:
            result = jsonable(await executor(view, approver))
            state = "executed"
        except Exception as exc:
            state, outcome, result = "failed", "failed", {"error": _error_text(exc)}
            log.warning("approved action failed", extra={"approval": view.id, "kind": view.kind, "error": result["error"]},
                        exc_info=not hasattr(exc, "status"))
        now = self.clock()
        async with self.db.transaction() as s:
            row = await self._locked(s, view.id)
            row.state, row.result, row.executed_at = state, result, now
            AuditLog.record(s, approver, "approval.execute", "approval", str(row.id), outcome=outcome,
                            reason=row.reason, after={"kind": row.kind, "target": row.target, "requested_by": row.requested_by,
                                                      "approved_by": row.decided_by, "result": result})
            return _view(row)

    # -- housekeeping ----------------------------------------------------------------------------------
    async def expire_due(self) -> int:
        """Expire every pending request past its time (audited); returns how many."""
        now = self.clock()
        async with self.db.reads() as s:  # every sweep; mostly nothing is due: no write lock for it
            due = (await s.scalars(select(ApprovalRequest.id).where(
                ApprovalRequest.state == "pending", ApprovalRequest.expires_at <= now))).all()
        expired = 0
        for approval_id in due:
            async with self.db.transaction() as s:
                row = await self._locked(s, approval_id)
                if row.state == "pending" and row.expires_at <= now:
                    self._expire(s, row, now)
                    expired += 1
        if expired:
            log.info("approval requests expired", extra={"count": expired})
        return expired

    async def resume(self, kinds: Sequence[str] | None = None) -> int:
        """Run requests left ``approved`` (a stop between approval and execution) of the
        registered kinds (or of ``kinds``); returns how many ran."""
        wanted = set(kinds) if kinds is not None else set(self._executors)
        async with self.db.reads() as s:  # only reads: no write lock at start-up
            rows = (await s.scalars(select(ApprovalRequest).where(ApprovalRequest.state == "approved"))).all()
        ran = 0
        for row in rows:
            if row.kind in wanted and row.kind in self._executors:
                view = _view(row)
                log.info("approved request resumed", extra={"approval": view.id, "kind": view.kind})
                await self._execute(view, Actor(row.decided_by or "unknown", "engine", "approver"))
                ran += 1
        return ran
