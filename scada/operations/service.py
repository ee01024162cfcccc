"""The jobs engine: batch and scheduled jobs, stored in the database, paced, resumable.

A job (:class:`JobService.create`) names a kind (:mod:`.kinds`), its targets (:mod:`.targets`),
its parameters, when it runs (``run_at``: now when None) and whether it repeats (``repeat``: a
cron expression in the site's time zone). Its life::

    scheduled ──(due, approved if it must be)──► running ──► done | failed
        │                                           │
        └────────────── cancel ─────────────────────┴──► cancelled
    (a repeating job goes back to scheduled after each run, with its next run time)

* **Persistence.** Jobs and their items are rows (``jobs``, ``job_items``). When a run starts,
  its targets are resolved and one item per target is inserted, unique by (job, run, target).
  An item is marked ``running`` (committed) before it is worked on and ``done``/``failed``
  after. A scheduled job whose time passed while the server was down runs at start; a job
  left ``running`` by a crash resumes with the items not yet done — an item that was under
  way is redone idempotently (see :mod:`.kinds`), a done one never again.
* **Cancel.** A scheduled job is cancelled at once; a running one finishes the items under way
  and ends ``cancelled``: done items stay done, the others (an item waiting between two tries
  too) end cancelled. A cancel stored just before a crash is carried out at the restart: the
  items that were under way are finished, the rest are not started.
* **Permissions** are the item's own: the creator needs the kind's permission (a cashier's job
  cannot switch relays), checked at creation and again when the job runs, and every command
  goes through the command path as that user.
* **Four eyes.** A job that creates money above ``approval_money_above`` or switches more than
  ``approval_relay_rooms_above`` rooms waits (``scheduled``, approval ``required``) until a
  user with the ``approve`` permission other than its creator approves it. Where the approvals
  service runs (:mod:`scada.approvals`), the job asks it (an approval request of kind ``job``,
  on the Approvals page with the others) and the approved request marks the job approved,
  once; ``POST /jobs/{id}/approve`` decides that same request. An approval is good for one
  run: a repeating job that needed one asks again as its next run is scheduled (so it can be
  approved ahead of its time), and a run whose targets, resolved when it starts, need an
  approval the job did not have (a filter that grew) waits for one.
* **Pacing.** Items of kinds that talk to meters run per link, ``link_in_flight`` at a time,
  ``link_gap_s`` apart, and each waits (up to ``max_defer_s``) while the link has polls due:
  a batch takes the link's spare time and never starves polling.
* **Retries.** An item that fails in a way a later try may get past (the meter did not
  answer) is tried again ``item_retries`` times with backoff, then reported; the rest go on.

Listeners (:meth:`JobService.subscribe`) get a :class:`JobEvent` at each change of a job and
each finished item (the HMI pushes them over its WebSocket).
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from scada.alarms.clock import Clock, SystemClock
from scada.core.runtime import Restart, TaskOwner
from scada.db import Database
from scada.prepaid.money import format_minor
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission, UserInfo, UserStore

from .kinds import KINDS, ItemCall, JobContext, Kind, Outcome, ParamError
from .models import JobItemRow, JobRow
from .schedule import CronError, check_cron, next_run
from .targets import Selection, Target, TargetError, TargetsIn, check_listed, resolve_targets

__all__ = ["JobError", "JobEvent", "JobService", "JobView"]

log = logging.getLogger(__name__)

OPEN_STATES = ("scheduled", "running")
APPROVAL_KIND = "job"  # the kind of the approval requests jobs ask for


class JobError(Exception):
    """A refused request: ``status`` 403/404/409/422/503, ``field`` naming the bad input."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class JobView:
    """A job as the API and pages show it: its definition, state, approval and item counts."""


    id: int
    kind: str
    targets: dict[str, Any]
    params: dict[str, Any]
    reason: str
    state: str
    run: int
    run_at: dt.datetime | None
    repeat: str | None
    detail: str
    created_by: str
    created_at: dt.datetime
    approval: str
    approval_why: str
    approved_by: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    items: list[dict[str, Any]] | None = None

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "items"}
        for key in ("run_at", "created_at", "started_at", "finished_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        out["pending"] = max(0, self.total - self.done - self.failed - self.cancelled)
        if self.items is not None:
            out["items"] = self.items
        return out


@dataclass(frozen=True)
class JobEvent:
    """A change of a job: its state and counts, and the item that just finished (if any)."""

    job_id: int
    state: str
    total: int
    done: int
    failed: int
    cancelled: int
    item: dict[str, Any] | None = None


@dataclass
class _Counts:
    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0


def _item_json(row: JobItemRow) -> dict[str, Any]:
    return {
        "target": row.target, "type": row.target_type, "state": row.state, "detail": row.detail,
        "attempts": row.attempts, "result": row.result, "link": row.link, "updated_at": row.updated_at.isoformat(),
    }


@dataclass
class _Run:
    job_id: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    counts: _Counts = field(default_factory=_Counts)


class JobService:
    """The jobs engine: creates, schedules, approves, runs (paced, resumable) and cancels batch jobs."""

    def __init__(
        self,
        db: Database,
        ctx: JobContext,
        users: UserStore,
        tasks: TaskOwner,
        *,
        clock: Clock | None = None,
        link_backlog: Callable[[str], int] | None = None,
        selection: Selection | None = None,
        approvals: Any = None,
    ) -> None:
        self.approvals = approvals  # scada.approvals.service.ApprovalService, when it runs
        self._unregister: Callable[[], None] | None = None
        if approvals is not None:
            self._unregister = approvals.register(APPROVAL_KIND, self._approved)
        self.db = db
        self.ctx = ctx
        self.config = ctx.config
        self.users = users
        self.tasks = tasks
        self.clock: Clock = clock or SystemClock()
        self.link_backlog = link_backlog or (lambda _link: 0)
        self.selection = selection or Selection()
        self._runs: dict[int, _Run] = {}
        self._listeners: list[Callable[[JobEvent], None]] = []
        self._wake: asyncio.Event = asyncio.Event()
        self._idle_waiters: list[asyncio.Future[None]] = []

    # -- listeners ---------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every :class:`JobEvent`; returns the unsubscribe callable."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("job listener failed", extra={"job": event.job_id})

    # -- creating ------------------------------------------------------------------------------
    def kind(self, name: str) -> Kind:
        kind = KINDS.get(name)
        if kind is None:
            raise JobError(422, f"kind: unknown kind {name!r} (kinds: {', '.join(KINDS)})", field="kind")
        missing = [n for n in kind.needs if getattr(self.ctx, n) is None]
        if missing:
            raise JobError(503, f"a {name} job needs parts that are not running on this server ({', '.join(missing)})", field="kind")
        return kind

    def _check_permission(self, kind: Kind, user: UserInfo) -> None:
        if not user.can(kind.permission):
            raise JobError(403, f"role {user.role.value} may not run {kind.name} jobs (they need {kind.permission.value})")

    def _targets(self, kind: Kind, targets: TargetsIn, params: dict[str, Any]) -> list[Target]:
        snapshot = self.ctx.assets.snapshot
        return resolve_targets(
            targets, kind.target_type, snapshot, self.ctx.tagdb, selection=self.selection,
            meter_ok=lambda m: kind.meter_ok(m, params, self.ctx),
        )

    def _approval(self, kind: Kind, params: dict[str, Any], targets: list[Target]) -> str:
        """Why the job needs a supervisor's approval ("" when it does not)."""
        cfg = self.config
        snapshot = self.ctx.assets.snapshot
        rooms = sorted({t.id if t.type == "room" else (snapshot.meters[t.id].room_id or t.id) for t in targets})
        money = kind.money_minor(params, rooms, self.ctx)
        limit = int(cfg.approval_money_above.scaleb(self.ctx.minor_units))
        if money > limit:
            m = self.ctx.minor_units
            return f"it creates {format_minor(money, m)} (more than {format_minor(limit, m)})"
        limit_item = (self.ctx.approval_limits or {}).get(kind.name)
        if limit_item is not None and (most := kind.item_money_minor(params, rooms, self.ctx)) > limit_item:
            m = self.ctx.minor_units
            return f"an item creates {format_minor(most, m)} (more than the approvals limit {format_minor(limit_item, m)})"
        if kind.name == "relay" and len(rooms) > cfg.approval_relay_rooms_above:
            return f"it switches the supply of {len(rooms)} rooms (more than {cfg.approval_relay_rooms_above})"
        return ""

    async def _parse(self, kind_name: str, targets: Any, params: Any, user: UserInfo) -> tuple[Kind, TargetsIn, dict[str, Any]]:
        kind = self.kind(kind_name)
        self._check_permission(kind, user)
        if not isinstance(params, dict):
            raise JobError(422, "params: expected an object", field="params")
        try:
            normalised = await kind.parse(params, self.ctx)
        except ParamError as exc:
            raise JobError(422, str(exc), field=exc.field) from None
        if not isinstance(targets, TargetsIn):
            try:
                targets = TargetsIn.model_validate(targets)
            except ValueError as exc:
                raise JobError(422, f"targets: {exc}", field="targets") from None
        try:
            check_listed(targets, self.ctx.assets.snapshot)
        except TargetError as exc:
            raise JobError(422, str(exc), field=exc.field) from None
        return kind, targets, normalised

    async def preview(self, kind_name: str, targets: Any, params: Any, user: UserInfo) -> dict[str, Any]:
        """What a job would act on now: the count and the first targets, and whether it needs approval."""
        kind, parsed, normalised = await self._parse(kind_name, targets, params, user)
        try:
            resolved = self._targets(kind, parsed, normalised)
        except TargetError as exc:
            raise JobError(422, str(exc), field=exc.field) from None
        return {
            "kind": kind.name, "count": len(resolved), "target_type": kind.target_type,
            "targets": [t.id for t in resolved[:200]], "approval": self._approval(kind, normalised, resolved) or None,
        }

    async def create(
        self,
        kind_name: str,
        targets: Any,
        params: Any,
        *,
        user: UserInfo,
        actor: Actor,
        run_at: dt.datetime | None = None,
        repeat: str | None = None,
        reason: str = "",
    ) -> JobView:
        kind, parsed, normalised = await self._parse(kind_name, targets, params, user)
        if run_at is not None and run_at.tzinfo is None:
            raise JobError(422, "run_at: a time with a UTC offset is required", field="run_at")
        cron = None
        now = self.clock.now()
        if repeat is not None:
            try:
                cron = check_cron(repeat)
            except CronError as exc:
                raise JobError(422, f"repeat: {exc}", field="repeat") from None
            if run_at is None:
                run_at = next_run(cron, now, self.ctx.tz)
        try:
            resolved = self._targets(kind, parsed, normalised)
        except TargetError as exc:
            raise JobError(422, str(exc), field=exc.field) from None
        if len(resolved) > self.config.max_targets:
            raise JobError(422, f"targets: {len(resolved)} targets; a job takes at most {self.config.max_targets}", field="targets")
        if not resolved and parsed.rooms is not None:
            raise JobError(422, f"targets: none of the rooms has anything a {kind.name} job can act on", field="targets")
        why = self._approval(kind, normalised, resolved)
        async with self.db.transaction() as s:
            row = JobRow(
                kind=kind.name, targets=parsed.as_json(), params=normalised, reason=reason.strip(),
                run_at=run_at.astimezone(dt.UTC) if run_at is not None else None, repeat=cron, state="scheduled", run=0,
                detail="", created_by=user.name, created_role=user.role.value, source=actor.source, created_at=now,
                approval="required" if why else "none", approval_why=why, updated_at=now,
            )
            s.add(row)
            await s.flush()
            AuditLog.record(s, actor, "job.create", "job", str(row.id), reason=reason, after={
                "kind": kind.name, "targets": parsed.as_json(), "params": normalised, "run_at": row.run_at, "repeat": cron,
                "count": len(resolved), "approval": row.approval, "approval_why": why,
            })
            view = _view(row, _Counts(len(resolved)))
        if why and self.approvals is not None:
            await self._request_approval(view.id, kind, parsed.as_json(), normalised, len(resolved), actor, reason, why, view.run_at)
            view = await self.get(view.id, items=False)
        log.info("job created", extra={"job": view.id, "kind": kind.name, "targets": len(resolved), "user": user.name,
                                       "run_at": view.run_at.isoformat() if view.run_at else "now", "approval": view.approval})
        self._emit(JobEvent(view.id, view.state, len(resolved), 0, 0, 0))
        self._wake.set()
        return view

    # -- approval and cancel --------------------------------------------------------------------
    async def _request_approval(self, job_id: int, kind: Kind, targets: dict[str, Any], params: dict[str, Any], count: int,
                                actor: Actor, reason: str, why: str, run_at: dt.datetime | None) -> None:
        """Ask the approvals service to approve the job's next run (its creator asks). A request
        for a run days ahead (a monthly job's next run) stays open until the usual window after
        that run's time, not the usual window from now: it would expire long before its run."""
        assert self.approvals is not None
        ahead = run_at - self.clock.now() if run_at is not None else None
        request = await self.approvals.request(
            APPROVAL_KIND, str(job_id), {"job": job_id, "kind": kind.name, "targets": targets, "params": params, "count": count},
            actor, reason=reason, rule=[why], summary=f"job {job_id}: {kind.name} of {count} {kind.target_type}s",
            expires_after=ahead + self.approvals.expire_after if ahead is not None and ahead > dt.timedelta(0) else None,
        )
        async with self.db.transaction() as s:
            stored = await s.get(JobRow, job_id)
            assert stored is not None
            stored.detail = f"waits for approval request {request.id}"

    async def _require_approval(self, job_id: int, kind: Kind, targets: list[Target], why: str) -> None:
        """The job's next run needs a supervisor's approval: it waits (scheduled) until it has one."""
        now = self.clock.now()
        async with self.db.transaction() as s:
            row = await s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.state != "scheduled" or row.approval != "none":
                return  # approved for this run already, or already waiting
            row.approval, row.approval_why, row.approved_by, row.approved_at = "required", why, None, None
            row.detail, row.updated_at = f"run {row.run + 1} waits for approval: {why}", now
            AuditLog.record(s, Actor.system("jobs"), "job.approval_required", "job", str(job_id),
                            after={"run": row.run + 1, "why": why, "count": len(targets)})
            actor = Actor(row.created_by, row.source, row.created_role)  # type: ignore[arg-type]
            reason, targets_json, params, run_at = row.reason, dict(row.targets or {}), dict(row.params or {}), row.run_at
        log.info("job run waits for approval", extra={"job": job_id, "kind": kind.name, "targets": len(targets), "why": why})
        if self.approvals is not None:
            await self._request_approval(job_id, kind, targets_json, params, len(targets), actor, reason, why, run_at)
        self._emit(JobEvent(job_id, "scheduled", len(targets), 0, 0, 0))

    async def _approved(self, request: Any, approver: Actor) -> dict[str, Any]:
        """The approvals service's executor: an approved request lets its job run (once)."""
        job_id = int(request.payload["job"])
        async with self.db.transaction() as s:
            row = await s.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobError(404, f"no job {job_id}")
            if row.state != "scheduled" or row.approval != "required":
                return {"job": job_id, "state": row.state, "approval": row.approval}
            row.approval, row.approved_by, row.approved_at = "approved", approver.name, self.clock.now()
            row.detail, row.updated_at = f"approved by {approver.name} (approval request {request.id})", self.clock.now()
            AuditLog.record(s, approver, "job.approve", "job", str(job_id), reason=f"approval request {request.id}",
                            after={"kind": row.kind, "created_by": row.created_by, "why": row.approval_why})
        self._wake.set()
        return {"job": job_id, "state": "scheduled", "approval": "approved"}

    async def approve(self, job_id: int, user: UserInfo, actor: Actor, reason: str = "") -> JobView:
        if not user.can(Permission.APPROVE):
            raise JobError(403, f"role {user.role.value} may not approve jobs (it needs the approve permission)")
        if self.approvals is not None:
            return await self._approve_request(job_id, user, actor, reason)
        async with self.db.transaction() as s:
            row = await s.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobError(404, f"no job {job_id}")
            if row.approval != "required":
                raise JobError(409, f"job {job_id} does not wait for an approval (approval: {row.approval})")
            if row.state != "scheduled":
                raise JobError(409, f"job {job_id} is {row.state}")
            if row.created_by == user.name:
                raise JobError(403, "the approving user must differ from the job's creator")
            row.approval, row.approved_by, row.approved_at, row.updated_at = "approved", user.name, self.clock.now(), self.clock.now()
            AuditLog.record(s, actor, "job.approve", "job", str(job_id), reason=reason,
                            after={"kind": row.kind, "created_by": row.created_by, "why": row.approval_why})
        self._wake.set()
        return await self.get(job_id)

    async def _approve_request(self, job_id: int, user: UserInfo, actor: Actor, reason: str) -> JobView:
        from scada.approvals.service import ApprovalError  # noqa: PLC0415 - only where the approvals service runs

        view = await self.get(job_id, items=False)
        if view.approval != "required" or view.state != "scheduled":
            raise JobError(409, f"job {job_id} does not wait for an approval (approval: {view.approval}, state: {view.state})")
        pending = [r for r in await self.approvals.list(state="pending", kind=APPROVAL_KIND) if r.target == str(job_id)]
        if not pending:
            raise JobError(409, f"job {job_id} has no pending approval request (it may have expired: create the job again)")
        try:
            await self.approvals.approve(pending[0].id, user, source=actor.source, reason=reason)
        except ApprovalError as exc:
            raise JobError(exc.status, exc.message, field=exc.field) from None
        return await self.get(job_id)

    async def cancel(self, job_id: int, user: UserInfo, actor: Actor, reason: str = "") -> JobView:
        async with self.db.transaction() as s:
            row = await s.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise JobError(404, f"no job {job_id}")
            kind = KINDS.get(row.kind)
            if row.created_by != user.name and not (kind is not None and user.can(kind.permission)):
                raise JobError(403, f"only its creator or a user who may run {row.kind} jobs may cancel job {job_id}")
            if row.state not in OPEN_STATES:
                raise JobError(409, f"job {job_id} is {row.state} already")
            row.cancelled_by, row.updated_at = user.name, self.clock.now()
            if row.state == "scheduled":
                row.state, row.finished_at, row.detail = "cancelled", self.clock.now(), f"cancelled by {user.name}"
            AuditLog.record(s, actor, "job.cancel", "job", str(job_id), reason=reason, after={"state_was": row.state})
            state = row.state
        run = self._runs.get(job_id)
        if run is not None:
            run.cancel.set()
        else:
            self._emit(JobEvent(job_id, state, 0, 0, 0, 0))
        self._wake.set()
        return await self.get(job_id)

    # -- queries ---------------------------------------------------------------------------------
    async def _counts(self, s: Any, job_ids: Sequence[int], runs: dict[int, int]) -> dict[int, _Counts]:
        out = {j: _Counts() for j in job_ids}
        if not job_ids:
            return out
        rows = (await s.execute(
            select(JobItemRow.job_id, JobItemRow.run, JobItemRow.state, func.count())
            .where(JobItemRow.job_id.in_(job_ids)).group_by(JobItemRow.job_id, JobItemRow.run, JobItemRow.state)
        )).all()
        for job_id, run, state, n in rows:
            if runs.get(job_id) != run:
                continue
            c = out[job_id]
            c.total += n
            if state == "done":
                c.done += n
            elif state == "failed":
                c.failed += n
            elif state == "cancelled":
                c.cancelled += n
        return out

    async def list(self, *, state: str | None = None, limit: int = 100) -> list[JobView]:
        stmt = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if state is not None:
            stmt = stmt.where(JobRow.state == state)
        async with self.db.reads() as s:
            rows = (await s.scalars(stmt)).all()
            counts = await self._counts(s, [r.id for r in rows], {r.id: r.run for r in rows})
        return [_view(r, counts[r.id]) for r in rows]

    async def get(self, job_id: int, *, items: bool = True, item_limit: int = 5000) -> JobView:
        async with self.db.reads() as s:
            row = await s.get(JobRow, job_id)
            if row is None:
                raise JobError(404, f"no job {job_id}")
            counts = (await self._counts(s, [job_id], {job_id: row.run}))[job_id]
            item_rows: Sequence[JobItemRow] = []
            if items:
                item_rows = (await s.scalars(
                    select(JobItemRow).where(JobItemRow.job_id == job_id, JobItemRow.run == row.run).order_by(JobItemRow.id).limit(item_limit)
                )).all()
        return _view(row, counts, [_item_json(i) for i in item_rows] if items else None)

    # -- running -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume the jobs a crash left running (the scheduler starts the due ones), and the
        approvals of jobs granted just before a crash."""
        if self.approvals is not None:
            await self.approvals.resume([APPROVAL_KIND])
        async with self.db.sessions() as s:
            running = (await s.scalars(select(JobRow.id).where(JobRow.state == "running"))).all()
        for job_id in running:
            log.info("resuming job", extra={"job": job_id})
            self._start(job_id)

    async def stop(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
        for run in self._runs.values():
            run.cancel.set()  # not a cancel of the job: the task is cancelled by its owner next

    def _start(self, job_id: int) -> None:
        if job_id in self._runs:
            return
        self._runs[job_id] = _Run(job_id)

        async def runner() -> None:
            try:
                await self._run_job(job_id)
            finally:
                self._runs.pop(job_id, None)
                self._wake.set()
                self._progress()

        self.tasks.spawn(runner, f"job:{job_id}", Restart.NEVER)

    async def run_scheduler(self) -> None:
        """Start every job that is due (and approved where it must be) at its time."""
        while True:
            self._wake.clear()
            now = self.clock.now()
            async with self.db.reads() as s:
                rows = (await s.execute(
                    select(JobRow.id, JobRow.run_at).where(JobRow.state == "scheduled", JobRow.approval.in_(("none", "approved")))
                )).all()
            later: dt.datetime | None = None
            for job_id, run_at in rows:
                if run_at is None or run_at <= now:
                    self._start(job_id)
                elif later is None or run_at < later:
                    later = run_at
            self._progress()
            timer = self.clock.timer(later) if later is not None else None
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            if timer is not None:
                waits.add(timer)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _run_job(self, job_id: int) -> None:
        run = self._runs[job_id]
        ctx = self.ctx
        async with self.db.reads() as s:
            row = await s.get(JobRow, job_id)
        if row is None or row.state not in OPEN_STATES:
            return
        kind = KINDS.get(row.kind)
        user = await self.users.get(row.created_by)
        problem = None
        if kind is None:
            problem = f"unknown kind {row.kind!r}"
        elif user is None or not user.can(kind.permission):
            problem = f"user {row.created_by} may no longer run {row.kind} jobs"
        elif any(getattr(ctx, n) is None for n in kind.needs):
            problem = f"a {row.kind} job needs parts that are not running"
        if problem is not None:
            await self._end(row.id, "failed", problem)
            return
        assert kind is not None
        if row.state == "scheduled":
            try:
                targets = self._targets(kind, TargetsIn.model_validate(row.targets), row.params)
            except (TargetError, ValueError) as exc:
                await self._end(row.id, "failed", f"targets: {exc}")
                return
            why = self._approval(kind, row.params, targets)
            if why and row.approval != "approved":
                await self._require_approval(job_id, kind, targets, why)
                return
            now = self.clock.now()
            async with self.db.transaction() as s:
                stored = await s.get(JobRow, job_id, with_for_update=True)
                assert stored is not None
                if stored.state != "scheduled":
                    return
                stored.run += 1
                stored.state, stored.started_at, stored.finished_at, stored.updated_at = "running", now, None, now
                stored.detail = ""
                for t in targets:
                    s.add(JobItemRow(job_id=job_id, run=stored.run, target=t.id, target_type=t.type, link=t.link,
                                     state="pending", detail="", attempts=0, updated_at=now))
                row_run = stored.run
            log.info("job started", extra={"job": job_id, "kind": row.kind, "run": row_run, "items": len(targets)})
        else:
            row_run = row.run
        # cancelled just before the server stopped (a crash between the cancel and the end of the
        # run): the items that were under way are finished (idempotently, so one that was done
        # is recorded done, not cancelled), the others are not started
        cancelled_before = row.state == "running" and row.cancelled_by is not None
        async with self.db.reads() as s:
            items = (await s.scalars(
                select(JobItemRow).where(JobItemRow.job_id == job_id, JobItemRow.run == row_run).order_by(JobItemRow.id)
            )).all()
        c = run.counts
        c.total = len(items)
        c.done = sum(1 for i in items if i.state == "done")
        c.failed = sum(1 for i in items if i.state == "failed")
        c.cancelled = sum(1 for i in items if i.state == "cancelled")
        todo = [i for i in items if i.state == "running"] if cancelled_before else [i for i in items if i.state in ("pending", "running")]
        self._emit(JobEvent(job_id, "running", c.total, c.done, c.failed, c.cancelled))
        actor = Actor(row.created_by, row.source, row.created_role)  # type: ignore[arg-type]
        reason = f"job {job_id} ({row.kind})" + (f": {row.reason}" if row.reason else "")
        calls = {i.id: ItemCall(job_id, row_run, row.kind, dict(row.params), i.target, actor, user, reason, resumed=i.state == "running")
                 for i in todo}
        if kind.paced:
            by_link: dict[str | None, list[JobItemRow]] = {}
            for i in todo:
                by_link.setdefault(i.link, []).append(i)
            async with asyncio.TaskGroup() as group:
                for link, link_items in by_link.items():
                    queue = list(reversed(link_items))
                    for n in range(self.config.link_in_flight):
                        group.create_task(self._worker(run, kind, queue, calls, link), name=f"job:{job_id}:{link}:{n}")
        else:
            queue = list(reversed(todo))
            async with asyncio.TaskGroup() as group:
                for n in range(self.config.workers):
                    group.create_task(self._worker(run, kind, queue, calls, None), name=f"job:{job_id}:w{n}")
        if cancelled_before:
            run.cancel.set()
        if run.cancel.is_set():
            async with self.db.reads() as s:
                cancelled_by = await s.scalar(select(JobRow.cancelled_by).where(JobRow.id == job_id))
            if cancelled_by is None:
                return  # the server is stopping: the job resumes at the next start
            now = self.clock.now()
            async with self.db.transaction() as s:
                result = await s.execute(update(JobItemRow).where(
                    JobItemRow.job_id == job_id, JobItemRow.run == row_run, JobItemRow.state == "pending",
                ).values(state="cancelled", detail=f"cancelled by {cancelled_by}", updated_at=now))
                c.cancelled += result.rowcount  # type: ignore[attr-defined]
                # an item still "running" here was stopped between two tries (no item is under
                # way once the workers are done): it ends cancelled too, with what its last try
                # found, not "running" in a job that has ended
                stopped = (await s.scalars(select(JobItemRow).where(
                    JobItemRow.job_id == job_id, JobItemRow.run == row_run, JobItemRow.state == "running",
                ).with_for_update())).all()
                for item in stopped:
                    tries = f" after {item.attempts} {'try' if item.attempts == 1 else 'tries'}" if item.attempts else ""
                    item.state, item.updated_at = "cancelled", now
                    item.detail = (f"cancelled by {cancelled_by}{tries}" + (f": {item.detail}" if item.detail else ""))[:2000]
                c.cancelled += len(stopped)
            await self._end(job_id, "cancelled", f"cancelled by {cancelled_by}: {c.done} done, {c.failed} failed, {c.cancelled} not done")
            return
        state = "failed" if c.failed else "done"
        detail = f"{c.done} of {c.total} done" + (f", {c.failed} failed" if c.failed else "")
        await self._end(job_id, state, detail, repeat=True)

    async def _worker(
        self, run: _Run, kind: Kind, queue: builtins.list[JobItemRow], calls: dict[int, ItemCall], link: str | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        while queue and not run.cancel.is_set():
            item = queue.pop()
            if link is not None:
                # take the link's spare time: wait while polls are due on it (up to max_defer_s)
                deadline = loop.time() + self.config.max_defer_s
                while self.link_backlog(link) > 0 and loop.time() < deadline and not run.cancel.is_set():
                    await asyncio.sleep(0.01)
                if run.cancel.is_set():
                    queue.append(item)
                    return
            await self._do_item(run, kind, item, calls[item.id])
            if link is not None and self.config.link_gap_s:
                await asyncio.sleep(self.config.link_gap_s)

    async def _do_item(self, run: _Run, kind: Kind, item: JobItemRow, call: ItemCall) -> None:
        attempts = item.attempts
        backoff = self.config.item_backoff_s
        outcome: Outcome | None = None
        for attempt in range(self.config.item_retries + 1):
            if attempt:
                try:
                    async with asyncio.timeout(backoff):
                        await run.cancel.wait()
                except TimeoutError:
                    pass
                if run.cancel.is_set():
                    break
                backoff = min(backoff * 2, self.config.item_backoff_max_s)
            attempts += 1
            await self._set_item(item.id, "running", outcome.detail if outcome else "", attempts, None)
            try:
                outcome = await kind.run(call, self.ctx)
            except Exception as exc:  # an item never takes its job down
                log.exception("job item failed unexpectedly", extra={"job": run.job_id, "target": item.target})
                outcome = Outcome(False, f"internal error: {exc!r}", None, retry=False)
            if outcome.ok or not outcome.retry:
                break
            call = ItemCall(call.job_id, call.run, call.kind, call.params, call.target, call.actor, call.user, call.reason, resumed=True)
        if outcome is None:
            return  # stopped before the item's first try
        if not outcome.ok and outcome.retry and run.cancel.is_set() and attempt:
            # stopping between two tries: the item stays running (it resumes at the next start,
            # or ends cancelled when the job was cancelled), with what its last try found
            await self._set_item(item.id, "running", outcome.detail, attempts, outcome.result)
            return
        state = "done" if outcome.ok else "failed"
        detail = outcome.detail if outcome.ok or attempts <= 1 else f"{outcome.detail} (after {attempts} tries)"
        await self._set_item(item.id, state, detail, attempts, outcome.result)
        c = run.counts
        if outcome.ok:
            c.done += 1
        else:
            c.failed += 1
            log.warning("job item failed", extra={"job": run.job_id, "target": item.target, "error": detail})
        self._emit(JobEvent(run.job_id, "running", c.total, c.done, c.failed, c.cancelled,
                            {"target": item.target, "state": state, "detail": detail, "attempts": attempts}))

    async def _set_item(self, item_id: int, state: str, detail: str, attempts: int, result: Any) -> None:
        async with self.db.transaction() as s:
            await s.execute(update(JobItemRow).where(JobItemRow.id == item_id).values(
                state=state, detail=detail[:2000], attempts=attempts, result=result, updated_at=self.clock.now(),
            ))

    async def _end(self, job_id: int, state: str, detail: str, *, repeat: bool = False) -> None:
        now = self.clock.now()
        async with self.db.transaction() as s:
            row = await s.get(JobRow, job_id, with_for_update=True)
            assert row is not None
            row.finished_at, row.updated_at = now, now
            row.detail = f"run {row.run}: {detail}" if row.repeat else detail
            reapprove = False
            if repeat and row.repeat and row.cancelled_by is None:
                row.state = "scheduled"
                row.run_at = next_run(row.repeat, now, self.ctx.tz)
                if row.approval == "approved":
                    # the approval was for the run that ended: the next one asks again
                    row.approval, row.approved_by, row.approved_at = "none", None, None
                    reapprove = True
            else:
                row.state = state
            AuditLog.record(s, Actor.system("jobs"), "job.end", "job", str(job_id), after={
                "state": row.state, "run": row.run, "detail": row.detail, "next_run": row.run_at if row.state == "scheduled" else None,
            }, outcome=state)
            final_state = row.state
            counts = (await self._counts(s, [job_id], {job_id: row.run}))[job_id]
        log.info("job ended", extra={"job": job_id, "state": state, "detail": detail})
        self._emit(JobEvent(job_id, final_state, counts.total, counts.done, counts.failed, counts.cancelled))
        if reapprove:
            await self._ask_ahead(job_id)

    async def _ask_ahead(self, job_id: int) -> None:
        """Ask for the approval of a repeating job's next run now, with the targets it would have
        now, so that a supervisor can approve it before its time (the run checks again)."""
        async with self.db.reads() as s:
            row = await s.get(JobRow, job_id)
        kind = KINDS.get(row.kind) if row is not None else None
        if row is None or kind is None:
            return
        try:
            targets = self._targets(kind, TargetsIn.model_validate(row.targets), row.params)
        except (TargetError, ValueError):
            return  # the run fails on them, with why
        why = self._approval(kind, row.params, targets)
        if why:
            await self._require_approval(job_id, kind, targets, why)

    # -- waiting (tests, the CLI) ------------------------------------------------------------------
    def _progress(self) -> None:
        if not self._runs:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no job is running (due jobs are started by the scheduler first)."""
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0)
                self._wake.set()
                await asyncio.sleep(0.05)
                if not self._runs:
                    return
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                await waiter


def _view(row: JobRow, counts: _Counts, items: list[dict[str, Any]] | None = None) -> JobView:
    return JobView(
        row.id, row.kind, dict(row.targets or {}), dict(row.params or {}), row.reason, row.state, row.run, row.run_at, row.repeat,
        row.detail, row.created_by, row.created_at, row.approval, row.approval_why, row.approved_by, row.started_at, row.finished_at,
        counts.total, counts.done, counts.failed, counts.cancelled, items,
    )
