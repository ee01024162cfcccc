"""The OPC UA component: wires ``protocols.opcua`` to the asset registry, the tag database, the
user store, the audit log, the command path and the prepaid engine's ledger.

- The address space is built from the registry (active meters only) and the tags the producers
  registered: a meter's points are its tags, a room always carries Balance, SupplyState,
  AlarmLevel and AccountState (uncertain until the prepaid engine feeds them).
- One subscription to the tag database feeds node values in batches; a tag that appears after
  the build (a producer registering late) gets its node on its first change.
- Registry changes (meters added, replaced, removed) are applied without a restart.
- Sessions authenticate against the user store; a method call is allowed when the user (read
  afresh at each call) has the method's permission, and every call, allowed or refused, is
  written to the audit log, as are refused writes; failed logins are counted by the server's one
  login limiter (``scada.users.ratelimit``) and reported in bulk.
- SetRelay goes through the command path (which queues, audits, writes, confirms by reading the
  status back and retries) and answers once the meter followed or did not; meters the supply
  driver cannot switch have no SetRelay.
- Recharge credits the room's account through the prepaid engine: the Double amount becomes an
  exact Decimal (its shortest repr), checked for sign, decimals and maximum; the reference makes
  it idempotent; the new balance is returned.
- HistoryRead is served from the historian when it runs (:mod:`scada.opcua.history`); the
  variables it keeps are historized.
- The alarm engine's alarms are conditions, their methods the engine's operator actions
  (:mod:`scada.opcua.alarms`).
- The poller's links are objects under ``Site/Links`` (the sources of their alarms).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from asyncua import ua

import scada
from protocols.opcua import (
    BuildingSpec,
    Caller,
    FloorSpec,
    LinkSpec,
    MeterSpec,
    MethodRefused,
    OpcUaConfig,
    OpcUaServer,
    PointSpec,
    RoomSpec,
    SeriesKind,
    ServerHooks,
    SiteSpec,
)
from protocols.opcua.catalogue import ROOM_REQUIRED, known_point
from scada.alarms.component import ALARMS
from scada.commands.service import COMMANDS, SUPPLY_DRIVER, CommandKind, CommandRequest
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.inputs import InputError, check_text, has_control, quote
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.history.service import HISTORY
from scada.opcua.alarms import AlarmConditions
from scada.opcua.history import HistorianSource
from scada.polling.component import MODBUS
from scada.prepaid.engine import PREPAID
from scada.prepaid.errors import PrepaidError
from scada.prepaid.money import MoneyError, format_minor, minor_to_decimal, parse_money
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo, RegistryDiff
from scada.site.component import ASSETS
from scada.topology.service import TOPOLOGY
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission, UserInfo, UserStore
from scada.users.component import AUDIT, LOGINS, USERS
from tags import DataType, TagChange, TagDB, TagMeta, names
from tags.slices import Slicer
from tags.timers import run_every

__all__ = ["FREEZE_AFTER_NODES", "OPCUA", "OpcUaComponent", "opcua_pki_dir", "site_spec"]

log = logging.getLogger(__name__)

OPCUA: Key[OpcUaServer] = Key("opcua", OpcUaServer)

_SWITCH_POINTS = ("relay_closed", "valve_open")
FREEZE_AFTER_NODES = 50_000  # nodes built and points waiting: ~1,500 meters
SESSION_SWEEP_S = 30.0  # how often sessions of users disabled elsewhere are looked for


def opcua_pki_dir(config: ScadaConfig, opcua: OpcUaConfig) -> Path:
    """The folder of the OPC UA server's certificates (own, trusted, rejected)."""
    return config.path(opcua.pki_dir) if opcua.pki_dir else config.data_dir / "pki"


HistoryKind = Callable[[str], SeriesKind | None]


def _no_history(_tag: str) -> SeriesKind | None:
    return None


def _point(meta: TagMeta, owner_kind: str, point: str, *, currency: str, history: HistoryKind = _no_history) -> PointSpec:
    return _Points(currency, history)(meta, owner_kind, point)


def _point_texts(meta: TagMeta, owner_kind: str, point: str, currency: str) -> tuple[str, str]:
    """A point's unit and description: the tag's own, else the catalogue's (a balance's unit
    is the site's currency)."""
    known = known_point(owner_kind, point)
    unit = meta.unit or (known.unit if known else "")
    if owner_kind == "room" and point == "balance" and not unit:
        unit = currency
    return unit, meta.description or (known.description if known else "")


