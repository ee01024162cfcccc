"""The alarm engine's alarms as OPC UA conditions, and the conditions' methods as the engine's
operator actions.

Every transition the engine commits becomes a condition event (:mod:`protocols.opcua.conditions`)
of the type that fits the alarm class, with the meter, room or link node as its source (the
``Server`` object for the historian's buffer). A method called by an OPC UA user is the same
action as the HMI's: it goes through the engine (audited by it, in the alarm console at once),
after the same permission checks (``alarm_ack`` and the class's ``ack_roles`` to acknowledge or
confirm, ``alarm_ack`` to comment, ``alarm_shelve`` to shelve); a refusal is audited too. And the
reverse: an acknowledgement in the HMI is an engine transition, so it reaches OPC UA clients as
an event with ``AckedState`` true.

Alarm class → condition type: ``comm_loss`` and ``relay_fault`` InstrumentDiagnosticAlarmType,
``link_down`` SystemDiagnosticAlarmType, ``tamper``, ``review_hold`` and ``reverse_energy``
OffNormalAlarmType, ``balance_low`` (Low), ``balance_very_low`` and ``balance_exhausted`` (LowLow),
``over_power``, ``historian_buffer`` and ``loss_high`` (High) ExclusiveLevelAlarmType; a class not listed here is
an ExclusiveLevelAlarmType when it has a limit, else an OffNormalAlarmType.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from asyncua import ua

from protocols.opcua import Caller, ConditionClass, ConditionKind, ConditionState, MethodRefused, OpcUaServer
from scada.alarms.alarm import Alarm, AlarmEvent, AlarmState
from scada.alarms.engine import AlarmEngine
from scada.alarms.lifecycle import Event, IllegalTransition
from scada.alarms.operations import AlarmNotFound, NotPermitted
from scada.alarms.store import AlarmFilter
from scada.site.assets import AssetRegistry
from scada.users.audit import AuditLog
from scada.users.auth import Permission, UserInfo
from tags import names

__all__ = ["AlarmConditions", "CONDITION_TYPES"]

log = logging.getLogger(__name__)

S = ua.StatusCodes
K, C = ConditionKind, ConditionClass

# class → (condition type, condition class, limit state, the point that feeds it)
CONDITION_TYPES: dict[str, tuple[ConditionKind, ConditionClass, str | None, str | None]] = {
    "comm_loss": (K.INSTRUMENT_DIAGNOSTIC, C.MAINTENANCE, None, "comm_ok"),
    "relay_fault": (K.INSTRUMENT_DIAGNOSTIC, C.MAINTENANCE, None, "relay_fault"),
    "link_down": (K.SYSTEM_DIAGNOSTIC, C.MAINTENANCE, None, "comm_ok"),
    "tamper": (K.OFF_NORMAL, C.MAINTENANCE, None, "tamper"),
    "review_hold": (K.OFF_NORMAL, C.PROCESS, None, "review_hold"),
    "reverse_energy": (K.OFF_NORMAL, C.PROCESS, None, "reverse_energy"),
    "balance_low": (K.EXCLUSIVE_LEVEL, C.PROCESS, "Low", "balance"),
    "balance_very_low": (K.EXCLUSIVE_LEVEL, C.PROCESS, "LowLow", "balance"),
    "balance_exhausted": (K.EXCLUSIVE_LEVEL, C.PROCESS, "LowLow", "balance"),
    "over_power": (K.EXCLUSIVE_LEVEL, C.PROCESS, "High", "power"),
    "historian_buffer": (K.EXCLUSIVE_LEVEL, C.SYSTEM, "High", None),
    "loss_high": (K.EXCLUSIVE_LEVEL, C.PROCESS, "High", "loss_pct"),
}

_PERMISSIONS = {
    "Acknowledge": Permission.ALARM_ACK,
    "Confirm": Permission.ALARM_ACK,
    "AddComment": Permission.ALARM_ACK,
    "TimedShelve": Permission.ALARM_SHELVE,
    "OneShotShelve": Permission.ALARM_SHELVE,
    "Unshelve": Permission.ALARM_SHELVE,
}
_HIDDEN = (AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE)

Authorise = Callable[[Caller, Permission, str, str, str, dict[str, Any]], Awaitable[UserInfo]]


class AlarmConditions:
    """:class:`protocols.opcua.ConditionActions` over the alarm engine, and the feed of its
    events to the server (:meth:`run`)."""

    def __init__(self, engine: AlarmEngine, assets: AssetRegistry, audit: AuditLog, authorise: Authorise) -> None:
        self.engine = engine
        self.assets = assets
        self.audit = audit
        self.authorise = authorise
        self._ids: dict[str, int] = {}  # condition (alarm point) → its open occurrence

    # -- alarms → conditions ---------------------------------------------------------------------
    def state(self, alarm: Alarm, when: Any = None) -> ConditionState:
        cls = self.engine.classes.get(alarm.alarm_class)
        kind, condition_class, limit_state, point = CONDITION_TYPES.get(alarm.alarm_class) or (
            (K.EXCLUSIVE_LEVEL, C.PROCESS, "High", None) if cls is not None and cls.limit is not None else (K.OFF_NORMAL, C.PROCESS, None, None)
        )
        source = f"{alarm.object_type}:{alarm.object_id}" if alarm.object_type in ("meter", "room", "link") else None
        shelved = alarm.state is AlarmState.SHELVED
        acked = alarm.state is AlarmState.NORMAL or alarm.acked_at is not None
        return ConditionState(
            key=alarm.key,
            kind=kind,
            condition_class=condition_class,
            name=alarm.alarm_class,
            source=source,
            source_name=alarm.object_id if source is not None else "Server",
            message=alarm.message,
            severity=alarm.priority.severity,
            time=when or alarm.updated_at,
            active=alarm.condition_active,
            active_time=alarm.last_active_at if alarm.condition_active else (alarm.cleared_at or alarm.last_active_at),
            acked=acked,
            confirmed=alarm.confirmed_at is not None,
            retain=alarm.closed_at is None and alarm.state is not AlarmState.NORMAL,
            input_tag=self._input(alarm, point),
            shelving=("one_shot" if alarm.shelve_one_shot else "timed") if shelved else "unshelved",
            unshelve_at=alarm.shelved_until if shelved else None,
            suppressed=alarm.state is AlarmState.SUPPRESSED,
            out_of_service=alarm.state is AlarmState.OUT_OF_SERVICE,
            comment=alarm.comment or "",
            client_user=alarm.comment_by or "",
            comment_time=alarm.comment_at,
            limit_state=limit_state,  # type: ignore[arg-type]
            limits=self._limits(alarm, limit_state),
            max_time_shelved_ms=self.engine.max_shelve.total_seconds() * 1000,
        )

    @staticmethod
    def _input(alarm: Alarm, point: str | None) -> str | None:
        if point is None:
            return None
        if alarm.object_type == "meter":
            return names.meter_tag(alarm.object_id, point)
        if alarm.object_type == "room":
            return names.room_tag(alarm.object_id, point)
        if alarm.object_type == "link":
            return names.link_tag(alarm.object_id, point)
        return None

    def _limits(self, alarm: Alarm, limit_state: str | None) -> dict[str, float]:
        cls = self.engine.classes.get(alarm.alarm_class)
        if limit_state is None or cls is None or cls.limit is None:
            return {}
        if alarm.alarm_class == "over_power":
            meter = self.assets.snapshot.meters.get(alarm.object_id)
            if meter is None or meter.max_power_kw is None:
                return {}
            return {limit_state: float(meter.max_power_kw) * cls.limit}
        return {limit_state: cls.limit}

    async def run(self, server: OpcUaServer) -> None:
        """Standing alarms first (no events: clients ask with ConditionRefresh), then every
        transition as it is committed."""
        sub = self.engine.subscribe(maxsize=50_000, name="opcua-conditions")
        try:
            for alarm in self.engine.active(AlarmFilter(states=None, open_only=True, limit=1_000_000)):
                self._ids[alarm.key] = alarm.id
                await server.update_condition(self.state(alarm), emit=False)
            while True:
                try:
                    batch: list[AlarmEvent] = await sub.get_batch(1_000)
                except StopAsyncIteration:
                    return
                for event in batch:
                    alarm = event.alarm
                    if alarm.closed_at is None:
                        self._ids[alarm.key] = alarm.id
                    elif self._ids.get(alarm.key) == alarm.id:
                        del self._ids[alarm.key]
                    await server.update_condition(self.state(alarm, event.transition.ts))
        finally:
            sub.close()

    # -- methods → operator actions ----------------------------------------------------------------
    async def act(
        self, caller: Caller, action: str, key: str, *, comment: str, event_known: bool, shelving_ms: float | None
    ) -> None:
        permission = _PERMISSIONS[action]
        audit_action = f"opcua.alarm.{action.lower()}"
        alarm_id = self._ids.get(key)
        args: dict[str, Any] = {"condition": key, "comment": comment}
        if shelving_ms is not None:
            args["shelving_ms"] = shelving_ms
        user = await self.authorise(caller, permission, audit_action, "alarm", str(alarm_id or key), args)
        if not event_known:
            raise MethodRefused(S.BadEventIdUnknown, "the EventId names no event of this condition's occurrence")
        if alarm_id is None:
            raise MethodRefused(S.BadNodeIdUnknown, f"no standing condition {key}")
        actor = user.actor("opcua")
        engine = self.engine
        try:
            if action == "Acknowledge":
                await engine.acknowledge(alarm_id, actor, comment)
            elif action == "Confirm":
                await engine.confirm(alarm_id, actor, comment)
            elif action == "AddComment":
                await engine.comment(alarm_id, actor, comment)
            elif action == "TimedShelve":
                assert shelving_ms is not None
                await engine.shelve(alarm_id, actor, f"TimedShelve over OPC UA from {caller.peer}", timedelta(milliseconds=shelving_ms))
            elif action == "OneShotShelve":
                await engine.shelve(alarm_id, actor, f"OneShotShelve over OPC UA from {caller.peer}", one_shot=True)
            else:
                await engine.unshelve(alarm_id, actor, f"Unshelve over OPC UA from {caller.peer}")
        except NotPermitted as exc:
            await self.audit.write(actor, audit_action, "alarm", str(alarm_id), outcome="denied", reason=f"{exc}; from {caller.peer}", after=args)
            raise MethodRefused(S.BadUserAccessDenied, str(exc)) from None
        except AlarmNotFound:
            raise MethodRefused(S.BadNodeIdUnknown, f"no alarm {alarm_id}") from None
        except IllegalTransition as exc:
            raise MethodRefused(_illegal(exc), str(exc)) from None
        except ValueError as exc:
            code = S.BadShelvingTimeOutOfRange if action.endswith("Shelve") else S.BadInvalidArgument
            raise MethodRefused(code, str(exc)) from None
        log.info("OPC UA condition method", extra={"method": action, "alarm": alarm_id, "condition": key, "user": user.name})


def _illegal(exc: IllegalTransition) -> int:
    """Part 9's answer to an action the alarm's state does not allow."""
    if exc.event is Event.ACKNOWLEDGE and exc.state is AlarmState.ACTIVE_ACK:
        return S.BadConditionBranchAlreadyAcked
    if exc.event is Event.CONFIRM and "already confirmed" in str(exc):
        return S.BadConditionBranchAlreadyConfirmed
    if exc.event is Event.SHELVE and exc.state is AlarmState.SHELVED:
        return S.BadConditionAlreadyShelved
    if exc.event is Event.UNSHELVE:
        return S.BadConditionNotShelved
    if exc.state in _HIDDEN:
        return S.BadConditionDisabled if exc.state is AlarmState.OUT_OF_SERVICE else S.BadInvalidState
    return S.BadInvalidState
