"""Alarms & Conditions (OPC UA Part 9): the runtime's alarms as conditions, their events and methods.

The runtime reports each alarm point's state as a :class:`ConditionState` (plain data); this
module turns it into a condition event of a standard alarm type (``OffNormalAlarmType``,
``ExclusiveLevelAlarmType`` and the other subtypes of :class:`ConditionKind`) whose source is the
meter, room or link node (``Server`` for system alarms), and delivers it to the event
subscriptions of ``Server`` and of the folders above the source (see :mod:`.site`).

Conditions are not nodes of the address space (Part 9 §4.10 allows it): a condition is known by
its ConditionId, ``ns=<ns>;s=condition:<alarm key>`` (``condition:comm_loss:meter:E-101``), which
every event carries. Clients call the standard methods with the ConditionId as ObjectId (the
shelving methods also with ``<ConditionId>/ShelvingState``): Acknowledge, Confirm, AddComment,
TimedShelve, OneShotShelve, Unshelve; ConditionRefresh(2) resends the standing (retained)
conditions between a RefreshStart and a RefreshEnd event. asyncua's method service requires
the ObjectId to exist, so these method ids are routed here first (:class:`RoutedMethods`).

Who may do what is the runtime's business (:class:`ConditionActions`); this module checks the
arguments and the EventId (Acknowledge and Confirm name the event they answer: one this server
sent for the condition's current occurrence) and answers with Part 9's status codes.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from asyncua import ua
from asyncua.server.address_space import AddressSpace, MethodService

from .methods import MethodRefused, bad_args
from .sessions import CALLER, SESSION_ID, Caller
from .site import SERVER_NODE, SiteNodes

__all__ = [
    "ConditionActions",
    "ConditionClass",
    "ConditionKind",
    "ConditionManager",
    "ConditionState",
    "RoutedMethods",
]

log = logging.getLogger(__name__)

S = ua.StatusCodes
O = ua.ObjectIds  # noqa: E741 - the standard's object ids, read like the spec's tables
V, VT = ua.Variant, ua.VariantType


class ConditionKind(str, enum.Enum):
    """The alarm types conditions are reported as (standard types of namespace 0)."""

    OFF_NORMAL = "OffNormalAlarmType"
    INSTRUMENT_DIAGNOSTIC = "InstrumentDiagnosticAlarmType"  # an instrument (meter) fault
    SYSTEM_DIAGNOSTIC = "SystemDiagnosticAlarmType"  # a system component (link, gateway) fault
    EXCLUSIVE_LEVEL = "ExclusiveLevelAlarmType"  # a value beyond a limit (power, balance, buffer)

    @property
    def type_id(self) -> ua.NodeId:
        return ua.NodeId(getattr(O, self.value))

    @property
    def limit(self) -> bool:
        return self is ConditionKind.EXCLUSIVE_LEVEL


class ConditionClass(str, enum.Enum):
    PROCESS = "ProcessConditionClassType"
    MAINTENANCE = "MaintenanceConditionClassType"
    SYSTEM = "SystemConditionClassType"

    @property
    def type_id(self) -> ua.NodeId:
        return ua.NodeId(getattr(O, self.value))

    @property
    def label(self) -> str:
        return self.value.removesuffix("ConditionClassType")


Shelving = Literal["unshelved", "timed", "one_shot"]
LimitState = Literal["HighHigh", "High", "Low", "LowLow"]

_SHELVING = {
    "unshelved": ("Unshelved", O.ShelvedStateMachineType_Unshelved),
    "timed": ("Timed Shelved", O.ShelvedStateMachineType_TimedShelved),
    "one_shot": ("One Shot Shelved", O.ShelvedStateMachineType_OneShotShelved),
}
_LIMIT_STATES = {
    "HighHigh": O.ExclusiveLimitStateMachineType_HighHigh,
    "High": O.ExclusiveLimitStateMachineType_High,
    "Low": O.ExclusiveLimitStateMachineType_Low,
    "LowLow": O.ExclusiveLimitStateMachineType_LowLow,
}


@dataclass(frozen=True, slots=True)
class ConditionState:
    """One condition as the runtime sees it now. ``source`` is the key of one of the site's
    objects (``meter:E-101``, ``room:B1-R101``, ``link:gw-1``), None for the server itself;
    ``input_tag`` names the variable that feeds the alarm."""

    key: str
    kind: ConditionKind
    condition_class: ConditionClass
    name: str  # ConditionName: the alarm class
    source: str | None
    source_name: str
    message: str
    severity: int  # 1..1000
    time: datetime  # of the change this state follows
    active: bool
    active_time: datetime | None
    acked: bool
    confirmed: bool
    retain: bool  # the alarm is open: clients should know of it
    input_tag: str | None = None
    shelving: Shelving = "unshelved"
    unshelve_at: datetime | None = None
    suppressed: bool = False
    out_of_service: bool = False
    comment: str = ""
    client_user: str = ""
    comment_time: datetime | None = None
    limit_state: LimitState | None = None
    limits: dict[str, float] = field(default_factory=dict)  # "High" → HighLimit …
    max_time_shelved_ms: float = 0.0


Action = Literal["Acknowledge", "Confirm", "AddComment", "TimedShelve", "OneShotShelve", "Unshelve"]


class ConditionActions(Protocol):
    """The runtime's side of the methods: authorise ``caller`` (refusing with
    ``MethodRefused(Bad_UserAccessDenied)`` first of all), refuse with
    ``Bad_EventIdUnknown`` when ``event_known`` is False, then act on the alarm the condition
    ``key`` stands for, raising :class:`MethodRefused` with Part 9's codes."""

    async def act(
        self, caller: Caller, action: Action, key: str, *, comment: str, event_known: bool, shelving_ms: float | None
    ) -> None: ...


