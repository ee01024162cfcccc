"""Sparkplug B: topics, the payload (protobuf), metric values and their data types.

The payload schema is the one the Sparkplug B specification (Eclipse Sparkplug 3.0, chapter 6,
``sparkplug_b.proto``) publishes; we describe the part we use — ``Payload`` (timestamp, metrics,
seq, uuid, body) and ``Payload.Metric`` (name, alias, timestamp, datatype, is_historical,
is_transient, is_null and the scalar values) — as a protobuf descriptor built here, and the
``protobuf`` runtime (its C ``upb`` parser) encodes and decodes it. Parts we do not describe
(metadata, property sets, data sets, templates) are skipped as unknown fields when read.

Topics: ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` with type NBIRTH, NDEATH, NDATA, NCMD,
DBIRTH, DDEATH, DDATA, DCMD; the host application's ``spBv1.0/STATE/<host id>`` (retained JSON
``{"online": bool, "timestamp": ms}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "DataType",
    "Metric",
    "NAMESPACE",
    "Payload",
    "REBIRTH",
    "BDSEQ",
    "Topic",
    "encode_payload",
    "metric_value",
    "parse_topic",
    "state_topic",
    "topic",
]

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD"})


class DataType:
    """Sparkplug B data type numbers (specification, section 6.4.16)."""

    INT8, INT16, INT32, INT64 = 1, 2, 3, 4
    UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
    FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14


def _build_payload_class() -> Any:
    f = descriptor_pb2.FieldDescriptorProto
    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="scada_sparkplug_b.proto", package="scada.sparkplug_b", syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")

    def add(msg: Any, name: str, number: int, kind: int, label: int = opt, type_name: str = "", oneof: bool = False) -> None:
        field = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if oneof:
            field.oneof_index = 0

    add(payload, "timestamp", 1, f.TYPE_UINT64)
    add(payload, "metrics", 2, f.TYPE_MESSAGE, rep, ".scada.sparkplug_b.Payload.Metric")
    add(payload, "seq", 3, f.TYPE_UINT64)
    add(payload, "uuid", 4, f.TYPE_STRING)
    add(payload, "body", 5, f.TYPE_BYTES)
    add(metric, "name", 1, f.TYPE_STRING)
    add(metric, "alias", 2, f.TYPE_UINT64)
    add(metric, "timestamp", 3, f.TYPE_UINT64)
    add(metric, "datatype", 4, f.TYPE_UINT32)
    add(metric, "is_historical", 5, f.TYPE_BOOL)
    add(metric, "is_transient", 6, f.TYPE_BOOL)
    add(metric, "is_null", 7, f.TYPE_BOOL)
    add(metric, "int_value", 10, f.TYPE_UINT32, oneof=True)
    add(metric, "long_value", 11, f.TYPE_UINT64, oneof=True)
    add(metric, "float_value", 12, f.TYPE_FLOAT, oneof=True)
    add(metric, "double_value", 13, f.TYPE_DOUBLE, oneof=True)
    add(metric, "boolean_value", 14, f.TYPE_BOOL, oneof=True)
    add(metric, "string_value", 15, f.TYPE_STRING, oneof=True)
    add(metric, "bytes_value", 16, f.TYPE_BYTES, oneof=True)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("scada.sparkplug_b.Payload"))


Payload: Any = _build_payload_class()
"""The protobuf message class of a Sparkplug B payload (``Payload.FromString(data)``)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric to encode."""

    name: str | None
    value: bool | int | float | str | None
    datatype: int
    timestamp: int | None = None  # ms
    alias: int | None = None
    historical: bool = False


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    type: str
    edge_node: str
    device: str | None = None


def topic(group: str, message_type: str, edge_node: str, device: str | None = None) -> str:
    base = f"{NAMESPACE}/{group}/{message_type}/{edge_node}"
    return base if device is None else f"{base}/{device}"


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def parse_topic(name: str) -> Topic | None:
    """A Sparkplug B message topic, or None (the STATE topic, or not Sparkplug)."""
    parts = name.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in MESSAGE_TYPES:
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


_INT_SIGNED = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32}
_LIMIT = 1e15  # a number from outside beyond this is not a meter reading


def metric_value(m: Any) -> bool | int | float | str | None:
    """The value of a decoded metric, by its data type; None when null, missing or out of bounds.

    Signed 8/16/32-bit integers travel in ``int_value`` (uint32) as two's complement; 64-bit ones
    in ``long_value``.
    """
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    if kind is None:
        return None
    dt = m.datatype
    if kind == "double_value" or kind == "float_value":
        x = m.double_value if kind == "double_value" else m.float_value
        return x if math.isfinite(x) and -_LIMIT <= x <= _LIMIT else None
    if kind == "boolean_value":
        return bool(m.boolean_value)
    if kind == "int_value":
        v = m.int_value
        bits = _INT_SIGNED.get(dt)
        if bits is not None and v >= 1 << (bits - 1):
            v -= 1 << 32 if v >= 1 << 31 else 1 << bits
        return v
    if kind == "long_value":
        v = m.long_value
        if dt == DataType.INT64 and v >= 1 << 63:
            v -= 1 << 64
        return v if -_LIMIT <= v <= _LIMIT or dt == DataType.DATETIME else None
    if kind == "string_value":
        return m.string_value[:256]
    return None


def encode_payload(metrics: list[Metric], seq: int | None, timestamp: int) -> bytes:
    """A Sparkplug B payload (for gateways of our own: the simulator, tests, commands)."""
    p = Payload(timestamp=timestamp)
    if seq is not None:
        p.seq = seq
    for m in metrics:
        out = p.metrics.add(datatype=m.datatype)
        if m.name is not None:
            out.name = m.name
        if m.alias is not None:
            out.alias = m.alias
        if m.timestamp is not None:
            out.timestamp = m.timestamp
        if m.historical:
            out.is_historical = True
        v = m.value
        if v is None:
            out.is_null = True
        elif m.datatype == DataType.BOOLEAN:
            out.boolean_value = bool(v)
        elif m.datatype in (DataType.FLOAT,):
            out.float_value = float(v)
        elif m.datatype == DataType.DOUBLE:
            out.double_value = float(v)
        elif m.datatype in (DataType.STRING, DataType.TEXT):
            out.string_value = str(v)
        elif m.datatype in (DataType.INT64, DataType.UINT64, DataType.DATETIME):
            out.long_value = int(v) % (1 << 64)
        else:
            out.int_value = int(v) % (1 << 32)
    return bytes(p.SerializeToString())
