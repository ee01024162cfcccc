"""The OPC UA server: asyncua behind our adapter.

:class:`OpcUaServer` owns an asyncua server configured without its insecure defaults (it listens
only on the configured address, offers only the configured security policies, accepts only
trusted client certificates, never grants asyncua's admin role) and the site's nodes. The
runtime feeds it plain data (:class:`SiteSpec`) and tag changes, and injects the callables behind
sessions and methods (:class:`ServerHooks`); this package knows nothing of users, commands or
money.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import ServerDesc

from tags import TagChange

from .conditions import ConditionActions, ConditionManager, ConditionState
from .config import OpcUaConfig
from .history import HistoryAccess, HistorySource, define_history_nodes
from .methods import MethodRefused, bad_args
from .model import PointSpec, SiteSpec
from .monitoring import install as install_monitoring
from .nodes import NodeWriter
from .pki import Pki
from .sessions import CALLER, CHANNEL_SECURE, Caller, Gate, GatedProcessor, UserRuleset
from .site import LookupValue, SiteNodes, SyncResult
from .standard_space import install as install_standard_space
from .status import status_name
from .types import TypeIds, define_types

__all__ = ["MethodRefused", "OpcUaServer", "ServerHooks", "default_application_uri"]

log = logging.getLogger(__name__)

_POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


@dataclass(frozen=True, slots=True)
class ServerHooks:
    """What the runtime plugs in. ``authenticate(user, password, peer)`` returns an opaque
    principal or None; ``set_relay(caller, meter_id, closed)`` returns the result text;
    ``recharge(caller, room_id, amount, reference)`` the new balance; both raise
    :class:`MethodRefused`. ``refused(caller, service)`` hears of refused writes.
    ``history`` serves HistoryRead (None: no variable is historized); ``conditions`` acts on the
    alarms behind conditions (None: their methods answer Bad_NotImplemented)."""

    authenticate: Callable[[str, str, str], Awaitable[Any | None]]
    set_relay: Callable[[Caller, str, bool], Awaitable[str]]
    recharge: Callable[[Caller, str, float, str], Awaitable[float]]
    refused: Callable[[Caller, str], Awaitable[None]]
    history: HistorySource | None = None
    conditions: ConditionActions | None = None


class _ServiceFaults(logging.Filter):
    """asyncua logs every ServiceFault it answers at ERROR (a refused login, an untrusted
    certificate, a refused write). Those are answers, not server errors: we log refusals
    ourselves, once and with context."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("sending service fault response")


_FAULTS = _ServiceFaults()


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:prepaid-scada"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Protocol(OPCUAProtocol):
    gate: Gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None: refused (too many connections)
            self.processor = GatedProcessor(self.iserver, self.transport, self.limits, self.gate)
            self.processor.set_policies(self.policies)


