"""The approval service on SQLite and PostgreSQL: four eyes, exactly once, expiry, resume."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import update

from scada.approvals.models import ApprovalRequest
from scada.approvals.service import ApprovalError, ApprovalService, ApprovalView
from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Role, UserInfo
from tags import utcnow

from ..harness import write_lock_held

CASHIER = UserInfo(1, "cash1", Role.CASHIER, True, "en", None)
SUPERVISOR = UserInfo(2, "super1", Role.SUPERVISOR, True, "en", None)
SUPERVISOR2 = UserInfo(3, "super2", Role.SUPERVISOR, True, "en", None)
ADMIN = UserInfo(4, "admin", Role.ADMIN, True, "en", None)
OPERATOR = UserInfo(5, "op1", Role.OPERATOR, True, "en", None)


class Counter:
    """An executor that counts its runs (and can be made to fail)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, str]] = []
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, view: ApprovalView, approver: Actor) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ValueError(self.fail)
        self.runs.append((view.id, approver.name))
        return {"ran": len(self.runs), "payload": view.payload}


@pytest.fixture
def service(db: Database) -> ApprovalService:
    return ApprovalService(db, expire_after=dt.timedelta(hours=1))


async def test_only_another_user_with_approve_decides_and_it_runs_once(service: ApprovalService, db: Database) -> None:
    run = Counter()
    service.register("test.kind", run)
    view = await service.request("test.kind", "room:R1", {"amount": "800.00"}, CASHIER.actor("api"),
                                 reason="tenant leaves", rule=["refund 800.00 above 500.00"], summary="refund")
    assert view.state == "pending" and view.requested_by == "cash1" and view.rule == ["refund 800.00 above 500.00"]
    # the requester may not decide, even with approve (an admin asking for himself)
    with pytest.raises(ApprovalError) as err:
        await service.approve(view.id, CASHIER, source="api")
    assert err.value.status == 403
    mine = await service.request("test.kind", "room:R1", {}, ADMIN.actor("api"))
    for decide in (service.approve(mine.id, ADMIN, source="api"), service.reject(mine.id, ADMIN, source="api", reason="x")):
        with pytest.raises(ApprovalError) as err:
            await decide
        assert err.value.status == 403 and "requester" in err.value.message
    with pytest.raises(ApprovalError) as err:
        await service.approve(view.id, OPERATOR, source="api")
    assert err.value.status == 403
    assert run.runs == [] and (await service.get(view.id)).state == "pending"  # type: ignore[union-attr]

    done = await service.approve(view.id, SUPERVISOR, source="hmi", reason="checked the receipt")
    assert done.state == "executed" and done.decided_by == "super1" and done.result == {"ran": 1, "payload": {"amount": "800.00"}}
    assert run.runs == [(view.id, "super1")]
    # approving again answers the request as it stands; another approver gets a 409
    again = await service.approve(view.id, SUPERVISOR, source="hmi")
    assert again.state == "executed" and run.runs == [(view.id, "super1")]
    with pytest.raises(ApprovalError) as err:
        await service.approve(view.id, SUPERVISOR2, source="api")
    assert err.value.status == 409 and "executed" in err.value.message
    with pytest.raises(ApprovalError) as err:
        await service.reject(view.id, SUPERVISOR2, source="api", reason="too late")
    assert err.value.status == 409

    audit = AuditLog(db)
    actions = {(e.action, e.actor) for e in await audit.query(target_type="approval", target_id=str(view.id))}
    assert actions == {("approval.request", "cash1"), ("approval.approve", "super1"), ("approval.execute", "super1")}
    executed = (await audit.query(action="approval.execute", target_id=str(view.id)))[0]
    assert executed.after["requested_by"] == "cash1" and executed.after["approved_by"] == "super1"


async def test_two_approvers_at_once_run_it_once(service: ApprovalService) -> None:
    run = Counter()
    service.register("test.kind", run)
    view = await service.request("test.kind", "x", {}, CASHIER.actor("api"))
    results = await asyncio.gather(
        service.approve(view.id, SUPERVISOR, source="api"), service.approve(view.id, SUPERVISOR2, source="api"),
        service.approve(view.id, ADMIN, source="api"), return_exceptions=True,
    )
    assert len(run.runs) == 1
    ok = [r for r in results if isinstance(r, ApprovalView)]
    refused = [r for r in results if isinstance(r, ApprovalError)]
    assert len(ok) == 1 and len(refused) == 2 and all(r.status == 409 for r in refused)


