"""Every alarm class through the real class → condition mapping, seen by an asyncua client: the
alarm engine raised from its source tags (a real TagDB and database), its events fed by
:class:`scada.opcua.alarms.AlarmConditions` into a real OPC UA server built from the site's
registry (``site_spec``), received at an event subscription on ``Server``. Each class's
condition type, condition class, SourceNode/SourceName, InputNode and limit (``comm_loss`` runs
end to end with the simulator and node-opcua in tests/scada/test_opcua_alarms.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from protocols.opcua import Caller, MethodRefused, OpcUaConfig, OpcUaServer, ServerHooks
from scada.alarms.engine import AlarmEngine
from scada.db import Database
from scada.opcua.alarms import AlarmConditions
from scada.opcua.component import site_spec
from scada.users.audit import AuditLog
from scada.users.auth import Permission, UserInfo
from tags import DataType, TagDB, TagMeta

from .site import MAINT, OPERATOR, build_site, engine_for, register_condition_tags, site_toml

T = ua.ObjectIds  # the standard types and objects
SERVER = ua.NodeId(T.Server)


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def event_notification(self, event: Any) -> None:
        self.queue.put_nowait(event)

    async def where(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The first event that satisfies ``predicate`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.queue.get()
                if predicate(event):
                    return event


async def _refuse(caller: Caller, permission: Permission, action: str, target_type: str, target_id: str, args: dict[str, Any]) -> UserInfo:
    raise MethodRefused(ua.StatusCodes.BadUserAccessDenied, "no OPC UA user acts in this test")


async def _nothing(*_: Any) -> Any:
    return None


@contextlib.asynccontextmanager
async def served(db: Database, tmp_path: Path, engine: AlarmEngine, tagdb: TagDB, assets: Any) -> Any:
    conditions = AlarmConditions(engine, assets, AuditLog(db), _refuse)
    config = OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True, application_uri="urn:test:scada")
    server = OpcUaServer(config, pki_dir=tmp_path / "pki", hooks=ServerHooks(_nothing, _nothing, _nothing, _nothing, conditions=conditions))
    await server.start()
    feed: asyncio.Task[None] | None = None
    try:
        await server.sync(await site_spec(assets.snapshot, tagdb, currency="CNY", site_name="T"), tagdb.get)
        feed = asyncio.create_task(conditions.run(server))
        async with Client(server.url) as client:
            events = Events()
            sub = await client.create_subscription(50, events)
            await sub.subscribe_events(client.get_node(SERVER), [client.get_node(ua.NodeId(T.AlarmConditionType)),
                                                                 client.get_node(ua.NodeId(T.ExclusiveLevelAlarmType))])
            yield server, events
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        await server.stop()


# tag written, value, the condition's key, its type, class, source node (None: Server), input tag, limit
CASES: list[tuple[str, Any, str, int, int, str | None, str | None, tuple[str, float] | None]] = [
    ("E-R001.relay_fault", True, "relay_fault:meter:E-R001", T.InstrumentDiagnosticAlarmType, T.MaintenanceConditionClassType,
     "meter:E-R001", "E-R001.relay_fault", None),
    ("link:gw-1.comm_ok", False, "link_down:link:gw-1", T.SystemDiagnosticAlarmType, T.MaintenanceConditionClassType,
     "link:gw-1", "link:gw-1.comm_ok", None),
    ("E-R001.tamper", True, "tamper:meter:E-R001", T.OffNormalAlarmType, T.MaintenanceConditionClassType, "meter:E-R001",
     "E-R001.tamper", None),
    ("E-R001.review_hold", True, "review_hold:meter:E-R001", T.OffNormalAlarmType, T.ProcessConditionClassType, "meter:E-R001",
     "E-R001.review_hold", None),
    ("room:R001.alarm_level", 1, "balance_low:room:R001", T.ExclusiveLevelAlarmType, T.ProcessConditionClassType,
     "room:R001", "room:R001.balance", None),
    ("room:R001.alarm_level", 2, "balance_very_low:room:R001", T.ExclusiveLevelAlarmType, T.ProcessConditionClassType,
     "room:R001", "room:R001.balance", None),
    ("room:R001.alarm_level", 3, "balance_exhausted:room:R001", T.ExclusiveLevelAlarmType, T.ProcessConditionClassType,
     "room:R001", "room:R001.balance", None),
    ("E-R001.power", 25.0, "over_power:meter:E-R001", T.ExclusiveLevelAlarmType, T.ProcessConditionClassType,
     "meter:E-R001", "E-R001.power", ("HighLimit", 10.0)),  # max_power_kw 10 × limit 1.0
    ("system:historian.buffer_fill", 0.95, "historian_buffer:system:historian", T.ExclusiveLevelAlarmType, T.SystemConditionClassType,
     None, None, ("HighLimit", 0.8)),
    ("E-R001.loss_pct", 25.0, "loss_high:meter:E-R001", T.ExclusiveLevelAlarmType, T.ProcessConditionClassType,
     "meter:E-R001", "E-R001.loss_pct", ("HighLimit", 10.0)),
]
LIMIT_STATES = {"balance_low": "Low", "balance_very_low": "LowLow", "balance_exhausted": "LowLow", "over_power": "High",
                "historian_buffer": "High", "loss_high": "High"}


async def test_each_alarm_class_is_a_condition_of_its_type_at_its_source(db: Database, tmp_path: Path) -> None:
    assets = await build_site(db, site_toml(1))
    tagdb = TagDB()
    register_condition_tags(tagdb, assets)
    tagdb.register(TagMeta("E-R001.loss_pct", DataType.FLOAT, unit="%", meter_id="E-R001", point="loss_pct"))  # as the topology does
    async with engine_for(db, assets, tagdb=tagdb) as engine, served(db, tmp_path, engine, tagdb, assets) as (server, events):
        ns = server.ns
        for tag, value, key, type_id, class_id, source, input_tag, limit in CASES:
            tagdb.write(tag, value)
            await engine.settle()
            event = await events.where(lambda e, key=key: e.NodeId == ua.NodeId(f"condition:{key}", ns) and getattr(e, "ActiveState/Id"))
            name = key.split(":")[0]
            assert event.EventType == ua.NodeId(type_id), key
            assert event.ConditionClassId == ua.NodeId(class_id), key
            assert event.ConditionName == name
            if source is None:  # the system's own alarm: the Server object is its source
                assert (event.SourceNode, event.SourceName) == (SERVER, "Server"), key
            else:
                assert (event.SourceNode, event.SourceName) == (ua.NodeId(source, ns), source.split(":", 1)[1]), key
            assert event.InputNode == (server.site.nodeid(input_tag) if input_tag else ua.NodeId()), key
            if type_id == T.ExclusiveLevelAlarmType:
                assert getattr(event, "LimitState/CurrentState").Text == LIMIT_STATES[name], key
            if limit is not None:
                assert getattr(event, limit[0]) == limit[1], key
            alarm = next(a for a in engine.active() if a.key == key)
            assert event.Severity == alarm.priority.severity and event.Message.Text == alarm.message


async def test_console_actions_reach_the_condition(db: Database, tmp_path: Path) -> None:
    """What the HMI's alarm console does (the engine's acknowledge, confirm, comment, shelve and
    unshelve, as its API handlers call them) reaches OPC UA clients as condition events."""
    assets = await build_site(db, site_toml(1))
    async with engine_for(db, assets) as engine, served(db, tmp_path, engine, engine.tagdb, assets) as (server, events):
        condition = ua.NodeId("condition:relay_fault:meter:E-R001", server.ns)

        def of(predicate: Callable[[Any], bool]) -> Callable[[Any], bool]:
            return lambda e: e.NodeId == condition and predicate(e)

        engine.tagdb.write("E-R001.relay_fault", True)
        await engine.settle()
        await events.where(of(lambda e: getattr(e, "ActiveState/Id") is True))
        [alarm] = engine.active()
        await engine.acknowledge(alarm.id, OPERATOR, "seen")
        acked = await events.where(of(lambda e: getattr(e, "AckedState/Id") is True))
        assert (acked.Comment.Text, acked.ClientUserId) == ("seen", OPERATOR.name)
        await engine.comment(alarm.id, OPERATOR, "relay replaced on Monday")
        commented = await events.where(of(lambda e: e.Comment.Text == "relay replaced on Monday"))
        assert commented.ClientUserId == OPERATOR.name
        await engine.confirm(alarm.id, OPERATOR, "checked")
        await events.where(of(lambda e: getattr(e, "ConfirmedState/Id") is True))
        await engine.shelve(alarm.id, MAINT, "works on the relay", timedelta(minutes=30))
        shelved = await events.where(of(lambda e: getattr(e, "ShelvingState/CurrentState").Text == "Timed Shelved"))
        assert shelved.Retain is True
        await engine.unshelve(alarm.id, MAINT, "done")
        await events.where(of(lambda e: getattr(e, "ShelvingState/CurrentState").Text == "Unshelved"))
