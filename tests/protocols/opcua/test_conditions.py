"""Conditions (Part 9) seen by a client on a real socket (asyncua's client here; node-opcua against
the alarm engine in tests/scada): events of the right type at ``Server`` and at the folders above
the source, the condition methods with their checks, ConditionRefresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua

from protocols.opcua import Caller, ConditionClass, ConditionKind, ConditionState, MethodRefused, OpcUaConfig, OpcUaServer

from .conftest import Recorder, small_site

# one server for the module; each test starts from no standing condition (``cserver`` clears them)
pytestmark = pytest.mark.asyncio(loop_scope="module")

S = ua.StatusCodes
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
KEY = "comm_loss:meter:E-B1-R101"


def comm_loss(**changes: Any) -> ConditionState:
    state = ConditionState(
        key=KEY, kind=ConditionKind.INSTRUMENT_DIAGNOSTIC, condition_class=ConditionClass.MAINTENANCE, name="comm_loss",
        source="meter:E-B1-R101", source_name="E-B1-R101", message="Communication lost: meter E-B1-R101", severity=500,
        time=T0, active=True, active_time=T0, acked=False, confirmed=False, retain=True, input_tag="E-B1-R101.comm_ok",
        max_time_shelved_ms=3_600_000.0,
    )
    return replace(state, **changes)


@dataclass
class Actions:
    """The runtime's side, recorded: refuses anonymous callers, then unknown events."""

    server: OpcUaServer | None = None
    calls: list[tuple[str, str, str, str, float | None]] = field(default_factory=list)

    async def act(self, caller: Caller, action: str, key: str, *, comment: str, event_known: bool, shelving_ms: float | None) -> None:
        if caller.anonymous:
            raise MethodRefused(S.BadUserAccessDenied, "anonymous session")
        if not event_known:
            raise MethodRefused(S.BadEventIdUnknown)
        self.calls.append((caller.name, action, key, comment, shelving_ms))
        assert self.server is not None
        state = self.server.conditions.get(key)
        assert state is not None
        if action == "Acknowledge":
            await self.server.update_condition(replace(state, acked=True, comment=comment, client_user=caller.name))
        elif action == "OneShotShelve":
            await self.server.update_condition(replace(state, shelving="one_shot"))


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def event_notification(self, event: Any) -> None:
        self.queue.put_nowait(event)

    async def next(self, timeout: float = 5.0) -> Any:
        return await asyncio.wait_for(self.queue.get(), timeout)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[OpcUaServer, Actions]]:
    actions = Actions()
    config = OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True, application_uri="urn:test:scada")
    srv = OpcUaServer(config, pki_dir=tmp_path_factory.mktemp("conditions") / "pki", hooks=replace(Recorder().hooks(), conditions=actions))
    await srv.start()
    actions.server = srv
    try:
        await srv.sync(small_site(), lambda _tag: None)
        yield srv, actions
    finally:
        await srv.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def cserver(module_server: tuple[OpcUaServer, Actions]) -> tuple[OpcUaServer, Actions]:
    server, actions = module_server
    for state in server.conditions.retained:  # what an earlier test left standing ends, unseen
        await server.update_condition(replace(state, retain=False), emit=False)
    actions.calls.clear()
    return server, actions


async def subscribe(client: Client, node: ua.NodeId, types: list[int]) -> Events:
    events = Events()
    sub = await client.create_subscription(50, events)
    await sub.subscribe_events(client.get_node(node), [client.get_node(ua.NodeId(t)) for t in types])
    return events


