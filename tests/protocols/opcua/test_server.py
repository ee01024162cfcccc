"""The OPC UA server seen by a client on a real socket (asyncua's client here; node-opcua in
tests/scada/test_opcua_interop.py): nodes written straight into the address space browse and
read like any other, values and subscriptions follow pushes, the site follows syncs, methods see
their caller, and what a client may not do is refused."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.common.node import Node

from protocols.opcua import BuildingSpec, FloorSpec, MeterSpec, OpcUaConfig, OpcUaServer, PointSpec, RoomSpec, SiteSpec
from tags import DataType, Quality, QualityReason, TagChange, TagValue, slices

from .conftest import Recorder, meter_points, room_points, small_site

S = ua.StatusCodes
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def change(tag: str, value: Any, quality: Quality = Quality.GOOD, reason: QualityReason = QualityReason.NONE, ts: datetime = T0) -> TagChange:
    return TagChange(tag, None, TagValue(value, quality, ts, ts.replace(microsecond=5), reason))


async def child(client: Client, ns: int, *path: str) -> Node:
    return await client.nodes.objects.get_child([f"{ns}:{p}" for p in path])


class Changes:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, ua.DataValue]] = asyncio.Queue()

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.queue.put_nowait((node.nodeid.Identifier, data.monitored_item.Value))

    async def next(self, timeout: float = 5.0) -> tuple[str, ua.DataValue]:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def test_browse_paths_types_and_attributes(server: OpcUaServer) -> None:
    ns = server.ns
    async with Client(server.url) as client:
        site = await client.nodes.objects.get_child([f"{ns}:Site"])
        assert [(await n.read_browse_name()).Name for n in await site.get_children()] == ["Building 1", "Building 2"]
        energy = await child(client, ns, "Site", "Building 1", "F1", "R101", "E-B1-R101", "EnergyTotal")
        assert energy.nodeid == ua.NodeId("E-B1-R101.energy_total", ns)
        assert await energy.read_data_type() == ua.NodeId(ua.ObjectIds.Double)
        assert (await energy.read_description()).Text == "Active energy, total register"
        assert await energy.read_attribute(ua.AttributeIds.AccessLevel) is not None
        assert (await energy.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value == ua.AccessLevel.CurrentRead.mask
        assert await energy.read_type_definition() == ua.NodeId(ua.ObjectIds.BaseAnalogType)
        eu = await (await energy.get_child(["0:EngineeringUnits"])).read_value()
        assert eu.DisplayName.Text == "kWh" and eu.UnitId == 4937544
        meter = await energy.get_parent()
        assert meter.nodeid == ua.NodeId("meter:E-B1-R101", ns)
        meter_type = client.get_node(await meter.read_type_definition())
        assert (await meter_type.read_browse_name()).Name == "ElectricityMeterType"
        assert (await (await meter_type.get_parent()).read_browse_name()).Name == "MeterType"
        water = await child(client, ns, "Site", "Building 1", "F1", "R101", "W-B1-R101")
        assert (await client.get_node(await water.read_type_definition()).read_browse_name()).Name == "WaterMeterType"
        assert {(await n.read_browse_name()).Name for n in await water.get_children()} >= {"VolumeTotal", "Flow", "ValveOpen", "CommOk", "SetRelay"}
        room = await child(client, ns, "Site", "Building 1", "F1", "R101")
        assert (await client.get_node(await room.read_type_definition()).read_browse_name()).Name == "RoomType"
        names = {(await n.read_browse_name()).Name for n in await room.get_children()}
        assert {"Balance", "SupplyState", "AlarmLevel", "AccountState", "Recharge", "E-B1-R101", "W-B1-R101"} <= names
        balance = await room.get_child([f"{ns}:Balance"])
        assert (await (await balance.get_child(["0:EngineeringUnits"])).read_value()).DisplayName.Text == "CNY"
        assert await (await room.get_child([f"{ns}:AlarmLevel"])).read_data_type() == ua.NodeId(ua.ObjectIds.Int32)
        # a common-area meter hangs under its building; it has no relay, so no SetRelay
        common = await child(client, ns, "Site", "Building 1", "E-B1-COMMON")
        assert "SetRelay" not in {(await n.read_browse_name()).Name for n in await common.get_children()}
        # two rooms named R101 in different buildings: each under its own floor
        other = await child(client, ns, "Site", "Building 2", "F1", "R101", "E-B2-R101", "Power")
        assert other.nodeid == ua.NodeId("E-B2-R101.power", ns)
        # the method's arguments are declared
        set_relay = await meter.get_child([f"{ns}:SetRelay"])
        args = await (await set_relay.get_child(["0:InputArguments"])).read_value()
        assert [a.Name for a in args] == ["Closed"] and args[0].DataType == ua.NodeId(ua.ObjectIds.Boolean)


async def test_types_declare_their_members(server: OpcUaServer) -> None:
    ns = server.ns
    async with Client(server.url) as client:
        types = client.get_node(ua.NodeId(ua.ObjectIds.BaseObjectType))
        meter_type = await types.get_child([f"{ns}:MeterType"])
        assert await meter_type.read_attribute(ua.AttributeIds.IsAbstract) is not None
        electricity = await meter_type.get_child([f"{ns}:ElectricityMeterType"])
        members = {(await n.read_browse_name()).Name for n in await electricity.get_children()}
        assert {"EnergyTotal", "EnergySharp", "EnergyPeak", "EnergyFlat", "EnergyValley", "Power", "Voltage",
                "Current", "PowerFactor", "RelayClosed"} <= members
        room_type = await types.get_child([f"{ns}:RoomType"])
        balance = await room_type.get_child([f"{ns}:Balance"])
        rule = await balance.get_referenced_nodes(refs=ua.ObjectIds.HasModellingRule)
        assert rule and rule[0].nodeid == ua.NodeId(ua.ObjectIds.ModellingRule_Mandatory)


async def test_values_statuses_and_timestamps(server: OpcUaServer) -> None:
    ns = server.ns
    async with Client(server.url) as client:
        power = client.get_node(ua.NodeId("E-B1-R101.power", ns))
        balance = client.get_node(ua.NodeId("room:B1-R101.balance", ns))
        before = await power.read_data_value(raise_on_bad_status=False)
        assert before.StatusCode.value == S.BadWaitingForInitialData
        assert (await balance.read_data_value(raise_on_bad_status=False)).StatusCode.value == S.UncertainInitialValue
        await server.push([change("E-B1-R101.power", 1.25), change("room:B1-R101.balance", 88.5), change("E-B1-R101.relay_closed", True)])
        dv = await power.read_data_value()
        assert dv.Value.Value == 1.25 and dv.StatusCode.is_good()
        assert dv.SourceTimestamp == T0.replace(tzinfo=None) or dv.SourceTimestamp == T0
        assert (await balance.read_value()) == 88.5
        assert await client.get_node(ua.NodeId("E-B1-R101.relay_closed", ns)).read_value() is True
        await server.push([change("E-B1-R101.power", 1.25, Quality.BAD, QualityReason.COMM_FAILURE)])
        bad = await power.read_data_value(raise_on_bad_status=False)
        assert bad.StatusCode.value == S.BadCommunicationError and bad.Value.Value is None
        await server.push([change("E-B1-R101.power", 1.25, Quality.UNCERTAIN, QualityReason.STALE)])
        stale = await power.read_data_value(raise_on_bad_status=False)
        assert stale.StatusCode.value == S.UncertainLastUsableValue and stale.Value.Value == 1.25
        # an integer from a producer is published with the node's type
        await server.push([change("room:B1-R101.alarm_level", 2)])
        level = await client.get_node(ua.NodeId("room:B1-R101.alarm_level", ns)).read_data_value()
        assert level.Value.VariantType is ua.VariantType.Int32 and level.Value.Value == 2
    # tags without a node are handed back
    unknown = await server.push([change("E-NOPE.power", 1.0)])
    assert [c.name for c in unknown] == ["E-NOPE.power"]


async def test_subscription_sees_changes_and_removal(server: OpcUaServer) -> None:
    ns = server.ns
    handler = Changes()
    async with Client(server.url) as client:
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change([client.get_node(ua.NodeId("E-B1-R102.power", ns))])
        tag, first = await handler.next()
        assert first.StatusCode.value == S.BadWaitingForInitialData
        await server.push([change("E-B1-R102.power", 3.5)])
        tag, dv = await handler.next()
        assert tag == "E-B1-R102.power" and dv.Value.Value == 3.5 and dv.SourceTimestamp is not None
        # the meter is removed from the site: the monitored item hears so, then nothing breaks
        site = small_site()
        del site.meters["E-B1-R102"]
        result = await server.sync(site, lambda _t: None)
        assert result.meters_removed == ("E-B1-R102",) and result.removed > 10
        tag, gone = await handler.next()
        assert gone.StatusCode.value == S.BadNodeIdUnknown
        room = client.get_node(ua.NodeId("room:B1-R102", ns))
        assert "E-B1-R102" not in {(await n.read_browse_name()).Name for n in await room.get_children()}
        assert (await client.get_node(ua.NodeId("E-B1-R102.power", ns)).read_data_value(raise_on_bad_status=False)).StatusCode.value == S.BadNodeIdUnknown
        await sub.delete()


async def test_sync_adds_moves_and_removes(server: OpcUaServer) -> None:
    ns = server.ns
    site = small_site()
    site.meters["E-NEW"] = MeterSpec("E-NEW", "electricity", "B1", "B1-R201", points=meter_points("E-NEW", "electricity"), switchable=True)
    site.meters["E-B1-R101"] = replace(site.meters["E-B1-R101"], room_id="B1-R102")  # moved to another room
    del site.meters["W-B1-R101"]
    result = await server.sync(site, lambda tag: TagValue(7.0, Quality.GOOD, T0, T0) if tag == "E-NEW.power" else None)
    assert set(result.meters_added) == {"E-NEW", "E-B1-R101"}
    assert set(result.meters_removed) == {"E-B1-R101", "W-B1-R101"}
    assert (await server.sync(site, lambda _t: None)) .added == 0  # nothing left to do
    async with Client(server.url) as client:
        new_power = await child(client, ns, "Site", "Building 1", "F2", "R201", "E-NEW", "Power")
        assert await new_power.read_value() == 7.0  # the value at build time
        moved = await child(client, ns, "Site", "Building 1", "F1", "R102", "E-B1-R101", "EnergyTotal")
        assert moved.nodeid == ua.NodeId("E-B1-R101.energy_total", ns)
        r101 = await child(client, ns, "Site", "Building 1", "F1", "R101")
        assert {(await n.read_browse_name()).Name for n in await r101.get_children()}.isdisjoint({"E-B1-R101", "W-B1-R101"})
    # a point registered later is added under its meter
    added = server.add_point("meter:E-NEW", PointSpec("E-NEW.frequency", "frequency", DataType.FLOAT, "Hz", "Frequency"), lambda _t: None)
    assert added == 2  # the variable and its EngineeringUnits
    await server.push([change("E-NEW.frequency", 50.0)])
    async with Client(server.url) as client:
        assert await (await child(client, ns, "Site", "Building 1", "F2", "R201", "E-NEW", "Frequency")).read_value() == 50.0
    # a whole building goes
    del site.buildings["B2"], site.floors["B2-F1"], site.rooms["B2-R101"], site.meters["E-B2-R101"]
    result = await server.sync(site, lambda _t: None)
    assert result.meters_removed == ("E-B2-R101",)
    assert not server.site.has_tag("E-B2-R101.power") and not server.site.has_object("room:B2-R101")


async def test_methods_know_their_caller(server: OpcUaServer, recorder: Recorder) -> None:
    ns = server.ns
    meter = ua.NodeId("meter:E-B1-R101", ns)
    method = ua.NodeId("meter:E-B1-R101/SetRelay", ns)
    client = Client(server.url)
    client.set_user("alice")
    client.set_password("alice-password")
    async with client:
        node = client.get_node(meter)
        assert await node.call_method(method, ua.Variant(False, ua.VariantType.Boolean)) == "confirmed"
        assert recorder.calls[-1] == ("set_relay", ("alice", "E-B1-R101", False, "None"))
        # the declaration on the type works too
        assert await node.call_method(server.types.set_relay, ua.Variant(True, ua.VariantType.Boolean)) == "confirmed"
        with pytest.raises(ua.uaerrors.BadInvalidArgument):
            await node.call_method(method, ua.Variant(1.0, ua.VariantType.Double))
        with pytest.raises(ua.uaerrors.BadArgumentsMissing):
            await node.call_method(method)
        room = client.get_node(ua.NodeId("room:B1-R101", ns))
        recharge = ua.NodeId("room:B1-R101/Recharge", ns)
        assert await room.call_method(recharge, ua.Variant(20.5, ua.VariantType.Double), "PAY-1") == 120.5
        assert recorder.calls[-1] == ("recharge", ("alice", "B1-R101", 20.5, "PAY-1"))
        with pytest.raises(ua.uaerrors.BadInvalidArgument):
            await room.call_method(recharge, ua.Variant(math.nan, ua.VariantType.Double), "PAY-2")
        with pytest.raises(ua.uaerrors.BadMethodInvalid):
            await room.call_method(method, ua.Variant(True, ua.VariantType.Boolean))  # SetRelay on a room
        recorder.fail_with = RuntimeError("boom")
        with pytest.raises(ua.uaerrors.BadInternalError):
            await node.call_method(method, ua.Variant(True, ua.VariantType.Boolean))
    async with Client(server.url) as anonymous:
        with pytest.raises(ua.uaerrors.BadInternalError):
            await anonymous.get_node(meter).call_method(method, ua.Variant(True, ua.VariantType.Boolean))
        recorder.fail_with = None
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await anonymous.get_node(meter).call_method(method, ua.Variant(True, ua.VariantType.Boolean))
        assert recorder.calls[-1] == ("set_relay", ("anonymous", "E-B1-R101", True, "None"))


async def test_logins_are_checked_and_writes_refused(server: OpcUaServer, recorder: Recorder) -> None:
    client = Client(server.url)
    client.set_user("alice")
    client.set_password("wrong")
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await client.connect()
    await client.disconnect()
    assert ("login", "alice") in recorder.calls
    client = Client(server.url)
    client.set_user("bob")
    client.set_password("bob-password")
    async with client:
        node = client.get_node(ua.NodeId("E-B1-R101.power", server.ns))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await node.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.nodes.objects.add_folder(server.ns, "Intruder")
    assert ("refused", ("bob", "Write")) in recorder.calls
    assert ("refused", ("bob", "AddNodes")) in recorder.calls


async def test_endpoints_offer_only_what_is_configured(server: OpcUaServer) -> None:
    async with Client(server.url) as client:
        endpoints = await client.get_endpoints()
    offered = {(e.SecurityPolicyUri.rpartition("#")[2], e.SecurityMode.name) for e in endpoints}
    assert offered == {("None", "None_"), ("Basic256Sha256", "SignAndEncrypt"), ("Basic256Sha256", "Sign")}
    assert all(e.EndpointUrl == server.url for e in endpoints)  # the bound port, not 0
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.Anonymous, ua.UserTokenType.UserName}  # no certificate identities
    for e in endpoints:
        for t in e.UserIdentityTokens:
            if t.TokenType == ua.UserTokenType.UserName and e.SecurityMode != ua.MessageSecurityMode.SignAndEncrypt:
                assert t.SecurityPolicyUri.endswith("Basic256Sha256")  # the password travels encrypted


async def test_anonymous_refused_unless_configured(tmp_path: Any, recorder: Recorder) -> None:
    from protocols.opcua import OpcUaConfig

    srv = OpcUaServer(OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"]), pki_dir=tmp_path / "pki", hooks=recorder.hooks())
    await srv.start()
    try:
        client = Client(srv.url)
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
            await client.connect()
        await client.disconnect()
    finally:
        await srv.stop()


async def test_stopping_with_subscribed_clients_leaves_nothing_running(server: OpcUaServer) -> None:
    handler = Changes()
    client = Client(server.url)
    await client.connect()
    sub = await client.create_subscription(50, handler)
    await sub.subscribe_data_change([client.get_node(ua.NodeId("E-B1-R101.voltage", server.ns))])
    await handler.next()
    await server.stop()  # the fixture's stop is then a no-op; conftest fails the test on leaked tasks
    await client.disconnect()


async def test_a_stop_ends_the_server_clock_without_waiting_for_its_next_tick(server: OpcUaServer) -> None:
    """asyncua's own stop lets its once-a-second CurrentTime task finish its sleep: up to a
    second of every stop of the server (and of every test with one)."""
    clock = server.asyncua.iserver.time_task
    assert clock is not None and not clock.done()
    await server.stop()
    assert clock.cancelled()


async def test_written_nodes_answer_every_attribute_like_api_built_ones(server: OpcUaServer) -> None:
    """Nodes written straight into the address space answer the same attributes, with the same
    types, as nodes asyncua's own API builds."""
    ns = server.ns
    asy = server.asyncua
    folder = await asy.nodes.objects.add_folder(ua.NodeId("ref-folder", ns), "RefFolder")
    ref_obj = await folder.add_object(ua.NodeId("ref-object", ns), "RefObject")
    ref_var = await ref_obj.add_variable(ua.NodeId("ref-var", ns), "RefVar", 1.0, varianttype=ua.VariantType.Double)
    ref_prop = await ref_var.add_property(ua.NodeId("ref-prop", ns), "RefProp", ua.EUInformation())
    ref_method = await ref_obj.add_method(ua.NodeId("ref-method", ns), "RefMethod", lambda *_a: [], [ua.VariantType.Boolean], [ua.VariantType.String])
    pairs = [
        (ref_obj.nodeid, ua.NodeId("meter:E-B1-R101", ns)),
        (ref_var.nodeid, ua.NodeId("E-B1-R101.energy_total", ns)),
        (ref_prop.nodeid, ua.NodeId("E-B1-R101.energy_total/EngineeringUnits", ns)),
        (ref_method.nodeid, ua.NodeId("meter:E-B1-R101/SetRelay", ns)),
        (folder.nodeid, ua.NodeId("building:B1", ns)),
    ]
    async with Client(server.url) as client:
        for reference, ours in pairs:
            for attr in ua.AttributeIds:
                want = await client.get_node(reference).read_attribute(attr, raise_on_bad_status=False)
                got = await client.get_node(ours).read_attribute(attr, raise_on_bad_status=False)
                label = f"{ours.Identifier} {attr.name}"
                if attr in (ua.AttributeIds.ArrayDimensions, ua.AttributeIds.Value):
                    continue  # scalars: asyncua stores an empty array we leave out; values differ
                assert got.StatusCode.is_good() == want.StatusCode.is_good(), label
                if want.StatusCode.is_good() and want.Value is not None and got.Value is not None:
                    assert got.Value.VariantType == want.Value.VariantType, label
            assert (await client.get_node(ours).read_attribute(ua.AttributeIds.NodeId)).Value.Value == ours
        # browsing up from a written node reaches the Objects folder through inverse references
        node = client.get_node(ua.NodeId("E-B1-R101.energy_total", ns))
        path = await node.get_path(as_string=True)
        assert path == ["0:Root", "0:Objects", f"{ns}:Site", f"{ns}:Building 1", f"{ns}:F1", f"{ns}:R101", f"{ns}:E-B1-R101", f"{ns}:EnergyTotal"]


