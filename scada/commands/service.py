"""The one command path for relays and valves: queue, authorise, audit, write, confirm, retry.

Every supply command — from the prepaid engine, the HMI, the REST API or an OPC UA method —
goes through :meth:`CommandService.execute`:

1. *queue*: commands for one meter run one at a time; a newer command for a meter supersedes
   one still waiting (it ends ``superseded``), never one already on the wire;
2. *authorise*: a user needs ``Permission.RELAY_CONTROL``; system actors (``actor.source ==
   "engine"``) act on their own authority. A refusal ends ``denied`` and is audited;
3. *audit*: the request (who, why, when) is recorded with the command row, and the outcome
   again when it ends;
4. *write* through the :class:`SupplyDriver` (the Modbus poller: the profile's connect or
   disconnect register, through the link's scheduler), then *confirm* by reading the status
   point back until it shows the commanded state or ``confirm_timeout_s`` passes;
5. *retry* ``retries`` more times with backoff (``[commands]``), then ``confirmed`` or
   ``failed`` with the reason.

A command the meter accepts but does not follow (the status never changes) sets the condition
tag ``<meter>.relay_fault`` True; a confirmed command sets it False. A command that fails only
because the meter cannot be reached leaves it alone (``comm_ok`` reports that). Listeners
(:meth:`CommandService.subscribe`) get every finished command.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import func, select, update

from scada.commands.config import CommandsConfig
from scada.commands.models import PENDING, CommandRow
from scada.core.context import Key
from scada.core.runtime import Restart, TaskOwner
from scada.db import Database
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo, RegistryDiff
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission, UserInfo
from tags import DataType, TagDB, TagMeta, utcnow
from tags.names import meter_tag

__all__ = [
    "COMMANDS",
    "SUPPLY_DRIVER",
    "CommandKind",
    "CommandRequest",
    "CommandResult",
    "CommandService",
    "CommandTimeout",
    "SupplyDriver",
]

log = logging.getLogger(__name__)

Status = Literal["confirmed", "failed", "denied", "superseded"]


class CommandKind(str, enum.Enum):
    CONNECT = "connect"  # supply on: relay closed / valve open
    DISCONNECT = "disconnect"  # supply off: relay tripped / valve closed


@dataclass(frozen=True)
class CommandRequest:
    meter_id: str
    kind: CommandKind
    actor: Actor
    reason: str
    user: UserInfo | None = None  # None only for system actors (actor.source == "engine")


@dataclass(frozen=True)
class CommandResult:
    id: int
    meter_id: str
    kind: CommandKind
    status: Status
    detail: str
    attempts: int
    requested_at: datetime
    finished_at: datetime


class CommandTimeout(asyncio.TimeoutError):
    """The caller stopped waiting; the command goes on (see :meth:`CommandService.history`)."""

    def __init__(self, command_id: int, meter_id: str) -> None:
        super().__init__(f"command {command_id} for meter {meter_id} is still running")
        self.command_id = command_id
        self.meter_id = meter_id


class SupplyDriver(Protocol):
    """How the command path reaches a meter's relay or valve (implemented by the Modbus poller).

    Methods raise on failure; the exception's text becomes the command's detail.
    """

    def supports_supply(self, meter: MeterInfo) -> bool: ...

    async def set_supply(self, meter: MeterInfo, on: bool) -> None: ...

    async def read_supply(self, meter: MeterInfo) -> bool: ...


SUPPLY_DRIVER: Key[SupplyDriver] = Key("supply_driver", SupplyDriver)


class _Pending:
    def __init__(self, row_id: int, req: CommandRequest, meter: MeterInfo, requested_at: datetime) -> None:
        self.id = row_id
        self.req = req
        self.meter = meter
        self.requested_at = requested_at
        self.future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()


class _MeterQueue:
    def __init__(self) -> None:
        self.waiting: _Pending | None = None
        self.running: _Pending | None = None
        self.worker: asyncio.Task[None] | None = None


class CommandService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        assets: AssetRegistry,
        tagdb: TagDB,
        driver: SupplyDriver,
        config: CommandsConfig,
        tasks: TaskOwner,
    ) -> None:
        self.db = db
        self.audit = audit
        self.assets = assets
        self.tagdb = tagdb
        self.driver = driver
        self.config = config
        self.tasks = tasks
        self._queues: dict[str, _MeterQueue] = {}
        self._listeners: list[Callable[[CommandResult], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._faults: dict[str, bool] = {}
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._recover_interrupted()
        self._faults = await self._last_faults()
        self._register_tags(self.assets.snapshot)
        self._unsubscribe = self.assets.subscribe(self._registry_changed)

    async def stop(self) -> None:
        """Refuse new commands; end waiting and running ones as failed (audited)."""
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        for queue in list(self._queues.values()):
            items = (queue.running, queue.waiting)
            queue.waiting = None
            if queue.worker is not None:
                worker = queue.worker
                worker.cancel()
                await asyncio.wait([worker], timeout=5)
            for item in items:
                if item is not None and not item.future.done():
                    await self._finish(item, "failed", "the server stopped before the command completed", 0, None)

    async def _recover_interrupted(self) -> None:
        """Commands left queued or running by a crash end as failed."""
        async with self.db.transaction() as s:
            rows = (await s.scalars(select(CommandRow).where(CommandRow.status.in_(PENDING)))).all()
            now = utcnow()
            for row in rows:
                row.status = "failed"
                row.detail = "interrupted: the server stopped before the command completed"
                row.finished_at = now
                AuditLog.record(
                    s, Actor.system("commands"), _action(row.kind, self.assets.snapshot.meters.get(row.meter_id)),
                    "meter", row.meter_id,
                    reason=row.reason, after={"command": row.id, "status": "failed", "detail": row.detail},
                    outcome="failed",
                )

    async def _last_faults(self) -> dict[str, bool]:
        """Each meter's relay_fault as its last finished command left it."""
        latest = (
            select(CommandRow.meter_id, func.max(CommandRow.id).label("id"))
            .where(CommandRow.relay_fault.is_not(None))
            .group_by(CommandRow.meter_id)
            .subquery()
        )
        async with self.db.sessions() as s:
            rows = (await s.execute(select(CommandRow.meter_id, CommandRow.relay_fault).join(latest, CommandRow.id == latest.c.id))).all()
        return {meter_id: bool(fault) for meter_id, fault in rows}

    def _register_tags(self, snapshot: AssetSnapshot) -> None:
        for meter in snapshot.active_meters:
            if not self.driver.supports_supply(meter):
                continue
            name = meter_tag(meter.id, "relay_fault")
            if name in self.tagdb:
                continue
            self.tagdb.register(
                TagMeta(
                    name, DataType.BOOL, description="supply command not followed by the meter",
                    meter_id=meter.id, room_id=meter.room_id, point="relay_fault",
                )
            )
            self.tagdb.write(name, self._faults.get(meter.id, False))

    def _registry_changed(self, snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
        for meter_id in diff.meters_removed | diff.meters_changed:
            self.tagdb.unregister(meter_tag(meter_id, "relay_fault"))
        self._register_tags(snapshot)

    # -- the API -----------------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[CommandResult], None]) -> Callable[[], None]:
        """Call ``listener`` with every finished command; returns the unsubscribe callable."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def execute(self, req: CommandRequest, timeout: float | None = None) -> CommandResult:
        """Run ``req`` through the command path and return how it ended.

        Raises ValueError for a malformed request and :class:`CommandTimeout` when ``timeout``
        passes first (the command goes on).
        """
        if not isinstance(req.kind, CommandKind):
            raise ValueError(f"kind: expected connect or disconnect, found {req.kind!r}")
        if not req.reason or not req.reason.strip():
            raise ValueError("reason: a supply command needs a reason (it goes into the audit log)")
        now = utcnow()
        meter = self.assets.snapshot.meters.get(req.meter_id)
        denial = self._denial(req)
        if denial is not None:
            return await self._record_refusal(req, meter, "denied", denial, now)
        problem = self._problem(req, meter)
        if problem is not None:
            return await self._record_refusal(req, meter, "failed", problem, now)
        assert meter is not None
        row_id = await self._insert(req, meter, now)
        item = _Pending(row_id, req, meter, now)
        if self._stopping:  # stop() ran while the row was written: it never saw this command
            await self._finish(item, "failed", "the server stopped before the command completed", 0, None)
            return await item.future
        queue = self._queues.setdefault(req.meter_id, _MeterQueue())
        older = queue.waiting
        queue.waiting = item
        if older is not None:
            await self._finish(older, "superseded", f"superseded by command {row_id} ({req.kind.value})", 0, None)
        if queue.worker is None:
            queue.worker = self.tasks.spawn(lambda: self._work(req.meter_id, queue), f"command:{req.meter_id}", Restart.NEVER)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(item.future)
        except TimeoutError:
            raise CommandTimeout(row_id, req.meter_id) from None

    async def history(self, meter_id: str, limit: int = 50) -> list[CommandResult]:
        """The meter's finished commands, newest first."""
        stmt = (
            select(CommandRow)
            .where(CommandRow.meter_id == meter_id, CommandRow.finished_at.is_not(None))
            .order_by(CommandRow.id.desc())
            .limit(limit)
        )
        async with self.db.sessions() as s:
            rows = (await s.scalars(stmt)).all()
        return [_result(row) for row in rows]

    # -- checks ---------------------------------------------------------------------------------------------
    def _denial(self, req: CommandRequest) -> str | None:
        if req.actor.source == "engine":
            return None
        if req.user is None:
            return f"{req.actor.name}: no user; only system actors act without one"
        if not req.user.can(Permission.RELAY_CONTROL):
            return f"user {req.user.name} ({req.user.role.value}) lacks the relay_control permission"
        return None

    def _problem(self, req: CommandRequest, meter: MeterInfo | None) -> str | None:
        if self._stopping:
            return "the server is stopping"
        if meter is None:
            return f"no meter {req.meter_id!r}"
        if not meter.active:
            return f"meter {req.meter_id} is not active" + (f" (replaced by {meter.replaced_by})" if meter.replaced_by else "")
        if not self.driver.supports_supply(meter):
            return f"meter {req.meter_id} (profile {meter.profile}, link {meter.link}) has no remote supply control"
        return None

    # -- execution -------------------------------------------------------------------------------------------
    async def _work(self, meter_id: str, queue: _MeterQueue) -> None:
        try:
            while queue.waiting is not None:
                item, queue.waiting = queue.waiting, None
                queue.running = item
                try:
                    await self._run(item)
                finally:
                    queue.running = None
        finally:
            queue.worker = None
            if queue.waiting is None and self._queues.get(meter_id) is queue:
                del self._queues[meter_id]

    async def _run(self, item: _Pending) -> None:
        on = item.req.kind is CommandKind.CONNECT
        async with self.db.transaction() as s:
            await s.execute(update(CommandRow).where(CommandRow.id == item.id).values(status="running", started_at=utcnow()))
        cfg = self.config
        attempts = 0
        detail = ""
        not_followed = False
        backoff = cfg.backoff_s
        for attempt in range(cfg.retries + 1):
            if attempt:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.backoff_max_s)
            attempts += 1
            try:
                await self.driver.set_supply(item.meter, on)
            except Exception as exc:  # the driver's failure is the command's reason
                detail = f"write failed: {exc}"
                not_followed = False
                continue
            confirmed, detail = await self._confirm(item.meter, on)
            if confirmed:
                await self._finish(item, "confirmed", detail, attempts, False)
                return
            not_followed = detail.startswith("not followed")
        await self._finish(item, "failed", f"{detail} (after {attempts} attempt{'s' if attempts > 1 else ''})", attempts, True if not_followed else None)

    async def _confirm(self, meter: MeterInfo, on: bool) -> tuple[bool, str]:
        """Read the status back until it shows ``on`` or the confirm timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.confirm_timeout_s
        wanted = _state_word(meter, on)
        detail = f"not followed: still not {wanted}"
        while True:
            try:
                state = await self.driver.read_supply(meter)
            except Exception as exc:
                detail = f"status not readable: {exc}"
            else:
                if state == on:
                    return True, f"{wanted} (confirmed by read-back)"
                detail = f"not followed: the meter reports {_state_word(meter, state)} {self.config.confirm_timeout_s:g} s after the write"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False, detail
            await asyncio.sleep(min(self.config.confirm_interval_s, remaining))

    # -- persistence, audit, notification -----------------------------------------------------------------------
    async def _insert(self, req: CommandRequest, meter: MeterInfo, now: datetime) -> int:
        async with self.db.transaction() as s:
            row = CommandRow(
                meter_id=req.meter_id, kind=req.kind.value, status="queued", detail="", attempts=0,
                actor=req.actor.name, source=req.actor.source, reason=req.reason, requested_at=now,
            )
            s.add(row)
            await s.flush()
            AuditLog.record(
                s, req.actor, _action(req.kind.value, meter), "meter", req.meter_id, reason=req.reason,
                after={"command": row.id, "status": "queued"}, outcome="queued",
            )
            return row.id

    async def _record_refusal(self, req: CommandRequest, meter: MeterInfo | None, status: Status, detail: str, now: datetime) -> CommandResult:
        async with self.db.transaction() as s:
            row = CommandRow(
                meter_id=req.meter_id, kind=req.kind.value, status=status, detail=detail, attempts=0,
                actor=req.actor.name, source=req.actor.source, reason=req.reason, requested_at=now, finished_at=now,
            )
            s.add(row)
            await s.flush()
            AuditLog.record(
                s, req.actor, _action(req.kind.value, meter), "meter", req.meter_id, reason=req.reason,
                after={"command": row.id, "status": status, "detail": detail}, outcome=status,
            )
            result = _result(row)
        if status == "denied":
            log.warning("command denied", extra={"meter": req.meter_id, "actor": req.actor.name, "error": detail})
        self._notify(result)
        return result

    async def _finish(self, item: _Pending, status: Status, detail: str, attempts: int, fault: bool | None) -> None:
        now = utcnow()
        async with self.db.transaction() as s:
            await s.execute(
                update(CommandRow).where(CommandRow.id == item.id).values(
                    status=status, detail=detail, attempts=attempts, finished_at=now, relay_fault=fault,
                )
            )
            AuditLog.record(
                s, item.req.actor, _action(item.req.kind.value, item.meter), "meter", item.req.meter_id,
                reason=item.req.reason,
                after={"command": item.id, "status": status, "detail": detail, "attempts": attempts},
                outcome=status,
            )
        if fault is not None:
            self._set_fault(item.meter, fault)
        if status == "failed":
            log.warning("command failed", extra={"meter": item.req.meter_id, "command": item.id, "error": detail})
        result = CommandResult(item.id, item.req.meter_id, item.req.kind, status, detail, attempts, item.requested_at, now)
        if not item.future.done():
            item.future.set_result(result)
        self._notify(result)

    def _set_fault(self, meter: MeterInfo, fault: bool) -> None:
        self._faults[meter.id] = fault
        name = meter_tag(meter.id, "relay_fault")
        if name in self.tagdb:
            self.tagdb.write(name, fault)

    def _notify(self, result: CommandResult) -> None:
        for listener in list(self._listeners):
            try:
                listener(result)
            except Exception:
                log.exception("command listener failed", extra={"listener": repr(listener)})


def _action(kind: str, meter: MeterInfo | None) -> str:
    device = "valve" if meter is not None and meter.kind == "water" else "relay"
    return f"{device}.{kind}"


def _state_word(meter: MeterInfo, on: bool) -> str:
    if meter.kind == "water":
        return "valve open" if on else "valve closed"
    return "relay closed" if on else "relay open"


def _result(row: CommandRow) -> CommandResult:
    return CommandResult(
        row.id, row.meter_id, CommandKind(row.kind), row.status,  # type: ignore[arg-type]
        row.detail, row.attempts, row.requested_at, row.finished_at or row.requested_at,
    )


COMMANDS: Key[CommandService] = Key("commands", CommandService)