class _BinaryServer(BinaryServer):
    def __init__(self, *args: Any, gate: Gate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _Protocol(
            iserver=self.iserver, policies=self._policies, clients=self.clients,
            closing_tasks=self.closing_tasks, limits=self.limits,
        )
        protocol.gate = self.gate
        return protocol


class _Server(Server):
    """asyncua's server, listening through :class:`GatedProcessor`, bound before its endpoints
    are described (so that port 0 is advertised as the real port)."""

    gate: Gate

    async def start(self) -> None:
        host = self.endpoint.hostname or "127.0.0.1"
        self.bserver = _BinaryServer(self.iserver, host, self.endpoint.port or 0, self.limits, gate=self.gate)
        await self.bserver.start()
        try:
            self.set_endpoint(f"opc.tcp://{_url_host(host)}:{self.bserver.port}")
            await self._setup_server_nodes()
            self.bserver.set_policies(self._policies)
            for edp in self.iserver.endpoints:
                self.iserver._known_servers[edp.Server.ApplicationUri] = ServerDesc(edp.Server)
            await self.iserver.start()
        except BaseException:
            await self.bserver.stop()
            raise

    async def stop(self) -> None:
        if self.bserver is not None:
            await self.bserver.stop()
        # sessions with subscriptions outlive their connection (for a reconnect): end them
        for session in list(self.iserver._external_sessions.values()):
            await session.close_session(True)
        await _end_clock(self)
        await self.iserver.stop()


async def _end_clock(server: Server) -> None:
    """End asyncua's task that writes Server.ServerStatus.CurrentTime once a second. Its own stop
    sets a flag and waits for the task's next turn: up to a second of every stop (asyncua 2.x)."""
    iserver = server.iserver
    task = iserver.time_task
    if task is None or task.done():
        return
    iserver._time_task_stop = True  # as asyncua's stop does, should the task be between turns
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # our own stop was cancelled, not only the clock
    iserver.time_task = None  # asyncua's stop awaits it: a cancelled task would raise there


class OpcUaServer:
    def __init__(
        self,
        config: OpcUaConfig,
        *,
        pki_dir: Path,
        hooks: ServerHooks,
        software_version: str = "0",
        lazy_nodes: bool = True,
    ) -> None:
        """``lazy_nodes``: rooms' and meters' variables and methods are built at their first
        touch (:mod:`protocols.opcua.site`); False builds them all in each sync (benchmarks)."""
        self.config = config
        self.lazy_nodes = lazy_nodes
        self.hooks = hooks
        self.pki = Pki(pki_dir)
        self.application_uri = config.application_uri or default_application_uri()
        self.software_version = software_version
        self.gate = Gate(hooks.authenticate, hooks.refused, allow_anonymous=config.allow_anonymous)
        self._server: _Server | None = None
        self._site: SiteNodes | None = None
        self.history: HistoryAccess | None = None
        self._conditions: ConditionManager | None = None
        self.types: TypeIds | None = None
        self.ns = 0
        self.build_s = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        logging.getLogger("asyncua.server.uaprocessor").addFilter(_FAULTS)  # idempotent
        install_monitoring()  # monitored items keep scalar values without a deep copy (idempotent)
        hosts = [cfg.host, *cfg.certificate_hosts]
        await asyncio.to_thread(self.pki.ensure_server_certificate, self.application_uri, cfg.server_name, hosts)
        server = _Server(user_manager=self.gate)  # type: ignore[arg-type]
        server.gate = self.gate
        install_standard_space(server.iserver)  # namespace 0 copied from this process's first fill
        await server.init()
        server.set_server_name(cfg.server_name)
        server.product_uri = "urn:prepaid-scada"
        server.manufacturer_name = "prepaid-scada"
        server.application_type = ua.ApplicationType.Server
        await server.set_application_uri(self.application_uri)
        await server.set_build_info(
            server.product_uri, server.manufacturer_name, cfg.server_name, self.software_version, "0", datetime.now(UTC)
        )
        server.allow_remote_admin(False)
        server.set_endpoint(f"opc.tcp://{_url_host(cfg.host)}:{cfg.port}")
        server.set_security_policy([_POLICIES[m] for m in cfg.security], permission_ruleset=UserRuleset())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if cfg.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        await server.load_certificate(str(self.pki.cert_file))
        await server.load_private_key(str(self.pki.key_file))
        server.set_certificate_validator(self._validate_client)
        self.ns = await server.register_namespace(cfg.namespace_uri)
        self.types = await define_types(server, self.ns, set_relay=self._call_set_relay, recharge=self._call_recharge)
        configs = await define_history_nodes(server, self.ns, max_values=cfg.history_max_values) if self.hooks.history else {}
        self._site = site = SiteNodes(
            NodeWriter(server.iserver.aspace), self.ns, self.types, cfg.namespace_uri,
            set_relay=self._call_set_relay, recharge=self._call_recharge, history_configs=configs, lazy=self.lazy_nodes,
        )
        aspace = server.iserver.aspace
        ns = self.ns

        def tag_of(nodeid: ua.NodeId) -> str | None:
            ident = nodeid.Identifier
            return ident if nodeid.NamespaceIndex == ns and isinstance(ident, str) and site.has_tag(ident) else None

        # HistoryRead is served from the historian, not from asyncua's own history storage
        self.history = HistoryAccess(
            self.hooks.history, tag_of=tag_of, exists=lambda nodeid: nodeid in aspace, max_values=cfg.history_max_values,
        )
        server.iserver.history_manager = self.history  # type: ignore[assignment]
        self._conditions = ConditionManager(server.iserver, site, ns, self.hooks.conditions)
        self._conditions.install()
        await server.start()
        self._server = server
        if cfg.none_allowed and not cfg.loopback:
            log.warning("OPC UA security mode None is enabled on a non-loopback address", extra={"host": cfg.host})
        log.info("OPC UA listening", extra={"url": self.url, "security": ",".join(cfg.security)})

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # asyncua's stop waits for its clock task to wake from its one-second sleep and see
            # the stop flag: cancelled here instead, the stop takes no second
            clock = server.iserver.time_task
            if clock is not None:
                clock.cancel()
                await asyncio.wait([clock])
                if not clock.cancelled() and clock.exception() is not None:
                    log.warning("the OPC UA server's clock task had failed", exc_info=clock.exception())
                server.iserver.time_task = None
            await server.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the OPC UA server is not running")
        return self._server.endpoint.geturl()

    @property
    def port(self) -> int:
        if self._server is None or self._server.bserver is None:
            raise RuntimeError("the OPC UA server is not running")
        return int(self._server.bserver.port)

    @property
    def site(self) -> SiteNodes:
        if self._site is None:
            raise RuntimeError("the OPC UA server is not started")
        return self._site

    @property
    def conditions(self) -> ConditionManager:
        if self._conditions is None:
            raise RuntimeError("the OPC UA server is not started")
        return self._conditions

    async def update_condition(self, state: ConditionState, *, emit: bool = True) -> None:
        """A condition's new state; its event goes to the subscribers (``emit``)."""
        await self.conditions.update(state, emit=emit)

    @property
    def asyncua(self) -> Server:
        """The asyncua server (for tests and benchmarks)."""
        if self._server is None:
            raise RuntimeError("the OPC UA server is not running")
        return self._server

    # -- sessions --------------------------------------------------------------------------------
    def _sessions(self) -> dict[int, tuple[Any, Any]]:
        """Every live client session (by id): the session and the connection it is on (None for a
        session waiting for its client to reconnect)."""
        server = self._server
        if server is None:
            return {}
        found: dict[int, tuple[Any, Any]] = {}
        for protocol in list(server.bserver.clients if server.bserver is not None else []):
            processor = protocol.processor
            session = processor.session if processor is not None else None
            if session is not None:
                found[id(session)] = (session, protocol.transport)
        for session in list(server.iserver._external_sessions.values()):
            found.setdefault(id(session), (session, None))
        return found

    def principals(self) -> list[Any]:
        """What ``authenticate`` returned for each live session with a user (anonymous ones
        are left out)."""
        return [p for session, _ in self._sessions().values() if (p := getattr(session.user, "principal", None)) is not None]

    async def end_sessions(self, which: Callable[[Any], bool]) -> int:
        """End at once every session whose principal ``which`` selects: its subscriptions are
        deleted, the session closed and its connection dropped. Returns how many."""
        ended = 0
        for session, transport in self._sessions().values():
            principal = getattr(session.user, "principal", None)
            if principal is None or not which(principal):
                continue
            await session.close_session(True)
            if transport is not None:
                transport.close()
            ended += 1
        return ended

    # -- content ---------------------------------------------------------------------------------
    async def sync(self, site: SiteSpec, current: LookupValue) -> SyncResult:
        return await self.site.sync(site, current)

    def add_point(self, owner_key: str, point: PointSpec, current: LookupValue) -> int:
        return self.site.add_point(owner_key, point, current(point.tag))

    async def push(self, changes: Iterable[TagChange]) -> list[TagChange]:
        return await self.site.push(changes)

    async def _validate_client(self, cert: Any, app: ua.ApplicationDescription) -> None:
        # on a channel without security the client's certificate plays no part: not checked
        if CHANNEL_SECURE.get():
            await self.pki.validate_client(cert, app)

    # -- methods -----------------------------------------------------------------------------------
    @staticmethod
    def _caller() -> Caller:
        return CALLER.get() or Caller(None, "anonymous", "internal", "None")

    _bad_args = staticmethod(bad_args)

    async def _run_hook(self, name: str, target: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except MethodRefused as exc:
            log.info("OPC UA call refused", extra={"method": name, "target": target, "status": status_name(exc.status), "detail": exc.message})
            return ua.StatusCode(exc.status)
        except Exception:
            log.exception("OPC UA method failed", extra={"method": name, "target": target})
            return ua.StatusCode(ua.StatusCodes.BadInternalError)

    async def _call_set_relay(self, parent: ua.NodeId, *args: Any) -> Any:
        meter_id = self.site.meter_of(parent)
        if meter_id is None:
            return ua.StatusCode(ua.StatusCodes.BadMethodInvalid)
        bad = self._bad_args(args, [ua.VariantType.Boolean])
        if bad is not None:
            return bad
        result = await self._run_hook("SetRelay", meter_id, self.hooks.set_relay(self._caller(), meter_id, bool(args[0].Value)))
        if isinstance(result, ua.StatusCode):
            return result
        return [ua.Variant(str(result), ua.VariantType.String)]

    async def _call_recharge(self, parent: ua.NodeId, *args: Any) -> Any:
        room_id = self.site.room_of(parent)
        if room_id is None:
            return ua.StatusCode(ua.StatusCodes.BadMethodInvalid)
        bad = self._bad_args(args, [(ua.VariantType.Double, ua.VariantType.Float), ua.VariantType.String])
        if bad is not None:
            return bad
        amount = float(args[0].Value)
        if not math.isfinite(amount):
            return ua.CallMethodResult(
                StatusCode=ua.StatusCode(ua.StatusCodes.BadInvalidArgument),
                InputArgumentResults=[ua.StatusCode(ua.StatusCodes.BadOutOfRange), ua.StatusCode()],
            )
        reference = args[1].Value or ""
        result = await self._run_hook("Recharge", room_id, self.hooks.recharge(self._caller(), room_id, amount, reference))
        if isinstance(result, ua.StatusCode):
            return result
        return [ua.Variant(float(result), ua.VariantType.Double)]