async def test_a_taken_port_fails_the_start_cleanly(server: OpcUaServer, tmp_path: Any, recorder: Recorder) -> None:
    from protocols.opcua import OpcUaConfig

    second = OpcUaServer(OpcUaConfig(port=server.port), pki_dir=tmp_path / "pki2", hooks=recorder.hooks())
    with pytest.raises(OSError):
        await second.start()
    await second.stop()  # nothing to stop; conftest checks that nothing was left running


async def test_sessions_of_a_principal_end_at_once(server: OpcUaServer) -> None:
    import asyncio
    import contextlib

    node = ua.NodeId("E-B1-R101.power", server.ns)
    clients = {}
    for user in ("alice", "bob"):
        client = Client(server.url)
        client.set_user(user)
        client.set_password(f"{user}-password")
        await client.connect()
        clients[user] = client
    anonymous = Client(server.url)
    await anonymous.connect()
    try:
        assert sorted(p["user"] for p in server.principals()) == ["alice", "bob"]
        assert await server.end_sessions(lambda p: p["user"] == "alice") == 1
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError, OSError)):
            await asyncio.wait_for(clients["alice"].get_node(node).read_browse_name(), 5)
        assert [p["user"] for p in server.principals()] == ["bob"]
        assert (await clients["bob"].get_node(node).read_browse_name()).Name == "Power"  # the others go on
        await anonymous.get_node(node).read_browse_name()
        assert await server.end_sessions(lambda p: p["user"] == "alice") == 0
    finally:
        for client in (*clients.values(), anonymous):
            with contextlib.suppress(Exception):
                await client.disconnect()