class _AnyOf(int):
    """A numeric identifier equal to each of ``ids`` (its own among them)."""

    ids: frozenset[int]

    def __new__(cls, value: int, ids: frozenset[int]) -> _AnyOf:
        obj = super().__new__(cls, value)
        obj.ids = ids
        return obj

    def __eq__(self, other: object) -> bool:
        return other in self.ids

    def __hash__(self) -> int:
        return int.__hash__(self)


def _type_match(type_id: ua.NodeId, supertypes: frozenset[ua.NodeId]) -> ua.NodeId:
    """An event's EventType as asyncua's where-clause evaluator compares it: equal to the type
    and to each of its supertypes, so that ``OfType`` and ``InList`` of a supertype match
    (asyncua compares for equality). Its hash is the type's own."""
    ids = frozenset(int(t.Identifier) for t in supertypes if t.NamespaceIndex == 0 and isinstance(t.Identifier, int))
    if type_id.NamespaceIndex != 0 or not isinstance(type_id.Identifier, int):
        return type_id
    return ua.NodeId(_AnyOf(type_id.Identifier, ids), 0)


class ConditionEvent:
    """One event notification: its fields by browse path (``AckedState/Id``), what asyncua's
    monitored items ask of an event (``emitting_node``, ``EventType``, ``to_event_fields``,
    attribute access by the first browse name for where clauses)."""

    __slots__ = ("fields", "EventType", "NodeId", "emitting_node")

    def __init__(self, fields: dict[str, ua.Variant], event_type: ua.NodeId, condition_id: ua.NodeId | None) -> None:
        self.fields = fields
        self.EventType = event_type
        self.NodeId = condition_id
        self.emitting_node: ua.NodeId = SERVER_NODE

    def at(self, notifier: ua.NodeId) -> ConditionEvent:
        """The same event, delivered at ``notifier`` (a copy: deliveries never race)."""
        copy = ConditionEvent(self.fields, self.EventType, self.NodeId)
        copy.emitting_node = notifier
        return copy

    def to_event_fields(self, select_clauses: list[ua.SimpleAttributeOperand]) -> list[ua.Variant]:
        out: list[ua.Variant] = []
        for clause in select_clauses:
            if not clause.BrowsePath:
                # the ConditionId: the NodeId attribute of the ConditionType, no browse path
                if clause.AttributeId == ua.AttributeIds.NodeId and self.NodeId is not None:
                    out.append(V(self.NodeId, VT.NodeId))
                else:
                    out.append(V(None))
                continue
            out.append(self.fields.get("/".join(q.Name for q in clause.BrowsePath), V(None)))
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name].Value  # where clauses: the field's value
        except KeyError:
            raise AttributeError(name) from None