class _Points:
    """The points of a site's tags: the unit and description worked out once per (owner kind,
    point, the tag's own unit and description), not once per tag (a million tags at 50,000
    meters; ``test_opcua_spec.py`` holds every point equal to :func:`_point`'s, made alone)."""

    def __init__(self, currency: str, history: HistoryKind) -> None:
        self.currency = currency
        self.history = history
        self._texts: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    def __call__(self, meta: TagMeta, owner_kind: str, point: str) -> PointSpec:
        key = (owner_kind, point, meta.unit, meta.description)
        texts = self._texts.get(key)
        if texts is None:
            texts = self._texts[key] = _point_texts(meta, owner_kind, point, self.currency)
        name, data_type = meta.name, meta.data_type
        return PointSpec(
            name, point, data_type, texts[0], texts[1], owner_kind == "room",
            self.history(name) if data_type is not DataType.STRING else None,
        )


def _required_room_point(room_id: str, point: str, *, currency: str, history: HistoryKind = _no_history) -> PointSpec:
    known = known_point("room", point)
    assert known is not None
    tag = names.room_tag(room_id, point)
    return PointSpec(
        tag=tag,
        point=point,
        data_type=known.data_type,
        unit=currency if point == "balance" else known.unit,
        description=known.description,
        derived=True,
        history=history(tag) if known.data_type is not DataType.STRING else None,
    )


async def site_spec(
    snapshot: AssetSnapshot,
    tagdb: TagDB,
    *,
    currency: str,
    site_name: str,
    switchable: Callable[[MeterInfo], bool] | None = None,
    history: HistoryKind = _no_history,
    slicer: Slicer | None = None,
) -> SiteSpec:
    """The address space's content: the registry's hierarchy, active meters, the poller's links,
    and the points of every meter, room and link as registered in ``tagdb``. ``switchable`` says
    which meters get SetRelay (the supply driver knows); without it, meters with a relay or valve
    point do. ``history`` says which tags are historized, and how. Built in ``slicer``'s slices
    (by default 20 ms): at 20,000 meters the spec takes seconds, which no other task, nor a
    transaction it holds open, should wait."""
    slicer = slicer or Slicer()
    points: dict[tuple[str, str], list[PointSpec]] = defaultdict(list)
    make = _Points(currency, history)
    for n, meta in enumerate(tagdb.metas(_site_tag)):
        parsed = names.parse(meta.name)
        points[(parsed.kind, parsed.owner)].append(make(meta, parsed.kind, parsed.point))
        if n % 64 == 63:
            await slicer.pause()
    site = SiteSpec(snapshot.site.name if snapshot.site else site_name)
    for b in snapshot.buildings.values():
        site.buildings[b.id] = BuildingSpec(b.id, b.name)
    for f in snapshot.floors.values():
        site.floors[f.id] = FloorSpec(f.id, f.building_id, f.name, f.level)
    for r in snapshot.rooms.values():
        registered = {p.point: p for p in points.get(("room", r.id), [])}
        room_points = [
            registered.pop(p, None) or _required_room_point(r.id, p, currency=currency, history=history) for p in ROOM_REQUIRED
        ]
        room_points.extend(registered.values())
        site.rooms[r.id] = RoomSpec(r.id, r.floor_id, r.name, f"Room {r.name} ({r.id})", tuple(room_points))
        await slicer.pause()
    for m in snapshot.meters.values():
        if not m.active or (m.room_id is not None and m.room_id not in site.rooms):
            continue
        meter_points = tuple(points.get(("meter", m.id), ()))
        kind = "water" if m.kind == "water" else "electricity"
        role = {"common": "common-area ", "utility": "utility ", "virtual": "virtual "}.get(m.role, "")
        if m.role == "virtual":
            source = f"computed: {m.formula}; read-only"
        elif m.manual:
            source = "read by hand"
        else:
            source = f"profile {m.profile}, link {m.link}, unit {m.unit_id}"
        site.meters[m.id] = MeterSpec(
            m.id, kind, m.building_id, m.room_id,
            description=f"{role}{m.kind} meter {m.id} ({source})",
            points=meter_points,
            switchable=switchable(m) if switchable is not None else any(p.point in _SWITCH_POINTS for p in meter_points),
        )
        await slicer.pause()
    links = {m.link for m in snapshot.meters.values() if m.active and m.link} | {o for k, o in points if k == "link"}
    for link in sorted(links):
        site.links[link] = LinkSpec(link, f"Link {link}", tuple(points.get(("link", link), ())))
    return site


def _site_tag(name: str) -> bool:
    """Tags of meters, rooms and links (system tags have no node)."""
    return not name.startswith("system:")