async def test_a_large_build_returns_to_the_event_loop_between_slices_and_is_complete(
    server: OpcUaServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every step its own slice: the build must give the loop back after each object, and other
    # tasks (billing with a transaction open, say) run in between
    monkeypatch.setattr(slices, "SLICE_S", 0.0)
    site = small_site()
    for i in range(300):
        mid = f"E-BULK-{i}"
        site.meters[mid] = MeterSpec(mid, "electricity", "B1", "B1-R201", points=meter_points(mid, "electricity"))
    turns = 0
    building = True

    async def other_task() -> None:
        nonlocal turns
        while building:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    result = await server.sync(site, lambda tag: TagValue(1.5, Quality.GOOD, T0, T0) if tag.endswith(".power") else None)
    building = False
    await other
    assert len(result.meters_added) == 300
    assert result.slices > 300 and turns >= 300
    for m in site.meters.values():
        assert all(server.site.has_tag(p.tag) for p in m.points)
    async with Client(server.url) as client:
        last = await child(client, server.ns, "Site", "Building 1", "F2", "R201", "E-BULK-299", "Power")
        assert await last.read_value() == 1.5


async def test_points_share_their_texts_after_many_objects(tmp_path: Any, recorder: Recorder) -> None:
    """The browse names and descriptions of points are one object for every meter, however many
    rooms came before them in a build: objects' own texts (their ids in them) used to fill the
    bounded caches, and every point built after some 10,000 rooms got texts of its own (~280 MB
    more at 50,000 meters)."""
    site = SiteSpec("Bulk")
    site.buildings["B1"] = BuildingSpec("B1", "Building 1")
    site.floors["F1"] = FloorSpec("F1", "B1", "F1", 1)
    for i in range(10_050):
        rid = f"BULK-{i}"
        site.rooms[rid] = RoomSpec(rid, "F1", f"Bulk {i}", points=room_points(rid))
    for mid in ("E-LATE-1", "E-LATE-2"):
        site.meters[mid] = MeterSpec(mid, "electricity", "B1", "BULK-10049", points=meter_points(mid, "electricity"))
    server = OpcUaServer(
        OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True),
        pki_dir=tmp_path / "pki-bulk", hooks=recorder.hooks(),
    )
    await server.start()
    try:
        await server.sync(site, lambda _tag: None)
        aspace = server.asyncua.iserver.aspace
        one = aspace[ua.NodeId("E-LATE-1.power", server.ns)].attributes
        two = aspace[ua.NodeId("E-LATE-2.power", server.ns)].attributes
        for attr in (ua.AttributeIds.Description, ua.AttributeIds.BrowseName, ua.AttributeIds.DisplayName):
            assert two[attr] is one[attr], attr
        async with Client(server.url) as client:
            last = await child(client, server.ns, "Site", "Building 1", "F1", "Bulk 10049", "E-LATE-2", "Power")
            assert (await last.read_description()).Text == "Active power"
            room = await child(client, server.ns, "Site", "Building 1", "F1", "Bulk 10049")
            assert (await room.read_description()).Text == "Room Bulk 10049 (BULK-10049)"
    finally:
        await server.stop()