async def test_condition_events_reach_server_and_the_folders_above_the_source(cserver: tuple[OpcUaServer, Actions]) -> None:
    server, _ = cserver
    ns = server.ns
    async with Client(server.url) as client:
        # the folders are notifiers under Server
        site = client.get_node(ua.NodeId("site", ns))
        assert (await site.read_attribute(ua.AttributeIds.EventNotifier)).Value.Value == 1
        notified = await client.get_node(ua.NodeId(ua.ObjectIds.Server)).get_referenced_nodes(ua.ObjectIds.HasNotifier)
        assert ua.NodeId("site", ns) in [n.nodeid for n in notified]
        # a where clause OfType OffNormalAlarmType takes its subtypes too
        at_server = await subscribe(client, ua.NodeId(ua.ObjectIds.Server), [ua.ObjectIds.OffNormalAlarmType])
        at_floor = await subscribe(client, ua.NodeId("floor:B1-F1", ns), [ua.ObjectIds.OffNormalAlarmType, ua.ObjectIds.ExclusiveLevelAlarmType])
        elsewhere = await subscribe(client, ua.NodeId("floor:B1-F2", ns), [ua.ObjectIds.AlarmConditionType])
        await server.update_condition(comm_loss())
        for events in (at_server, at_floor):
            event = await events.next()
            assert event.EventType == ua.NodeId(ua.ObjectIds.InstrumentDiagnosticAlarmType)
            assert event.NodeId == ua.NodeId(f"condition:{KEY}", ns)  # the ConditionId
            assert (event.SourceNode, event.SourceName) == (ua.NodeId("meter:E-B1-R101", ns), "E-B1-R101")
            assert (event.Severity, event.Message.Text, event.ConditionName) == (500, "Communication lost: meter E-B1-R101", "comm_loss")
            assert getattr(event, "ActiveState/Id") is True and getattr(event, "AckedState/Id") is False
            assert event.ActiveState.Text == "Active" and event.Retain is True
            assert getattr(event, "ShelvingState/CurrentState").Text == "Unshelved"
            assert event.InputNode == ua.NodeId("E-B1-R101.comm_ok", ns)
            assert event.ConditionClassId == ua.NodeId(ua.ObjectIds.MaintenanceConditionClassType)
        with pytest.raises(TimeoutError):
            await elsewhere.next(timeout=0.5)
        # a limit alarm of a room: its limit and limit state
        await server.update_condition(ConditionState(
            key="balance_low:room:B1-R101", kind=ConditionKind.EXCLUSIVE_LEVEL, condition_class=ConditionClass.PROCESS,
            name="balance_low", source="room:B1-R101", source_name="B1-R101", message="Balance low: room R101", severity=250,
            time=T0, active=True, active_time=T0, acked=False, confirmed=False, retain=True, limit_state="Low", limits={"Low": 5.0},
        ))
        event = await at_floor.next()
        assert event.EventType == ua.NodeId(ua.ObjectIds.ExclusiveLevelAlarmType)
        assert getattr(event, "LimitState/CurrentState").Text == "Low" and event.LowLimit == 5.0
        with pytest.raises(TimeoutError):
            await at_server.next(timeout=0.3)  # not an OffNormalAlarmType


async def test_methods_check_caller_event_and_arguments(cserver: tuple[OpcUaServer, Actions]) -> None:
    server, actions = cserver
    ns = server.ns
    await server.update_condition(comm_loss())
    event_id = server.conditions.last_event_id(KEY)
    assert event_id is not None
    condition = ua.NodeId(f"condition:{KEY}", ns)
    ack = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)

    async def call(client: Client, obj: ua.NodeId, method: int | ua.NodeId, *args: ua.Variant) -> int:
        request = ua.CallMethodRequest(ObjectId=obj, MethodId=method if isinstance(method, ua.NodeId) else ua.NodeId(method), InputArguments=list(args))
        [result] = await client.uaclient.call([request])
        return int(result.StatusCode.value)

    eid = ua.Variant(event_id, ua.VariantType.ByteString)
    note = ua.Variant(ua.LocalizedText("crew on the way"), ua.VariantType.LocalizedText)
    async with Client(server.url) as anonymous:
        assert await call(anonymous, condition, ack, eid, note) == S.BadUserAccessDenied
    client = Client(server.url)
    client.set_user("alice")
    client.set_password("alice-password")
    async with client:
        events = await subscribe(client, ua.NodeId(ua.ObjectIds.Server), [ua.ObjectIds.AlarmConditionType])
        wrong = ua.Variant(b"not-an-event", ua.VariantType.ByteString)
        assert await call(client, condition, ack, wrong, note) == S.BadEventIdUnknown
        assert await call(client, condition, ack, eid) == S.BadArgumentsMissing
        assert await call(client, condition, ack, eid, ua.Variant("text", ua.VariantType.String)) == S.BadInvalidArgument
        assert await call(client, ua.NodeId("condition:nope:meter:X", ns), ack, eid, note) == S.BadNodeIdUnknown
        assert await call(client, ua.NodeId("meter:E-B1-R101", ns), ack, eid, note) == S.BadMethodInvalid
        assert await call(client, condition, ack, eid, note) == S.Good
        assert actions.calls == [("alice", "Acknowledge", KEY, "crew on the way", None)]
        event = await events.next()
        assert getattr(event, "AckedState/Id") is True and event.Comment.Text == "crew on the way" and event.ClientUserId == "alice"
        # shelving: by the ConditionId or its ShelvingState, the time bounded by MaxTimeShelved
        shelving = ua.NodeId(f"condition:{KEY}/ShelvingState", ns)
        too_long = ua.Variant(7_200_000.0, ua.VariantType.Double)
        assert await call(client, shelving, ua.ObjectIds.AlarmConditionType_ShelvingState_TimedShelve, too_long) == S.BadShelvingTimeOutOfRange
        half_hour = ua.Variant(1_800_000.0, ua.VariantType.Double)
        assert await call(client, condition, ua.ObjectIds.ShelvedStateMachineType_TimedShelve, half_hour) == S.Good
        assert await call(client, shelving, ua.ObjectIds.AlarmConditionType_ShelvingState_OneShotShelve) == S.Good
        event = await events.next()
        assert getattr(event, "ShelvingState/CurrentState").Text == "One Shot Shelved" and event.SuppressedOrShelved is True
        assert [c[1:] for c in actions.calls[1:]] == [("TimedShelve", KEY, "", 1_800_000.0), ("OneShotShelve", KEY, "", None)]
        assert await call(client, condition, ua.ObjectIds.ConditionType_Disable) == S.BadNotSupported


