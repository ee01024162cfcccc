"""The one command path to meters: queue, authorise, audit, write, confirm, retry.

Every write to a meter — a supply command from the prepaid engine, the HMI, the REST API or an
OPC UA method, and a parameter block (time-of-use table, clock, load limit, displayed price or
balance: :mod:`protocols.modbus.params`) from a job — goes through :meth:`CommandService.execute`:

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

Parameter writes (``CommandKind.WRITE`` with ``block`` and ``value``) need the
``meter_service`` permission; they queue behind the meter's supply command and never supersede
or get superseded; each is confirmed by reading the block back and comparing what it holds with
what was written (a clock within a tolerance of the written time plus the time since). A clock
written with the value ``"now"`` takes the site's local time at the moment of each attempt.

A request may carry a ``reference`` (a job item: ``job:<id>:<run>:<target>``) kept with the
command, so the one who asked can find the outcome after a restart (:meth:`find`), and
``check_first``: read the meter first and confirm without writing when it already shows what
was asked (a job resuming an item interrupted by a crash writes nothing twice).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal, Protocol

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
    "METER_ACCESS",
    "PARAMETER_DRIVER",
    "SUPPLY_DRIVER",
    "CommandKind",
    "CommandRequest",
    "CommandResult",
    "CommandService",
    "CommandTimeout",
    "MeterAccess",
    "ParameterDriver",
    "SupplyDriver",
]

log = logging.getLogger(__name__)

Status = Literal["confirmed", "failed", "denied", "superseded"]


class CommandKind(str, enum.Enum):
    """What a command does to a meter: supply on, supply off, or a parameter write."""

    CONNECT = "connect"  # supply on: relay closed / valve open
    DISCONNECT = "disconnect"  # supply off: relay tripped / valve closed
    WRITE = "write"  # a parameter block (block, value)


@dataclass(frozen=True)
class CommandRequest:
    """One command as a caller asks for it: the meter, what to do, who asks and why."""

    meter_id: str
    kind: CommandKind
    actor: Actor
    reason: str
    user: UserInfo | None = None  # None only for system actors (actor.source == "engine")
    block: str | None = None  # WRITE: the profile's parameter block
    value: Any = None  # WRITE: what to write (the block's value type; "now" for a clock)
    reference: str | None = None  # who asked, to find the outcome later (a job item)
    check_first: bool = False  # confirm without writing when the meter already shows it
    bulk: bool = False  # a batch job's command: the driver sends it when no poll is due


@dataclass(frozen=True)
class CommandResult:
    """How a command ended (confirmed, failed, denied or superseded), as stored in its history."""

    id: int
    meter_id: str
    kind: CommandKind
    status: Status
    detail: str
    attempts: int
    requested_at: datetime
    finished_at: datetime
    block: str | None = None
    readback: Any = None  # WRITE: what the block held when read back (JSON form)
    reference: str | None = None


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

    async def set_supply(self, meter: MeterInfo, on: bool, *, bulk: bool = False) -> None:
        """``bulk``: a batch job's command, sent in the link's spare time (after due polls)."""
        ...

    async def read_supply(self, meter: MeterInfo, *, bulk: bool = False) -> bool: ...


SUPPLY_DRIVER: Key[SupplyDriver] = Key("supply_driver", SupplyDriver)


class ParameterDriver(Protocol):
    """How the command path writes and reads a meter's parameter blocks (the Modbus poller)."""

    def block_spec(self, meter: MeterInfo, block: str) -> Any:
        """The block's spec (``encode``, ``same``, ``as_json``, ``kind``), or None."""
        ...

    async def write_block(self, meter: MeterInfo, block: str, value: object, *, bulk: bool = False) -> None: ...

    async def read_block(self, meter: MeterInfo, block: str, *, bulk: bool = False) -> object: ...


PARAMETER_DRIVER: Key[ParameterDriver] = Key("parameter_driver", ParameterDriver)


class MeterAccess(Protocol):
    """Reads on demand and the load of links (the Modbus poller), for batch work that must not
    starve polling."""

    async def poll_now(self, meter_id: str, *, bulk: bool = False) -> dict[str, Any]:
        """Poll every class of one meter now; its values (``TagValue``) by point."""
        ...

    def link_of(self, meter_id: str) -> str | None: ...

    def link_backlog(self, link: str) -> int:
        """Polls and operations due on ``link`` and waiting for a connection now."""
        ...