@dataclass(slots=True)
class _Condition:
    state: ConditionState
    event: ConditionEvent
    notifiers: list[ua.NodeId]
    event_ids: deque[bytes]
    severity: int


def _lt(text: str) -> ua.Variant:
    return V(ua.LocalizedText(text), VT.LocalizedText)


def _dt(ts: datetime | None) -> ua.Variant:
    return V(ts, VT.DateTime) if ts is not None else V(None)


def _supertypes(aspace: AddressSpace, type_id: ua.NodeId) -> frozenset[ua.NodeId]:
    out: set[ua.NodeId] = set()
    current: ua.NodeId | None = type_id
    subtype = ua.NodeId(O.HasSubtype)
    while current is not None and current not in out:
        out.add(current)
        node = aspace.get(current)
        current = next((r.NodeId for r in node.references if not r.IsForward and r.ReferenceTypeId == subtype), None) if node else None
    return frozenset(out)


Handler = Callable[[ua.NodeId, list[ua.Variant]], Awaitable[ua.CallMethodResult]]


class RoutedMethods(MethodService):
    """asyncua's method service, with some method ids answered by our handlers whatever the
    ObjectId (a ConditionId is not a node)."""

    def __init__(self, aspace: AddressSpace, routes: dict[ua.NodeId, Handler]) -> None:
        super().__init__(aspace)
        self.routes = routes

    async def _call(self, method: ua.CallMethodRequest) -> ua.CallMethodResult:
        handler = self.routes.get(method.MethodId)
        if handler is None:
            return await super()._call(method)
        try:
            result = await handler(method.ObjectId, list(method.InputArguments or []))
        except Exception:
            log.exception("OPC UA condition method failed", extra={"method": method.MethodId.to_string()})
            return ua.CallMethodResult(StatusCode=ua.StatusCode(S.BadInternalError))
        while len(result.InputArgumentResults) < len(method.InputArguments or []):
            result.InputArgumentResults.append(ua.StatusCode())
        return result


def _status(code: int) -> ua.CallMethodResult:
    return ua.CallMethodResult(StatusCode=ua.StatusCode(code))


_EVENT_AND_COMMENT = [VT.ByteString, VT.LocalizedText]