async def test_condition_refresh_resends_the_retained_conditions(cserver: tuple[OpcUaServer, Actions]) -> None:
    server, _ = cserver
    await server.update_condition(comm_loss())
    await server.update_condition(comm_loss(key="relay_fault:meter:E-B1-R101", name="relay_fault"))
    await server.update_condition(comm_loss(key="relay_fault:meter:E-B1-R101", name="relay_fault", retain=False, active=False))
    async with Client(server.url) as client:
        events = Events()
        sub = await client.create_subscription(50, events)
        await sub.subscribe_events(client.get_node(ua.NodeId(ua.ObjectIds.Server)), [client.get_node(ua.NodeId(ua.ObjectIds.BaseEventType))])
        types = client.get_node(ua.NodeId(ua.ObjectIds.ConditionType))
        await types.call_method(ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh), ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
        got = [await events.next() for _ in range(3)]
        assert [e.EventType for e in got] == [
            ua.NodeId(ua.ObjectIds.RefreshStartEventType), ua.NodeId(ua.ObjectIds.InstrumentDiagnosticAlarmType),
            ua.NodeId(ua.ObjectIds.RefreshEndEventType),
        ]
        assert got[1].EventId == server.conditions.last_event_id(KEY)  # the condition's last event, resent
        with pytest.raises(ua.uaerrors.BadSubscriptionIdInvalid):
            await types.call_method(ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh), ua.Variant(999_999, ua.VariantType.UInt32))
    assert [s.key for s in server.conditions.retained] == [KEY]


async def test_where_clause_of_type_matches_supertypes(cserver: tuple[OpcUaServer, Actions]) -> None:
    """A client's ``OfType`` where clause names a supertype (``AlarmConditionType``); asyncua's
    evaluator compares for equality, so the event's type must equal its supertypes too."""
    import logging  # noqa: PLC0415 - the evaluator's logger, only here

    from asyncua.server.monitored_item_service import WhereClauseEvaluator  # noqa: PLC0415 - asyncua's own evaluator

    server, _ = cserver
    await server.update_condition(comm_loss())
    event = server.conditions._conditions[KEY].event

    def of_type(type_id: int) -> bool:
        element = ua.ContentFilterElement(FilterOperator=ua.FilterOperator.OfType,
                                          FilterOperands=[ua.LiteralOperand(Value=ua.Variant(ua.NodeId(type_id)))])
        evaluator = WhereClauseEvaluator(logging.getLogger("test"), server.asyncua.iserver.aspace, ua.ContentFilter(Elements=[element]))
        return evaluator.eval(event)

    assert of_type(ua.ObjectIds.InstrumentDiagnosticAlarmType) and of_type(ua.ObjectIds.OffNormalAlarmType)
    assert of_type(ua.ObjectIds.AlarmConditionType) and of_type(ua.ObjectIds.BaseEventType)
    assert not of_type(ua.ObjectIds.ExclusiveLevelAlarmType) and not of_type(ua.ObjectIds.SystemDiagnosticAlarmType)
