"""Tag quality → OPC UA StatusCode, and tag values → DataValues.

One table (:data:`STATUS_TABLE`) maps every ``(Quality, QualityReason)`` to a status code, so a
client sees why a value is not good (``Bad_CommunicationError``, ``Bad_Timeout``,
``Uncertain_LastUsableValue`` …), not just that it is not. Values the server derives rather than
reads (a room's balance, supply state …) are "uncertain, initial value" until their producer
feeds them: a client must not mistake "not computed yet" for a device fault.

Per OPC UA Part 4 §7.7, a Bad DataValue carries no value; an Uncertain one keeps the last value.
"""

from __future__ import annotations

from datetime import datetime

from asyncua import ua

from tags import DataType, Quality, QualityReason, TagValue, Value

__all__ = [
    "STATUS_TABLE",
    "VARIANT_TYPES",
    "data_value",
    "status_code",
    "status_name",
    "to_variant",
]

_S = ua.StatusCodes
R = QualityReason

# (quality, reason) → status code. GOOD ignores the reason.
STATUS_TABLE: dict[tuple[Quality, QualityReason], int] = {
    (Quality.UNCERTAIN, R.NONE): _S.Uncertain,
    (Quality.UNCERTAIN, R.NO_VALUE): _S.UncertainInitialValue,
    (Quality.UNCERTAIN, R.NOT_FED): _S.UncertainInitialValue,
    (Quality.UNCERTAIN, R.COMM_FAILURE): _S.UncertainNoCommunicationLastUsableValue,
    (Quality.UNCERTAIN, R.TIMEOUT): _S.UncertainNoCommunicationLastUsableValue,
    (Quality.UNCERTAIN, R.DEVICE_EXCEPTION): _S.UncertainNoCommunicationLastUsableValue,
    (Quality.UNCERTAIN, R.BAD_FRAME): _S.UncertainNoCommunicationLastUsableValue,
    (Quality.UNCERTAIN, R.OUT_OF_RANGE): _S.UncertainEngineeringUnitsExceeded,
    (Quality.UNCERTAIN, R.CONFIG_ERROR): _S.UncertainConfigurationError,
    (Quality.UNCERTAIN, R.STALE): _S.UncertainLastUsableValue,
    (Quality.UNCERTAIN, R.OUT_OF_SERVICE): _S.UncertainSubstituteValue,
    (Quality.BAD, R.NONE): _S.Bad,
    (Quality.BAD, R.NO_VALUE): _S.BadWaitingForInitialData,
    (Quality.BAD, R.NOT_FED): _S.BadWaitingForInitialData,
    (Quality.BAD, R.COMM_FAILURE): _S.BadCommunicationError,
    (Quality.BAD, R.TIMEOUT): _S.BadTimeout,
    (Quality.BAD, R.DEVICE_EXCEPTION): _S.BadDeviceFailure,
    (Quality.BAD, R.BAD_FRAME): _S.BadDataEncodingInvalid,
    (Quality.BAD, R.OUT_OF_RANGE): _S.BadOutOfRange,
    (Quality.BAD, R.CONFIG_ERROR): _S.BadConfigurationError,
    (Quality.BAD, R.STALE): _S.BadNoCommunication,
    (Quality.BAD, R.OUT_OF_SERVICE): _S.BadOutOfService,
}

_WAITING = (R.NO_VALUE, R.NOT_FED)

# one StatusCode object per code: DataValues share them instead of allocating one per update
_CODES: dict[int, ua.StatusCode] = {code: ua.StatusCode(code) for code in {_S.Good, *STATUS_TABLE.values()}}
_GOOD = _CODES[_S.Good]
_NAMES = {value: name for name, value in vars(_S).items() if isinstance(value, int)}

VARIANT_TYPES: dict[DataType, ua.VariantType] = {
    DataType.BOOL: ua.VariantType.Boolean,
    DataType.INT: ua.VariantType.Int32,
    DataType.FLOAT: ua.VariantType.Double,
    DataType.STRING: ua.VariantType.String,
}


def status_code(quality: Quality, reason: QualityReason, *, derived: bool = False) -> ua.StatusCode:
    """The status code of a tag's quality. ``derived``: a value the server computes (room
    balance, supply state…), reported as ``Uncertain_InitialValue`` until first fed."""
    if quality is Quality.GOOD:
        return _GOOD
    if derived and reason in _WAITING:
        return _CODES[_S.UncertainInitialValue]
    return _CODES[STATUS_TABLE[(quality, reason)]]


def status_name(code: ua.StatusCode | int) -> str:
    value = code.value if isinstance(code, ua.StatusCode) else code
    return _NAMES.get(value, hex(value))


def to_variant(value: Value, vtype: ua.VariantType) -> ua.Variant:
    """The value as a Variant of the node's type; raises ``TypeError``/``ValueError`` when it
    does not fit (a config error between the tag's producer and its declared type)."""
    if vtype is ua.VariantType.Double:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, found {value!r}")
        return ua.Variant(float(value), vtype)
    if vtype is ua.VariantType.Int32:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise TypeError(f"expected an integer, found {value!r}")
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"{value} does not fit in Int32")
        return ua.Variant(value, vtype)
    if vtype is ua.VariantType.Boolean:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, found {value!r}")
        return ua.Variant(value, vtype)
    if vtype is ua.VariantType.String:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, found {value!r}")
        return ua.Variant(value, vtype)
    raise TypeError(f"unsupported variant type {vtype!r}")


def data_value(tag: TagValue | None, vtype: ua.VariantType, *, derived: bool = False, now: datetime | None = None) -> ua.DataValue:
    """The DataValue of a node fed by ``tag`` (``None``: the tag does not exist yet)."""
    if tag is None:
        code = _CODES[_S.UncertainInitialValue] if derived else _CODES[_S.BadWaitingForInitialData]
        return ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=code, SourceTimestamp=now, ServerTimestamp=now)
    code = status_code(tag.quality, tag.reason, derived=derived)
    if code.is_bad() or tag.value is None:
        variant = ua.Variant(None, ua.VariantType.Null)
    else:
        try:
            variant = to_variant(tag.value, vtype)
        except (TypeError, ValueError):
            variant = ua.Variant(None, ua.VariantType.Null)
            code = _CODES.setdefault(_S.BadTypeMismatch, ua.StatusCode(_S.BadTypeMismatch))
    return ua.DataValue(variant, StatusCode=code, SourceTimestamp=tag.source_ts, ServerTimestamp=tag.server_ts)
