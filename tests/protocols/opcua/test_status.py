"""Quality → StatusCode: one table, every pair mapped, and DataValues built the OPC UA way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asyncua import ua

from protocols.opcua.status import (
    STATUS_TABLE,
    data_value,
    status_code,
    status_name,
    to_variant,
)
from tags import Quality, QualityReason, TagValue

S = ua.StatusCodes
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tv(value: object, quality: Quality = Quality.GOOD, reason: QualityReason = QualityReason.NONE) -> TagValue:
    return TagValue(value, quality, NOW, NOW.replace(second=1), reason)  # type: ignore[arg-type]


def test_every_quality_and_reason_has_a_status() -> None:
    for quality in (Quality.UNCERTAIN, Quality.BAD):
        for reason in QualityReason:
            code = status_code(quality, reason)
            assert (code.is_bad() if quality is Quality.BAD else code.is_uncertain()), (quality, reason, status_name(code))
    assert set(STATUS_TABLE) == {(q, r) for q in (Quality.UNCERTAIN, Quality.BAD) for r in QualityReason}


@pytest.mark.parametrize(
    ("quality", "reason", "expected"),
    [
        (Quality.GOOD, QualityReason.NONE, "Good"),
        (Quality.GOOD, QualityReason.STALE, "Good"),  # a good value carries no reason
        (Quality.BAD, QualityReason.COMM_FAILURE, "BadCommunicationError"),
        (Quality.BAD, QualityReason.TIMEOUT, "BadTimeout"),
        (Quality.BAD, QualityReason.DEVICE_EXCEPTION, "BadDeviceFailure"),
        (Quality.BAD, QualityReason.CONFIG_ERROR, "BadConfigurationError"),
        (Quality.BAD, QualityReason.OUT_OF_RANGE, "BadOutOfRange"),
        (Quality.BAD, QualityReason.OUT_OF_SERVICE, "BadOutOfService"),
        (Quality.BAD, QualityReason.NO_VALUE, "BadWaitingForInitialData"),
        (Quality.BAD, QualityReason.NOT_FED, "BadWaitingForInitialData"),
        (Quality.BAD, QualityReason.BAD_FRAME, "BadDataEncodingInvalid"),
        (Quality.UNCERTAIN, QualityReason.STALE, "UncertainLastUsableValue"),
        (Quality.UNCERTAIN, QualityReason.COMM_FAILURE, "UncertainNoCommunicationLastUsableValue"),
        (Quality.UNCERTAIN, QualityReason.OUT_OF_RANGE, "UncertainEngineeringUnitsExceeded"),
        (Quality.UNCERTAIN, QualityReason.NONE, "Uncertain"),
    ],
)
def test_table(quality: Quality, reason: QualityReason, expected: str) -> None:
    assert status_name(status_code(quality, reason)) == expected


def test_derived_values_are_uncertain_until_fed() -> None:
    assert status_name(status_code(Quality.BAD, QualityReason.NO_VALUE, derived=True)) == "UncertainInitialValue"
    assert status_name(status_code(Quality.BAD, QualityReason.NOT_FED, derived=True)) == "UncertainInitialValue"
    # a derived value that went bad for a real reason says so
    assert status_name(status_code(Quality.BAD, QualityReason.CONFIG_ERROR, derived=True)) == "BadConfigurationError"
    missing = data_value(None, ua.VariantType.Double, derived=True, now=NOW)
    assert status_name(missing.StatusCode) == "UncertainInitialValue" and missing.Value.Value is None
    assert status_name(data_value(None, ua.VariantType.Double, now=NOW).StatusCode) == "BadWaitingForInitialData"


def test_good_value_with_timestamps() -> None:
    dv = data_value(tv(123.5), ua.VariantType.Double)
    assert dv.Value == ua.Variant(123.5, ua.VariantType.Double)
    assert dv.StatusCode.is_good()
    assert dv.SourceTimestamp == NOW and dv.ServerTimestamp == NOW.replace(second=1)


def test_bad_value_is_null_uncertain_keeps_last_value() -> None:
    bad = data_value(tv(5.0, Quality.BAD, QualityReason.TIMEOUT), ua.VariantType.Double)
    assert bad.Value.VariantType is ua.VariantType.Null and status_name(bad.StatusCode) == "BadTimeout"
    uncertain = data_value(tv(5.0, Quality.UNCERTAIN, QualityReason.STALE), ua.VariantType.Double)
    assert uncertain.Value.Value == 5.0 and status_name(uncertain.StatusCode) == "UncertainLastUsableValue"


def test_values_take_the_node_type() -> None:
    assert to_variant(3, ua.VariantType.Double) == ua.Variant(3.0, ua.VariantType.Double)
    assert to_variant(2, ua.VariantType.Int32) == ua.Variant(2, ua.VariantType.Int32)
    assert to_variant(2.0, ua.VariantType.Int32) == ua.Variant(2, ua.VariantType.Int32)
    assert to_variant(True, ua.VariantType.Boolean).Value is True
    for value, vtype in [(True, ua.VariantType.Double), ("x", ua.VariantType.Double), (1, ua.VariantType.Boolean),
                         (2.5, ua.VariantType.Int32), (2**31, ua.VariantType.Int32), (1, ua.VariantType.String)]:
        with pytest.raises((TypeError, ValueError)):
            to_variant(value, vtype)  # type: ignore[arg-type]
    mismatch = data_value(tv("on"), ua.VariantType.Double)
    assert status_name(mismatch.StatusCode) == "BadTypeMismatch" and mismatch.Value.Value is None