async def test_monitored_items_keep_scalar_values_uncopied_and_still_see_every_change(server: OpcUaServer) -> None:
    """asyncua's monitored items deep-copied every value they were given (``monitoring``): a
    scalar value is now kept as it is. What clients see does not change: a repeated value is not
    notified, a new one is, a deadband still holds back small steps, a status change is
    notified; a structure (method arguments) is still copied."""
    ns = server.ns
    power, voltage = "E-B1-R101.power", "E-B1-R101.voltage"
    t1 = T0.replace(second=1)
    await server.push([change(power, 1.0), change(voltage, 230.0)])
    plain, banded = Changes(), Changes()
    async with Client(server.url) as client:
        sub = await client.create_subscription(20, plain)
        await sub.subscribe_data_change([client.get_node(ua.NodeId(t, ns)) for t in (power, voltage)])
        await sub.subscribe_data_change([client.get_node(ua.NodeId("meter:E-B1-R101/SetRelay/InputArguments", ns))])
        banded_sub = await client.create_subscription(20, banded)
        await banded_sub.deadband_monitor(client.get_node(ua.NodeId(power, ns)), 0.5)
        initial = {(await plain.next())[0] for _ in range(3)}
        assert initial == {power, voltage, "meter:E-B1-R101/SetRelay/InputArguments"}
        assert (await banded.next())[1].Value.Value == 1.0
        await server.push([change(power, 1.0, ts=t1)])  # the same value again: no notification
        await server.push([change(power, 1.2, ts=t1)])  # within the deadband
        await server.push([change(power, 2.0, ts=t1)])
        await server.push([change(voltage, 230.0, Quality.BAD, QualityReason.COMM_FAILURE, ts=t1)])
        assert [(await plain.next())[1].Value.Value for _ in range(2)] == [1.2, 2.0]
        tag, bad = await plain.next()
        assert tag == voltage and bad.StatusCode.is_bad()
        assert (await banded.next())[1].Value.Value == 2.0
        assert plain.queue.empty() and banded.queue.empty()  # nothing for 1.0 again, nor 1.2 banded
        kept = {
            mdata.read_value_id.NodeId.Identifier: mdata.mvalue.current_dvalue
            for s in server.asyncua.iserver.subscription_service.subscriptions.values()
            for mdata in s.monitored_item_srv._monitored_items.values()
            if mdata.read_value_id.NodeId.Identifier == power or "InputArguments" in str(mdata.read_value_id.NodeId.Identifier)
        }
        assert kept[power] is server.site.value(power)
        arguments = server.asyncua.iserver.aspace.read_attribute_value(
            ua.NodeId("meter:E-B1-R101/SetRelay/InputArguments", ns), ua.AttributeIds.Value
        )
        assert kept["meter:E-B1-R101/SetRelay/InputArguments"] is not arguments
        assert kept["meter:E-B1-R101/SetRelay/InputArguments"] == arguments