class ConditionManager:
    """The conditions of one server: their last events, their delivery, their methods."""

    def __init__(self, iserver: Any, site: SiteNodes, ns: int, actions: ConditionActions | None) -> None:
        self.iserver = iserver
        self.site = site
        self.ns = ns
        self.actions = actions
        self._conditions: dict[str, _Condition] = {}
        self._types: dict[ua.NodeId, ua.NodeId] = {}
        self.events_sent = 0

    # -- setup ---------------------------------------------------------------------------------
    def install(self) -> None:
        """Route the condition methods here (asyncua's method service is replaced)."""
        routes: dict[ua.NodeId, Handler] = {}

        def route(ids: Iterable[int], handler: Handler) -> None:
            for i in ids:
                routes[ua.NodeId(i)] = handler

        route([O.AcknowledgeableConditionType_Acknowledge], lambda obj, args: self._event_method("Acknowledge", obj, args))
        route([O.AcknowledgeableConditionType_Confirm], lambda obj, args: self._event_method("Confirm", obj, args))
        route([O.ConditionType_AddComment], lambda obj, args: self._event_method("AddComment", obj, args))
        route([O.AlarmConditionType_ShelvingState_TimedShelve, O.ShelvedStateMachineType_TimedShelve],
              lambda obj, args: self._shelve_method("TimedShelve", obj, args))
        route([O.AlarmConditionType_ShelvingState_OneShotShelve, O.ShelvedStateMachineType_OneShotShelve],
              lambda obj, args: self._shelve_method("OneShotShelve", obj, args))
        route([O.AlarmConditionType_ShelvingState_Unshelve, O.ShelvedStateMachineType_Unshelve],
              lambda obj, args: self._shelve_method("Unshelve", obj, args))
        route([O.ConditionType_Enable, O.ConditionType_Disable], self._not_supported)
        route([O.ConditionType_ConditionRefresh], self._refresh)
        route([O.ConditionType_ConditionRefresh2], self._refresh)
        old = self.iserver.method_service
        self.iserver.method_service = RoutedMethods(self.iserver.aspace, routes)
        old.stop()

    def _type(self, type_id: ua.NodeId) -> ua.NodeId:
        match = self._types.get(type_id)
        if match is None:
            match = self._types[type_id] = _type_match(type_id, _supertypes(self.iserver.aspace, type_id))
        return match

    def condition_id(self, key: str) -> ua.NodeId:
        return ua.NodeId(f"condition:{key}", self.ns)

    def key_of(self, object_id: ua.NodeId) -> str | None:
        ident = object_id.Identifier
        if object_id.NamespaceIndex != self.ns or not isinstance(ident, str) or not ident.startswith("condition:"):
            return None
        return ident[len("condition:"):].removesuffix("/ShelvingState")

    # -- state and events ----------------------------------------------------------------------
    @property
    def retained(self) -> list[ConditionState]:
        return [c.state for c in self._conditions.values()]

    def get(self, key: str) -> ConditionState | None:
        entry = self._conditions.get(key)
        return entry.state if entry is not None else None

    def last_event_id(self, key: str) -> bytes | None:
        entry = self._conditions.get(key)
        return entry.event_ids[-1] if entry is not None and entry.event_ids else None

    async def update(self, state: ConditionState, *, emit: bool = True) -> None:
        """Take a condition's new state; send its event (``emit``) to the notifiers above its
        source. A condition that is no longer retained is sent once more and forgotten."""
        entry = self._conditions.get(state.key)
        last_severity = entry.severity if entry is not None else state.severity
        event_id = uuid.uuid4().bytes
        event = self._event(state, event_id, last_severity)
        notifiers = self.site.notifiers(state.source) if state.source is not None and self.site.has_object(state.source) else [SERVER_NODE]
        if state.retain:
            if entry is None:
                entry = self._conditions[state.key] = _Condition(state, event, notifiers, deque(maxlen=32), state.severity)
            entry.state, entry.event, entry.notifiers, entry.severity = state, event, notifiers, state.severity
            entry.event_ids.append(event_id)
        else:
            self._conditions.pop(state.key, None)
        if emit:
            await self._deliver(event, notifiers)

    async def _deliver(self, event: ConditionEvent, notifiers: list[ua.NodeId], subscription_id: int | None = None) -> None:
        subs = self.iserver.subscription_service.subscriptions
        targets = [subs[subscription_id]] if subscription_id is not None and subscription_id in subs else list(subs.values())
        for sub in targets:
            for notifier in notifiers:
                if await sub.monitored_item_srv.trigger_event(event.at(notifier)):
                    self.events_sent += 1

    def _source(self, state: ConditionState) -> tuple[ua.NodeId, str]:
        if state.source is not None and self.site.has_object(state.source):
            return self.site.nodeid(state.source), state.source_name
        return SERVER_NODE, state.source_name or "Server"

    def _event(self, st: ConditionState, event_id: bytes, last_severity: int) -> ConditionEvent:
        now = datetime.now(UTC)
        source, source_name = self._source(st)
        input_node = self.site.nodeid(st.input_tag) if st.input_tag and self.site.has_tag(st.input_tag) else ua.NodeId()
        shelving_text, shelving_id = _SHELVING[st.shelving]
        shelved = st.shelving != "unshelved"
        fields: dict[str, ua.Variant] = {
            "EventId": V(event_id, VT.ByteString),
            "EventType": V(st.kind.type_id, VT.NodeId),
            "SourceNode": V(source, VT.NodeId),
            "SourceName": V(source_name, VT.String),
            "Time": V(st.time, VT.DateTime),
            "ReceiveTime": V(now, VT.DateTime),
            "Message": _lt(st.message),
            "Severity": V(st.severity, VT.UInt16),
            "ConditionClassId": V(st.condition_class.type_id, VT.NodeId),
            "ConditionClassName": _lt(st.condition_class.label),
            "ConditionName": V(st.name, VT.String),
            "BranchId": V(ua.NodeId(), VT.NodeId),
            "Retain": V(st.retain, VT.Boolean),
            "EnabledState": _lt("Enabled"),
            "EnabledState/Id": V(True, VT.Boolean),
            "Quality": V(ua.StatusCode(S.Good), VT.StatusCode),
            "Quality/SourceTimestamp": V(st.time, VT.DateTime),
            "LastSeverity": V(last_severity, VT.UInt16),
            "LastSeverity/SourceTimestamp": V(st.time, VT.DateTime),
            "Comment": _lt(st.comment),
            "Comment/SourceTimestamp": _dt(st.comment_time),
            "ClientUserId": V(st.client_user, VT.String),
            "AckedState": _lt("Acknowledged" if st.acked else "Unacknowledged"),
            "AckedState/Id": V(st.acked, VT.Boolean),
            "ConfirmedState": _lt("Confirmed" if st.confirmed else "Unconfirmed"),
            "ConfirmedState/Id": V(st.confirmed, VT.Boolean),
            "ActiveState": _lt("Active" if st.active else "Inactive"),
            "ActiveState/Id": V(st.active, VT.Boolean),
            "ActiveState/EffectiveDisplayName": _lt(self._effective(st)),
            "ActiveState/TransitionTime": _dt(st.active_time),
            "InputNode": V(input_node, VT.NodeId),
            "SuppressedState": _lt("Suppressed" if st.suppressed else "Unsuppressed"),
            "SuppressedState/Id": V(st.suppressed, VT.Boolean),
            "OutOfServiceState": _lt("Out of Service" if st.out_of_service else "In Service"),
            "OutOfServiceState/Id": V(st.out_of_service, VT.Boolean),
            "ShelvingState/CurrentState": _lt(shelving_text),
            "ShelvingState/CurrentState/Id": V(ua.NodeId(shelving_id), VT.NodeId),
            "ShelvingState/UnshelveTime": V(self._unshelve_ms(st, now), VT.Double) if shelved else V(None),
            "SuppressedOrShelved": V(st.suppressed or shelved, VT.Boolean),
            "MaxTimeShelved": V(st.max_time_shelved_ms, VT.Double),
        }
        if st.kind.limit:
            if st.limit_state is not None and st.active:
                fields["LimitState/CurrentState"] = _lt(st.limit_state)
                fields["LimitState/CurrentState/Id"] = V(ua.NodeId(_LIMIT_STATES[st.limit_state]), VT.NodeId)
            for name, value in st.limits.items():
                fields[f"{name}Limit"] = V(float(value), VT.Double)
        else:
            fields["NormalState"] = V(ua.NodeId(), VT.NodeId)  # no variable holds the normal value
        return ConditionEvent(fields, self._type(st.kind.type_id), self.condition_id(st.key))

    @staticmethod
    def _effective(st: ConditionState) -> str:
        text = "Active" if st.active else "Inactive"
        if st.active and st.limit_state:
            text = f"{st.limit_state} Active"
        if not st.acked:
            text += " | Unacknowledged"
        return text

    @staticmethod
    def _unshelve_ms(st: ConditionState, now: datetime) -> float:
        if st.unshelve_at is None:
            return 0.0
        return max((st.unshelve_at - now).total_seconds() * 1000, 0.0)

    # -- methods -------------------------------------------------------------------------------
    @staticmethod
    def _caller() -> Caller:
        return CALLER.get() or Caller(None, "anonymous", "internal", "None")

    async def _act(self, action: Action, key: str, *, comment: str = "", event_known: bool = True, shelving_ms: float | None = None) -> ua.CallMethodResult:
        if self.actions is None:
            return _status(S.BadNotImplemented)
        try:
            await self.actions.act(self._caller(), action, key, comment=comment, event_known=event_known, shelving_ms=shelving_ms)
        except MethodRefused as refused:
            log.info("OPC UA condition method refused", extra={"method": action, "condition": key, "status": hex(refused.status), "detail": refused.message})
            return _status(refused.status)
        return ua.CallMethodResult()

    def _known(self, object_id: ua.NodeId) -> str | ua.CallMethodResult:
        key = self.key_of(object_id)
        if key is None:
            return _status(S.BadMethodInvalid)  # not a condition of ours
        if key not in self._conditions:
            return _status(S.BadNodeIdUnknown)  # no such condition standing (it may have ended)
        return key

    async def _event_method(self, action: Action, object_id: ua.NodeId, args: list[ua.Variant]) -> ua.CallMethodResult:
        known = self._known(object_id)
        if isinstance(known, ua.CallMethodResult):
            return known
        bad = bad_args(args, list(_EVENT_AND_COMMENT))
        if bad is not None:
            return bad
        event_id = args[0].Value or b""
        comment = args[1].Value.Text if isinstance(args[1].Value, ua.LocalizedText) and args[1].Value.Text else ""
        # AddComment may name any event of the condition; Acknowledge and Confirm too (Part 9: the one they answer)
        event_known = bytes(event_id) in self._conditions[known].event_ids
        return await self._act(action, known, comment=comment, event_known=event_known)

    async def _shelve_method(self, action: Action, object_id: ua.NodeId, args: list[ua.Variant]) -> ua.CallMethodResult:
        known = self._known(object_id)
        if isinstance(known, ua.CallMethodResult):
            return known
        if action == "TimedShelve":
            bad = bad_args(args, [VT.Double])
            if bad is not None:
                return bad
            ms = float(args[0].Value)
            state = self._conditions[known].state
            if not ms > 0 or (state.max_time_shelved_ms and ms > state.max_time_shelved_ms):
                return _status(S.BadShelvingTimeOutOfRange)
            return await self._act(action, known, shelving_ms=ms)
        bad = bad_args(args, [])
        if bad is not None:
            return bad
        return await self._act(action, known)

    async def _not_supported(self, _object_id: ua.NodeId, _args: list[ua.Variant]) -> ua.CallMethodResult:
        # conditions are enabled as long as their alarm class is; a class is disabled in the config
        return _status(S.BadNotSupported)

    async def _refresh(self, _object_id: ua.NodeId, args: list[ua.Variant]) -> ua.CallMethodResult:
        """ConditionRefresh(SubscriptionId) and ConditionRefresh2(SubscriptionId, MonitoredItemId)."""
        expected: list[ua.VariantType | tuple[ua.VariantType, ...]] = [VT.UInt32] if len(args) <= 1 else [VT.UInt32, VT.UInt32]
        bad = bad_args(args, expected)
        if bad is not None:
            return bad
        sid = int(args[0].Value)
        sub = self.iserver.subscription_service.subscriptions.get(sid)
        if sub is None or sub.session_id != SESSION_ID.get():
            return _status(S.BadSubscriptionIdInvalid)
        items: dict[ua.NodeId, list[int]] = sub.monitored_item_srv._monitored_events
        wanted = int(args[1].Value) if len(args) > 1 else None
        if wanted is not None and not any(wanted in mids for mids in items.values()):
            return _status(S.BadMonitoredItemIdInvalid)
        srv = sub.monitored_item_srv
        for node, mids in list(items.items()):
            for mid in list(mids):
                if wanted is not None and mid != wanted:
                    continue
                await srv.trigger_event(self._refresh_event(O.RefreshStartEventType, "ConditionRefresh start").at(node), mid)
                for entry in list(self._conditions.values()):
                    if node in entry.notifiers:
                        await srv.trigger_event(entry.event.at(node), mid)
                await srv.trigger_event(self._refresh_event(O.RefreshEndEventType, "ConditionRefresh end").at(node), mid)
        return ua.CallMethodResult()

    def _refresh_event(self, type_id: int, message: str) -> ConditionEvent:
        now = datetime.now(UTC)
        fields = {
            "EventId": V(uuid.uuid4().bytes, VT.ByteString),
            "EventType": V(ua.NodeId(type_id), VT.NodeId),
            "SourceNode": V(SERVER_NODE, VT.NodeId),
            "SourceName": V("Server", VT.String),
            "Time": V(now, VT.DateTime),
            "ReceiveTime": V(now, VT.DateTime),
            "Message": _lt(message),
            "Severity": V(100, VT.UInt16),
        }
        return ConditionEvent(fields, self._type(ua.NodeId(type_id)), None)
