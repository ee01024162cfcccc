"""Rooms' and meters' variables and methods wait for their object's first touch: a sync builds the
objects only, and whatever a client does to a waiting node (read it by id, monitor it, call a
method, browse the object) builds that one object's children first; pushes to a waiting variable
are its starting value; a waiting object goes without being built. The whole browse is the
eager build's (``test_address_space_snapshot.py``, both ways)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, ua

from protocols.opcua import MeterSpec, OpcUaServer, PointSpec
from tags import DataType, Quality, TagChange, TagValue

from .conftest import meter_points, small_site
from .test_server import Changes, child

S = ua.StatusCodes
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def change(tag: str, value: Any) -> TagChange:
    return TagChange(tag, None, TagValue(value, Quality.GOOD, T0, T0))


def built(server: OpcUaServer, ident: str) -> bool:
    """Whether the node is in the address space's dictionary itself (no lookup that builds)."""
    return dict.__contains__(server.asyncua.iserver.aspace._nodes, ua.NodeId(ident, server.ns))


async def test_a_sync_builds_the_objects_and_a_read_by_id_builds_one_meter(server: OpcUaServer) -> None:
    site = server.site
    assert site.waiting("meter:E-B1-R101") and site.waiting("room:B1-R101")
    assert built(server, "meter:E-B1-R101") and not built(server, "E-B1-R101.power")
    assert not built(server, "meter:E-B1-R101/SetRelay")
    assert site.has_tag("E-B1-R101.power") and "E-B1-R101.power" in site.tags
    async with Client(server.url) as client:
        value = await client.get_node(ua.NodeId("E-B1-R101.power", server.ns)).read_data_value(raise_on_bad_status=False)
        assert value.StatusCode.value == S.BadWaitingForInitialData
    assert not site.waiting("meter:E-B1-R101") and built(server, "E-B1-R101.power") and built(server, "meter:E-B1-R101/SetRelay")
    assert built(server, "E-B1-R101.power/EngineeringUnits")
    # only that meter: its room and its neighbours still wait
    assert site.waiting("room:B1-R101") and site.waiting("meter:W-B1-R101") and site.waiting("meter:E-B1-R102")
    assert site.built_late == 1


async def test_a_push_to_a_waiting_variable_is_its_first_value(server: OpcUaServer) -> None:
    assert await server.push([change("E-B1-R102.power", 4.5), change("E-NOPE.power", 1.0)]) == [change("E-NOPE.power", 1.0)]
    assert server.site.waiting("meter:E-B1-R102")
    async with Client(server.url) as client:
        dv = await client.get_node(ua.NodeId("E-B1-R102.power", server.ns)).read_data_value()
        assert dv.Value.Value == 4.5 and dv.SourceTimestamp == T0
    assert server.site.value("E-B1-R102.power") is not None


async def test_a_monitored_item_on_a_waiting_variable_hears_its_changes(server: OpcUaServer) -> None:
    handler = Changes()
    async with Client(server.url) as client:
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change([client.get_node(ua.NodeId("E-B1-R201.power", server.ns))])
        _tag, first = await handler.next()
        assert first.StatusCode.value == S.BadWaitingForInitialData
        await server.push([change("E-B1-R201.power", 3.5)])
        tag, dv = await handler.next()
        assert tag == "E-B1-R201.power" and dv.Value.Value == 3.5
        await sub.delete()


async def test_browsing_a_room_builds_the_room_not_its_meters(server: OpcUaServer) -> None:
    async with Client(server.url) as client:
        room = await child(client, server.ns, "Site", "Building 1", "F1", "R101")
        names = [(await n.read_browse_name()).Name for n in await room.get_children()]
    # the order of an eager build: the method, the room's points, then its meters
    assert names[0] == "Recharge" and names[-2:] == ["E-B1-R101", "W-B1-R101"] and "Balance" in names
    assert not server.site.waiting("room:B1-R101")
    assert server.site.waiting("meter:E-B1-R101") and server.site.waiting("meter:W-B1-R101")


async def test_a_point_added_to_a_waiting_meter_waits_with_it(server: OpcUaServer) -> None:
    value = TagValue(50.0, Quality.GOOD, T0, T0)
    point = PointSpec("E-B2-R101.frequency", "frequency", DataType.FLOAT, "Hz", "Frequency")
    assert server.add_point("meter:E-B2-R101", point, lambda _t: value) == 0
    assert server.site.has_tag("E-B2-R101.frequency") and not built(server, "E-B2-R101.frequency")
    async with Client(server.url) as client:
        frequency = await child(client, server.ns, "Site", "Building 2", "F1", "R101", "E-B2-R101", "Frequency")
        assert await frequency.read_value() == 50.0
    assert not server.site.waiting("meter:E-B2-R101")


async def test_a_waiting_meter_goes_without_being_built(server: OpcUaServer) -> None:
    await server.push([change("E-B1-COMMON.power", 2.0)])
    site = small_site()
    del site.meters["E-B1-COMMON"]
    result = await server.sync(site, lambda _t: None)
    assert result.meters_removed == ("E-B1-COMMON",) and result.removed == 1  # the object: nothing below it was built
    assert server.site.built_late == 0
    assert not server.site.has_tag("E-B1-COMMON.power") and not server.site.has_object("meter:E-B1-COMMON")
    async with Client(server.url) as client:
        gone = await client.get_node(ua.NodeId("E-B1-COMMON.power", server.ns)).read_data_value(raise_on_bad_status=False)
        assert gone.StatusCode.value == S.BadNodeIdUnknown
    # its tags are unknown again, and what was pushed to it is not kept: back in the site, the
    # meter starts from the lookup of its sync
    assert await server.push([change("E-B1-COMMON.power", 3.0)]) == [change("E-B1-COMMON.power", 3.0)]
    await server.sync(small_site(), lambda _t: None)
    assert server.site.waiting("meter:E-B1-COMMON")
    async with Client(server.url) as client:
        back = await client.get_node(ua.NodeId("E-B1-COMMON.power", server.ns)).read_data_value(raise_on_bad_status=False)
        assert back.StatusCode.value == S.BadWaitingForInitialData


async def test_the_value_lookup_builds_like_a_browse(server: OpcUaServer) -> None:
    # SiteNodes.value builds through the node, as a client's touch does: the room's references
    # keep the eager order (its method and points before its meters)
    assert server.site.value("room:B1-R101.balance") is not None
    async with Client(server.url) as client:
        room = client.get_node(ua.NodeId("room:B1-R101", server.ns))
        names = [(await n.read_browse_name()).Name for n in await room.get_children()]
    assert names[0] == "Recharge" and names[-2:] == ["E-B1-R101", "W-B1-R101"]


async def test_a_sync_counts_the_points_it_leaves_waiting(server: OpcUaServer) -> None:
    site = small_site()
    points = meter_points("E-NEW", "electricity")
    site.meters["E-NEW"] = MeterSpec("E-NEW", "electricity", "B1", "B1-R201", points=points, switchable=True)
    result = await server.sync(site, lambda _t: None)
    assert result.meters_added == ("E-NEW",) and result.added == 1 and result.deferred == len(points) and result
    # a point that appears on a waiting meter is a change too, though no node is built for it
    site.meters["E-NEW"] = replace(site.meters["E-NEW"], points=(*points, PointSpec("E-NEW.frequency", "frequency", DataType.FLOAT, "Hz", "")))
    again = await server.sync(site, lambda _t: None)
    assert (again.added, again.removed, again.deferred) == (0, 0, 1) and again
    assert not await server.sync(site, lambda _t: None)