METER_ACCESS: Key[MeterAccess] = Key("meter_access", MeterAccess)


class _Pending:
    def __init__(self, row_id: int, req: CommandRequest, meter: MeterInfo, requested_at: datetime) -> None:
        self.id = row_id
        self.req = req
        self.meter = meter
        self.requested_at = requested_at
        self.future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()


class _MeterQueue:
    def __init__(self) -> None:
        self.waiting: _Pending | None = None  # the supply command waiting (the newest wins)
        self.writes: deque[_Pending] = deque()  # parameter writes, in order
        self.running: _Pending | None = None
        self.worker: asyncio.Task[None] | None = None


class CommandService:
    """The one path to a meter's relay, valve and parameters: queues per meter, authorises, audits, sends, confirms by reading back."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        assets: AssetRegistry,
        tagdb: TagDB,
        driver: SupplyDriver,
        config: CommandsConfig,
        tasks: TaskOwner,
        *,
        params: ParameterDriver | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.params = params
        self.tz = tz
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
            items = (queue.running, queue.waiting, *queue.writes)
            queue.waiting = None
            queue.writes.clear()
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
                    s, Actor.system("commands"), _action(row.kind, self.assets.snapshot.meters.get(row.meter_id), row.block),
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
        async with self.db.reads() as s:  # only reads: no write lock at start-up
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
            raise ValueError(f"kind: expected connect, disconnect or write, found {req.kind!r}")
        if not req.reason or not req.reason.strip():
            raise ValueError(f"reason: a {'supply ' if req.kind is not CommandKind.WRITE else ''}command needs a reason (it goes into the audit log)")
        if (req.kind is CommandKind.WRITE) != (req.block is not None):
            raise ValueError("block: a write names its parameter block, and only a write does")
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
        if req.kind is CommandKind.WRITE:
            queue.writes.append(item)
        else:
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

    async def find(self, reference: str) -> list[CommandResult]:
        """The commands asked for with ``reference``, oldest first (finished or not)."""
        async with self.db.reads() as s:
            rows = (await s.scalars(select(CommandRow).where(CommandRow.reference == reference).order_by(CommandRow.id))).all()
        return [_result(row) for row in rows]

    async def history(self, meter_id: str, limit: int = 50) -> list[CommandResult]:
        """The meter's finished commands, newest first."""
        stmt = (
            select(CommandRow)
            .where(CommandRow.meter_id == meter_id, CommandRow.finished_at.is_not(None))
            .order_by(CommandRow.id.desc())
            .limit(limit)
        )
        async with self.db.reads() as s:
            rows = (await s.scalars(stmt)).all()
        return [_result(row) for row in rows]

    # -- checks ---------------------------------------------------------------------------------------------
    def _denial(self, req: CommandRequest) -> str | None:
        if req.actor.source == "engine":
            return None
        if req.user is None:
            return f"{req.actor.name}: no user; only system actors act without one"
        needed = Permission.METER_SERVICE if req.kind is CommandKind.WRITE else Permission.RELAY_CONTROL
        if not req.user.can(needed):
            return f"user {req.user.name} ({req.user.role.value}) lacks the {needed.value} permission"
        return None

    def _problem(self, req: CommandRequest, meter: MeterInfo | None) -> str | None:
        if self._stopping:
            return "the server is stopping"
        if meter is None:
            return f"no meter {req.meter_id!r}"
        if not meter.active:
            return f"meter {req.meter_id} is not active" + (f" (replaced by {meter.replaced_by})" if meter.replaced_by else "")
        if req.kind is CommandKind.WRITE:
            spec = self.params.block_spec(meter, req.block or "") if self.params is not None else None
            if spec is None:
                return f"meter {req.meter_id} (profile {meter.profile}, link {meter.link}) has no {req.block} block"
            if not (spec.kind == "clock" and req.value == "now"):
                try:
                    spec.encode(req.value)
                except ValueError as exc:
                    return f"value: {exc}"
            return None
        if not self.driver.supports_supply(meter):
            return f"meter {req.meter_id} (profile {meter.profile}, link {meter.link}) has no remote supply control"
        return None

    # -- execution -------------------------------------------------------------------------------------------
    async def _work(self, meter_id: str, queue: _MeterQueue) -> None:
        try:
            while queue.waiting is not None or queue.writes:
                if queue.waiting is not None:
                    item, queue.waiting = queue.waiting, None
                else:
                    item = queue.writes.popleft()
                queue.running = item
                try:
                    await self._run(item)
                finally:
                    queue.running = None
        finally:
            queue.worker = None
            if queue.waiting is None and not queue.writes and self._queues.get(meter_id) is queue:
                del self._queues[meter_id]

    async def _run(self, item: _Pending) -> None:
        async with self.db.transaction() as s:
            await s.execute(update(CommandRow).where(CommandRow.id == item.id).values(status="running", started_at=utcnow()))
        if item.req.kind is CommandKind.WRITE:
            await self._run_write(item)
            return
        on = item.req.kind is CommandKind.CONNECT
        if item.req.check_first:
            try:
                state = await self.driver.read_supply(item.meter, **_bulk(item.req))
            except Exception:
                state = None  # unknown: write as usual
            if state == on:
                await self._finish(item, "confirmed", f"{_state_word(item.meter, on)} already (read back before writing)", 0, False)
                return
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
                await self.driver.set_supply(item.meter, on, **_bulk(item.req))
            except Exception as exc:  # the driver's failure is the command's reason
                detail = f"write failed: {exc}"
                not_followed = False
                continue
            confirmed, detail = await self._confirm(item.meter, on, item.req)
            if confirmed:
                await self._finish(item, "confirmed", detail, attempts, False)
                return
            not_followed = detail.startswith("not followed")
        await self._finish(item, "failed", f"{detail} (after {attempts} attempt{'s' if attempts > 1 else ''})", attempts, True if not_followed else None)

    async def _confirm(self, meter: MeterInfo, on: bool, req: CommandRequest | None = None) -> tuple[bool, str]:
        """Read the status back until it shows ``on`` or the confirm timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.confirm_timeout_s
        wanted = _state_word(meter, on)
        detail = f"not followed: still not {wanted}"
        while True:
            try:
                state = await self.driver.read_supply(meter, **(_bulk(req) if req is not None else {}))
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

    async def _run_write(self, item: _Pending) -> None:
        """Write a parameter block, read it back until it holds what was written, retry."""
        assert self.params is not None and item.req.block is not None
        block = item.req.block
        spec = self.params.block_spec(item.meter, block)
        if spec is None:
            await self._finish(item, "failed", f"meter {item.meter.id} has no {block} block any more", 0, None)
            return
        loop = asyncio.get_running_loop()
        cfg = self.config
        attempts = 0
        detail = ""
        readback: Any = None
        backoff = cfg.backoff_s
        if item.req.check_first:
            try:
                current = await self.params.read_block(item.meter, block, **_bulk(item.req))
            except Exception:
                current = None
            if current is not None and item.req.value != "now" and spec.same(item.req.value, current):
                await self._finish(item, "confirmed", f"{block} already holds it (read back before writing)", 0, None,
                                   readback=spec.as_json(current))
                return
        for attempt in range(cfg.retries + 1):
            if attempt:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.backoff_max_s)
            attempts += 1
            value = item.req.value
            if spec.kind == "clock" and value == "now":
                value = utcnow().astimezone(self.tz).replace(tzinfo=None, microsecond=0)
            written_at = loop.time()
            try:
                await self.params.write_block(item.meter, block, value, **_bulk(item.req))
            except Exception as exc:  # the driver's failure is the command's reason
                detail = f"write failed: {exc}"
                continue
            try:
                readback = await self.params.read_block(item.meter, block, **_bulk(item.req))
            except Exception as exc:
                detail = f"{block} not readable: {exc}"
                continue
            same = spec.same(value, readback, loop.time() - written_at) if spec.kind == "clock" else spec.same(value, readback)
            if same:
                await self._finish(item, "confirmed", f"{block} written (confirmed by read-back)", attempts, None,
                                   readback=spec.as_json(readback))
                return
            detail = f"not followed: {block} reads back {spec.as_json(readback)}"
        await self._finish(item, "failed", f"{detail} (after {attempts} attempt{'s' if attempts > 1 else ''})", attempts, None,
                           readback=spec.as_json(readback) if readback is not None else None)

    # -- persistence, audit, notification -----------------------------------------------------------------------
    async def _insert(self, req: CommandRequest, meter: MeterInfo, now: datetime) -> int:
        async with self.db.transaction() as s:
            row = CommandRow(
                meter_id=req.meter_id, kind=req.kind.value, status="queued", detail="", attempts=0,
                actor=req.actor.name, source=req.actor.source, reason=req.reason, requested_at=now,
                **_extra(req),
            )
            s.add(row)
            await s.flush()
            AuditLog.record(
                s, req.actor, _action(req.kind.value, meter, req.block), "meter", req.meter_id, reason=req.reason,
                after={"command": row.id, "status": "queued", **_audit_extra(req)}, outcome="queued",
            )
            return row.id

    async def _record_refusal(self, req: CommandRequest, meter: MeterInfo | None, status: Status, detail: str, now: datetime) -> CommandResult:
        async with self.db.transaction() as s:
            row = CommandRow(
                meter_id=req.meter_id, kind=req.kind.value, status=status, detail=detail, attempts=0,
                actor=req.actor.name, source=req.actor.source, reason=req.reason, requested_at=now, finished_at=now,
                **_extra(req),
            )
            s.add(row)
            await s.flush()
            AuditLog.record(
                s, req.actor, _action(req.kind.value, meter, req.block), "meter", req.meter_id, reason=req.reason,
                after={"command": row.id, "status": status, "detail": detail, **_audit_extra(req)}, outcome=status,
            )
            result = _result(row)
        if status == "denied":
            log.warning("command denied", extra={"meter": req.meter_id, "actor": req.actor.name, "error": detail})
        self._notify(result)
        return result

    async def _finish(
        self, item: _Pending, status: Status, detail: str, attempts: int, fault: bool | None, *, readback: Any = None,
    ) -> None:
        now = utcnow()
        async with self.db.transaction() as s:
            await s.execute(
                update(CommandRow).where(CommandRow.id == item.id).values(
                    status=status, detail=detail, attempts=attempts, finished_at=now, relay_fault=fault, readback=readback,
                )
            )
            AuditLog.record(
                s, item.req.actor, _action(item.req.kind.value, item.meter, item.req.block), "meter", item.req.meter_id,
                reason=item.req.reason,
                after={"command": item.id, "status": status, "detail": detail, "attempts": attempts, **_audit_extra(item.req)},
                outcome=status,
            )
        if fault is not None:
            self._set_fault(item.meter, fault)
        if status == "failed":
            log.warning("command failed", extra={"meter": item.req.meter_id, "command": item.id, "error": detail})
        result = CommandResult(
            item.id, item.req.meter_id, item.req.kind, status, detail, attempts, item.requested_at, now,
            item.req.block, readback, item.req.reference,
        )
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


def _action(kind: str, meter: MeterInfo | None, block: str | None = None) -> str:
    if kind == CommandKind.WRITE.value:
        return f"meter.write.{block}"
    device = "valve" if meter is not None and meter.kind == "water" else "relay"
    return f"{device}.{kind}"


def _bulk(req: CommandRequest) -> dict[str, Any]:
    # only a bulk request passes the keyword: a driver that has no bulk lane keeps working
    return {"bulk": True} if req.bulk else {}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # Decimal and the like: exact text


def _extra(req: CommandRequest) -> dict[str, Any]:
    return {"block": req.block, "value": _json_value(req.value) if req.block else None, "reference": req.reference}


def _audit_extra(req: CommandRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.block:
        out["block"] = req.block
        out["value"] = _json_value(req.value)
    if req.reference:
        out["reference"] = req.reference
    return out


def _state_word(meter: MeterInfo, on: bool) -> str:
    if meter.kind == "water":
        return "valve open" if on else "valve closed"
    return "relay closed" if on else "relay open"


def _result(row: CommandRow) -> CommandResult:
    return CommandResult(
        row.id, row.meter_id, CommandKind(row.kind), row.status,  # type: ignore[arg-type]
        row.detail, row.attempts, row.requested_at, row.finished_at or row.requested_at,
        row.block, row.readback, row.reference,
    )


COMMANDS: Key[CommandService] = Key("commands", CommandService)
