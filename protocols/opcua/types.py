"""Our ObjectTypes: ``MeterType`` (abstract) with ``ElectricityMeterType`` and ``WaterMeterType``,
``RoomType`` and ``LinkType``. Instances reference them with HasTypeDefinition, so a client finds every meter
by browsing for objects of a type. The types are a handful of nodes, built once with asyncua's
own node API (speed does not matter here; correctness of the type model does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Server, ua
from asyncua.common.node import Node

from tags import DataType

from .catalogue import (
    ELECTRICITY_POINTS,
    LINK_POINTS,
    METER_POINTS,
    ROOM_POINTS,
    ROOM_REQUIRED,
    WATER_POINTS,
    KnownPoint,
)
from .model import browse_name

__all__ = [
    "DATA_TYPES",
    "RECHARGE_INPUTS",
    "RECHARGE_OUTPUTS",
    "SET_RELAY_INPUTS",
    "SET_RELAY_OUTPUTS",
    "TypeIds",
    "define_types",
]

DATA_TYPES: dict[DataType, ua.NodeId] = {
    DataType.BOOL: ua.NodeId(ua.ObjectIds.Boolean),
    DataType.INT: ua.NodeId(ua.ObjectIds.Int32),
    DataType.FLOAT: ua.NodeId(ua.ObjectIds.Double),
    DataType.STRING: ua.NodeId(ua.ObjectIds.String),
}


def _arg(name: str, data_type: DataType, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name, DataType=DATA_TYPES[data_type], ValueRank=-1, ArrayDimensions=[],
        Description=ua.LocalizedText(description),
    )


SET_RELAY_INPUTS = [
    _arg("Closed", DataType.BOOL, "true: close the relay / open the valve (supply on); false: open it (supply off)"),
]
SET_RELAY_OUTPUTS = [
    _arg("Result", DataType.STRING, "confirmed, or why not: failed, denied, superseded (with detail)"),
]
RECHARGE_INPUTS = [
    _arg("Amount", DataType.FLOAT, "Amount to credit, in currency units (no more decimals than the currency has)"),
    _arg("Reference", DataType.STRING, "Payment reference, recorded with the ledger entry; repeating it does not credit twice"),
]
RECHARGE_OUTPUTS = [
    _arg("Balance", DataType.FLOAT, "The room's balance after the recharge, in currency units"),
]


@dataclass(frozen=True, slots=True)
class TypeIds:
    meter: ua.NodeId
    electricity_meter: ua.NodeId
    water_meter: ua.NodeId
    room: ua.NodeId
    set_relay: ua.NodeId  # the method declaration on MeterType
    recharge: ua.NodeId  # the method declaration on RoomType
    link: ua.NodeId = ua.NodeId(ua.ObjectIds.BaseObjectType)

    def meter_type(self, kind: str) -> ua.NodeId:
        return self.water_meter if kind == "water" else self.electricity_meter


async def _declare(node: Node, ns: int, prefix: str, points: dict[str, KnownPoint], mandatory: tuple[str, ...] = ()) -> None:
    for point, known in points.items():
        name = browse_name(point)
        var = await node.add_variable(
            ua.NodeId(f"{prefix}/{name}", ns), ua.QualifiedName(name, ns), None,
            varianttype=None, datatype=DATA_TYPES[known.data_type],
        )
        await var.write_attribute(
            ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(known.description), ua.VariantType.LocalizedText))
        )
        await var.set_modelling_rule(point in mandatory)


async def define_types(
    server: Server,
    ns: int,
    *,
    set_relay: Callable[..., Any],
    recharge: Callable[..., Any],
) -> TypeIds:
    base = server.get_node(ua.NodeId(ua.ObjectIds.BaseObjectType))

    def tid(name: str) -> tuple[ua.NodeId, ua.QualifiedName]:
        return ua.NodeId(f"type:{name}", ns), ua.QualifiedName(name, ns)

    meter = await base.add_object_type(*tid("MeterType"))
    await meter.write_attribute(ua.AttributeIds.IsAbstract, ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
    await _declare(meter, ns, "type:MeterType", METER_POINTS)
    relay = await meter.add_method(
        ua.NodeId("type:MeterType/SetRelay", ns), ua.QualifiedName("SetRelay", ns), set_relay,
        SET_RELAY_INPUTS, SET_RELAY_OUTPUTS,
    )
    await relay.set_modelling_rule(False)

    electricity = await meter.add_object_type(*tid("ElectricityMeterType"))
    await _declare(electricity, ns, "type:ElectricityMeterType", ELECTRICITY_POINTS)
    water = await meter.add_object_type(*tid("WaterMeterType"))
    await _declare(water, ns, "type:WaterMeterType", WATER_POINTS)

    room = await base.add_object_type(*tid("RoomType"))
    await _declare(room, ns, "type:RoomType", ROOM_POINTS, mandatory=ROOM_REQUIRED)
    recharge_node = await room.add_method(
        ua.NodeId("type:RoomType/Recharge", ns), ua.QualifiedName("Recharge", ns), recharge,
        RECHARGE_INPUTS, RECHARGE_OUTPUTS,
    )
    await recharge_node.set_modelling_rule(True)

    link = await base.add_object_type(*tid("LinkType"))
    await _declare(link, ns, "type:LinkType", LINK_POINTS, mandatory=tuple(LINK_POINTS))
    return TypeIds(meter.nodeid, electricity.nodeid, water.nodeid, room.nodeid, relay.nodeid, recharge_node.nodeid, link.nodeid)