class OpcUaComponent(Component):
    """Serves every meter and room as OPC UA nodes (``ctx[OPCUA]``), with the methods for relay
    control and recharges when the command path and the prepaid engine run."""

    name = "opcua"
    requires = (CONFIG, USERS, AUDIT, LOGINS, ASSETS, TAGDB)
    # read when present (methods, switchable meters); started after the producers of tags
    # (the poller, the prepaid engine, the alarm engine, the topology) so it publishes their points
    optional = (SUPPLY_DRIVER, COMMANDS, PREPAID, MODBUS, ALARMS, HISTORY, TOPOLOGY)
    provides = (OPCUA,)

    def __init__(self) -> None:
        super().__init__()
        self.server: OpcUaServer | None = None
        self.history: HistorianSource | None = None
        self.conditions: AlarmConditions | None = None
        self._registry_changed = asyncio.Event()
        self._ignored: set[str] = set()

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        opcua = config.opcua
        if opcua is None:
            raise RuntimeError("the OPC UA component needs an [opcua] section in the config")
        self.ctx = ctx
        self.config = config
        self.users: UserStore = ctx[USERS]
        self.audit: AuditLog = ctx[AUDIT]
        self.assets: AssetRegistry = ctx[ASSETS]
        self.tagdb: TagDB = ctx[TAGDB]
        history = ctx.get(HISTORY)
        self.history = HistorianSource(history.historian, self.tagdb, self.users) if history is not None else None
        engine = ctx.get(ALARMS)
        self.conditions = AlarmConditions(engine, self.assets, self.audit, self._authorise) if engine is not None else None
        hooks = ServerHooks(
            authenticate=self._authenticate, set_relay=self._set_relay, recharge=self._recharge, refused=self._refused,
            history=self.history, conditions=self.conditions,
        )
        server = OpcUaServer(opcua, pki_dir=opcua_pki_dir(config, opcua), hooks=hooks, software_version=scada.__version__)
        self.server = server
        await server.start()
        try:
            # subscribe before the snapshot is taken: nothing that changes in between is lost
            self.sub = sub = self.tagdb.subscribe(_site_tag, maxsize=opcua.queue_size, name="opcua")
            try:
                t0 = time.monotonic()
                # The collector stays off from the build until the freeze below: the build pauses it
                # and turns it back on when it returns, and the first allocation after that ran a
                # full collection of the whole new heap (0.8 s at 10,000 meters, 2.5 s at 20,000) in
                # one go on the event loop, just before the freeze made it needless.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    result = await server.sync(await self._spec(), self.tagdb.get)
                    frozen = result.added + result.deferred >= FREEZE_AFTER_NODES
                    if frozen:
                        # The address space of a large site is millions of long-lived objects that never
                        # form garbage cycles. Left in the collector's oldest generation, each full
                        # collection walks them all (~1 s at 10,000 meters, every few hundred thousand tag
                        # updates: bench/opcua); frozen, they are out of its way. Objects alive now are
                        # still freed by reference counting when they go.
                        gc.freeze()
                finally:
                    if collecting:
                        gc.enable()
                # (no gc.get_freeze_count() here: it walks every frozen object, ~0.5 s at 10,000 meters)
                log.info(
                    "OPC UA address space built",
                    extra={"nodes": result.added, "waiting": result.deferred, "meters": len(result.meters_added),
                           "ms": round((time.monotonic() - t0) * 1000),
                           "slices": result.slices, "frozen": frozen},
                )
                unsubscribe = self.assets.subscribe(self._on_registry)
                no_closer = self.users.add_session_closer("opcua", self.end_user_sessions)
                try:
                    self.tasks.spawn(self._feed, "feed")
                    self.tasks.spawn(self._follow_registry, "registry")
                    # a user disabled where no closer is told (another process) loses OPC UA soon
                    self.tasks.spawn(
                        lambda: run_every(SESSION_SWEEP_S, self.sweep_sessions, name="opcua-sessions"), "sessions", Restart.ON_FAILURE,
                    )
                    if self.conditions is not None:
                        conditions = self.conditions
                        self.tasks.spawn(lambda: conditions.run(server), "conditions")
                    ctx[OPCUA] = server
                    yield
                finally:
                    no_closer()
                    unsubscribe()
            finally:
                sub.close()
        finally:
            await server.stop()

    # -- content --------------------------------------------------------------------------------
    async def _spec(self) -> SiteSpec:
        driver = self.ctx.get(SUPPLY_DRIVER)
        return await site_spec(
            self.assets.snapshot, self.tagdb, currency=self.config.site.currency, site_name=self.config.site.name,
            switchable=driver.supports_supply if driver is not None else None,
            history=self.history.kind if self.history is not None else _no_history,
        )

    async def _feed(self) -> None:
        assert self.server is not None
        batch_size = self.server.config.publish_batch
        while True:
            try:
                batch = await self.sub.get_batch(batch_size)
            except StopAsyncIteration:
                return
            unknown = await self.server.push(batch)
            if unknown:
                await self._adopt(unknown)

    async def _adopt(self, changes: list[TagChange]) -> None:
        """Nodes for tags registered after the build, when their owner is in the address space."""
        assert self.server is not None
        site = self.server.site
        adopted: list[TagChange] = []
        for change in changes:
            if change.name in self._ignored or change.name not in self.tagdb:
                continue
            parsed = names.parse(change.name)
            owner = f"{parsed.kind}:{parsed.owner}"
            if not site.has_object(owner):
                self._ignored.add(change.name)  # e.g. an inactive meter; reconsidered on registry change
                continue
            point = _point(
                self.tagdb.meta(change.name), parsed.kind, parsed.point, currency=self.config.site.currency,
                history=self.history.kind if self.history is not None else _no_history,
            )
            self.server.add_point(owner, point, self.tagdb.get)
            adopted.append(change)
        if adopted:
            log.info("OPC UA nodes added for new tags", extra={"count": len(adopted), "first": adopted[0].name})
            await self.server.push(adopted)
            if any(names.parse(c.name).point in _SWITCH_POINTS for c in adopted):
                # a relay or valve appeared: rebuild the meter so that it gets SetRelay
                self._registry_changed.set()

    def _on_registry(self, _snapshot: AssetSnapshot, _diff: RegistryDiff) -> None:
        self._registry_changed.set()

    async def _follow_registry(self) -> None:
        assert self.server is not None
        while True:
            await self._registry_changed.wait()
            self._registry_changed.clear()
            self._ignored.clear()
            result = await self.server.sync(await self._spec(), self.tagdb.get)
            if result:
                log.info(
                    "OPC UA address space follows the registry",
                    extra={
                        "meters_added": ",".join(result.meters_added) or "-",
                        "meters_removed": ",".join(result.meters_removed) or "-",
                        "nodes_added": result.added,
                        "nodes_removed": result.removed,
                    },
                )

    # -- sessions and methods -----------------------------------------------------------------------
    async def end_user_sessions(self, name: str, reason: str) -> int:
        """End ``name``'s OPC UA sessions at once (subscriptions deleted, connections dropped)."""
        if self.server is None:
            return 0
        ended = await self.server.end_sessions(lambda p: isinstance(p, UserInfo) and p.name == name)
        if ended:
            log.info("OPC UA sessions ended", extra={"user": name, "sessions": ended, "reason": reason})
            await self.audit.write(Actor.system("opcua"), "opcua.session.end", "user", name, reason=reason, after={"sessions": ended})
        return ended

    async def sweep_sessions(self) -> int:
        """End the sessions of users who are no longer active (or no longer exist)."""
        if self.server is None:
            return 0
        names = {p.name for p in self.server.principals() if isinstance(p, UserInfo)}
        ended = 0
        for name in sorted(names):
            user = await self.users.get(name)
            if user is None or not user.active:
                ended += await self.end_user_sessions(name, "user disabled")
        return ended

    async def _authenticate(self, username: str, password: str, peer: str) -> UserInfo | None:
        name = username[:64]
        host = peer.rpartition(":")[0]
        # the HMI's and the API's limiter: counted before the check, failures reported in bulk
        with self.ctx[LOGINS].attempt(host, name) as attempt:
            if attempt.refused:
                return None
            user = await self.users.authenticate(username, password)
            if user is None or not user.can(Permission.VIEW):
                log.debug("OPC UA login refused", extra={"user": name, "peer": peer})
                return None
            attempt.succeeded()
        await self.audit.write(user.actor("opcua"), "opcua.login", "user", name, reason=f"from {peer}")
        return user

    async def _current_user(self, caller: Caller) -> UserInfo | None:
        """The caller as the user store knows it now (a role change or a disabled account
        applies to sessions that are already open)."""
        if not isinstance(caller.principal, UserInfo):
            return None
        return await self.users.get(caller.principal.name)

    @staticmethod
    def _actor(caller: Caller, user: UserInfo | None) -> Actor:
        if user is not None:
            return user.actor("opcua")
        return Actor(caller.name, "opcua")

    async def _authorise(self, caller: Caller, permission: Permission, action: str, target_type: str, target_id: str, args: dict[str, Any]) -> UserInfo:
        user = await self._current_user(caller)
        if user is None or not user.can(permission):
            why = "anonymous session" if caller.anonymous else f"user lacks {permission.value}"
            await self.audit.write(
                self._actor(caller, user), action, target_type, target_id,
                outcome="denied", reason=f"{why}; from {caller.peer}", after=args,
            )
            raise MethodRefused(ua.StatusCodes.BadUserAccessDenied, why)
        return user

    async def _set_relay(self, caller: Caller, meter_id: str, closed: bool) -> str:
        """Through the command path; returns once the meter confirmed it, or why not. The
        command path audits the request and its outcome (actor from OPC UA)."""
        args = {"closed": closed}
        user = await self._authorise(caller, Permission.RELAY_CONTROL, "opcua.set_relay", "meter", meter_id, args)
        commands = self.ctx.get(COMMANDS)
        if commands is None:
            detail = "no command path in this server"
            await self.audit.write(
                user.actor("opcua"), "opcua.set_relay", "meter", meter_id,
                outcome="failed", reason=f"{detail}; from {caller.peer}", after=args,
            )
            raise MethodRefused(ua.StatusCodes.BadNotImplemented, detail)
        kind = CommandKind.CONNECT if closed else CommandKind.DISCONNECT
        request = CommandRequest(meter_id, kind, actor=user.actor("opcua"), reason=f"OPC UA SetRelay from {caller.peer}", user=user)
        result = await commands.execute(request)
        log.info(
            "OPC UA SetRelay", extra={"meter": meter_id, "user": user.name, "closed": closed, "status": result.status, "detail": result.detail}
        )
        if result.status == "denied":
            raise MethodRefused(ua.StatusCodes.BadUserAccessDenied, result.detail)
        return result.status if result.status == "confirmed" else f"{result.status}: {result.detail}"

    async def _recharge(self, caller: Caller, room_id: str, amount: float, reference: str) -> float:
        """Credit the room's account through the prepaid engine (which audits it in the ledger's
        transaction). The Double becomes a Decimal through its shortest repr (``0.1`` → ``0.1``),
        then must be a positive amount with no more decimals than the currency has; the
        reference makes a repeated call credit once."""
        # the audit row quotes a short prefix of an oversized or control-character reference,
        # never the whole of what a client sent
        args = {"amount": repr(amount), "reference": reference if len(reference) <= 128 and not has_control(reference) else quote(reference)}
        user = await self._authorise(caller, Permission.RECHARGE, "opcua.recharge", "room", room_id, args)
        engine = self.ctx.get(PREPAID)

        async def failed(status: int, detail: str) -> MethodRefused:
            await self.audit.write(
                user.actor("opcua"), "opcua.recharge", "room", room_id,
                outcome="failed", reason=f"{detail}; from {caller.peer}", after=args,
            )
            return MethodRefused(status, detail)

        if engine is None:
            raise await failed(ua.StatusCodes.BadNotImplemented, "no prepaid engine in this server")
        reference = reference.strip()
        if not reference or len(reference) > 128:
            raise await failed(ua.StatusCodes.BadInvalidArgument, "Reference: a payment reference of 1 to 128 characters is required")
        try:
            # the same bound as the HTTP API's JSON text: a NUL or an escape never reaches the ledger
            check_text(reference, "Reference")
        except InputError as exc:
            raise await failed(ua.StatusCodes.BadInvalidArgument, str(exc)) from None
        try:
            minor = parse_money(Decimal(repr(amount)), "Amount", engine.minor_units, maximum=engine.cfg.max_amount)
        except (MoneyError, InvalidOperation) as exc:
            raise await failed(ua.StatusCodes.BadInvalidArgument, str(exc)) from None
        try:
            result = await engine.recharge(
                room_id, minor, channel="opcua", reference=reference, actor=user.actor("opcua"),
                reason=f"OPC UA Recharge from {caller.peer}",
            )
        except PrepaidError as exc:
            status = {404: ua.StatusCodes.BadNotFound, 422: ua.StatusCodes.BadInvalidArgument}.get(exc.status, ua.StatusCodes.BadInvalidState)
            raise await failed(status, exc.message) from None
        balance = minor_to_decimal(result.account.balance_minor, engine.minor_units)
        log.info("OPC UA Recharge", extra={"room": room_id, "user": user.name, "amount": format_minor(minor, engine.minor_units),
                                           "replayed": result.replayed, "balance": format(balance, "f")})
        return float(balance)  # the method's Balance output is a Double; the ledger keeps the exact amount

    async def _refused(self, caller: Caller, service: str) -> None:
        user = await self._current_user(caller)
        await self.audit.write(
            self._actor(caller, user), "opcua.write", "opcua", service,
            outcome="denied", reason=f"{service} is not allowed over OPC UA; from {caller.peer}",
        )