async def test_reject_runs_nothing_and_needs_a_reason(service: ApprovalService, db: Database) -> None:
    run = Counter()
    service.register("test.kind", run)
    view = await service.request("test.kind", "x", {}, CASHIER.actor("api"))
    with pytest.raises(ApprovalError) as err:
        await service.reject(view.id, SUPERVISOR, source="api", reason=" ")
    assert err.value.status == 422 and err.value.field == "reason"
    rejected = await service.reject(view.id, SUPERVISOR, source="api", reason="no receipt")
    assert rejected.state == "rejected" and rejected.decision_reason == "no receipt" and rejected.decided_by == "super1"
    with pytest.raises(ApprovalError):
        await service.approve(view.id, SUPERVISOR2, source="api")
    assert run.runs == []
    assert [v.id for v in await service.list(state="rejected")] == [view.id]
    assert await service.list(state="pending") == []
    assert [v.id for v in await service.list(requested_by="cash1")] == [view.id]
    with pytest.raises(ApprovalError) as err:
        await service.list(state="nonsense")
    assert err.value.status == 422


async def test_requests_expire(service: ApprovalService, db: Database) -> None:
    run = Counter()
    service.register("test.kind", run)
    now = utcnow()
    service.clock = lambda: now
    first = await service.request("test.kind", "x", {}, CASHIER.actor("api"))
    second = await service.request("test.kind", "y", {}, CASHIER.actor("api"), expires_after=dt.timedelta(hours=5))
    service.clock = lambda: now + dt.timedelta(hours=1)
    with pytest.raises(ApprovalError) as err:
        await service.approve(first.id, SUPERVISOR, source="api")
    assert err.value.status == 409 and "expired" in err.value.message
    assert (await service.get(first.id)).state == "expired"  # type: ignore[union-attr]
    assert (await service.get(second.id)).state == "pending"  # type: ignore[union-attr]
    service.clock = lambda: now + dt.timedelta(hours=6)
    assert await service.expire_due() == 1
    assert [v.state for v in await service.list()] == ["expired", "expired"]
    assert run.runs == []
    expired = await AuditLog(db).query(action="approval.expire")
    assert {e.target_id for e in expired} == {str(first.id), str(second.id)}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_sweep_with_nothing_due_takes_no_write_lock(service: ApprovalService, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    service.register("test.kind", Counter())
    await service.request("test.kind", "x", {}, CASHIER.actor("api"))  # pending, not yet due
    with write_lock_held(db.url.database or "", monkeypatch):  # a sweep that took the lock fails soon
        assert await service.expire_due() == 0


async def test_a_failing_action_is_recorded_and_not_retried(service: ApprovalService) -> None:
    run = Counter()
    run.fail = "amount: 900.00 is more than the balance 10.00"
    service.register("test.kind", run)
    view = await service.request("test.kind", "x", {}, CASHIER.actor("api"))
    failed = await service.approve(view.id, SUPERVISOR, source="api")
    assert failed.state == "failed" and failed.result == {"error": "amount: 900.00 is more than the balance 10.00"}
    run.fail = None
    assert (await service.approve(view.id, SUPERVISOR, source="api")).state == "failed"
    assert await service.resume() == 0 and run.runs == []


async def test_an_approval_interrupted_before_it_ran_runs_at_the_next_start(service: ApprovalService, db: Database) -> None:
    run = Counter()
    run.gate = asyncio.Event()
    service.register("test.kind", run)
    view = await service.request("test.kind", "x", {"n": 1}, CASHIER.actor("api"))
    task = asyncio.create_task(service.approve(view.id, SUPERVISOR, source="api"))
    for _ in range(200):
        if (await service.get(view.id)).state == "approved":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    task.cancel()  # the server stops while the action waits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await service.get(view.id)).state == "approved" and run.runs == []  # type: ignore[union-attr]

    restarted = ApprovalService(db, expire_after=dt.timedelta(hours=1))
    again = Counter()
    restarted.register("test.kind", again)
    assert await restarted.resume() == 1
    assert again.runs == [(view.id, "super1")]
    assert (await restarted.get(view.id)).state == "executed"  # type: ignore[union-attr]
    assert await restarted.resume() == 0


async def test_unknown_kinds_and_ids(service: ApprovalService, db: Database) -> None:
    with pytest.raises(ApprovalError):
        await service.request("nobody.runs.this", "x", {}, CASHIER.actor("api"))
    with pytest.raises(ApprovalError) as err:
        await service.approve(999, SUPERVISOR, source="api")
    assert err.value.status == 404
    run = Counter()
    unregister = service.register("test.kind", run)
    with pytest.raises(ValueError):
        service.register("test.kind", run)
    view = await service.request("test.kind", "x", {}, CASHIER.actor("api"))
    unregister()
    with pytest.raises(ApprovalError) as err:
        await service.approve(view.id, SUPERVISOR, source="api")
    assert err.value.status == 503
    async with db.transaction() as s:  # the state only moves on: nothing approved it
        await s.execute(update(ApprovalRequest).where(ApprovalRequest.id == view.id).values(state="pending"))
    assert (await service.get(view.id)).state == "pending"  # type: ignore[union-attr]
