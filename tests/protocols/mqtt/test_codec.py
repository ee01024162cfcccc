"""Sparkplug B payloads against bytes worked out by hand from the specification's schema, the
JSON scheme's templates and payload bounds, and MQTT link configuration errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from protocols.mqtt import jsonfmt, sparkplug
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.sparkplug import DataType, Metric, encode_payload, metric_value


def test_an_nbirth_payload_is_the_bytes_of_the_schema() -> None:
    # Payload{timestamp=1 (field 1, varint), metrics=[Metric{name="bdSeq" (1), datatype=8 UInt64
    # (4), long_value=0 (11)}] (field 2, length 11), seq=0 (field 3)}
    data = encode_payload([Metric("bdSeq", 0, DataType.UINT64)], 0, 1)
    assert data.hex() == "08" "01" "12" "0b" "0a05" + b"bdSeq".hex() + "2008" "5800" "18" "00"


def test_a_ddata_metric_by_alias_with_a_double_and_a_historical_flag() -> None:
    # Metric{alias=3 (2), timestamp=1000 (3), datatype=10 (4), is_historical (5), double 1.5 (13)}
    data = encode_payload([Metric(None, 1.5, DataType.DOUBLE, 1000, 3, True)], 7, 1000)
    metric = "1003" "18e807" "200a" "2801" "69" + (0x3FF8000000000000).to_bytes(8, "little").hex()
    assert data.hex() == "08e807" "12" + f"{len(metric) // 2:02x}" + metric + "1807"
    p = sparkplug.Payload.FromString(data)
    assert (p.seq, p.metrics[0].alias, p.metrics[0].is_historical, metric_value(p.metrics[0])) == (7, 3, True, 1.5)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [(DataType.INT8, -5), (DataType.INT16, -300), (DataType.INT32, -70000), (DataType.INT64, -(2**40)),
     (DataType.UINT32, 4_000_000_000), (DataType.BOOLEAN, True), (DataType.FLOAT, 0.5), (DataType.STRING, "ok")],
)
def test_values_round_trip_by_data_type(datatype: int, value: object) -> None:
    p = sparkplug.Payload.FromString(encode_payload([Metric("x", value, datatype)], 1, 1))  # type: ignore[arg-type]
    assert metric_value(p.metrics[0]) == value


def test_values_out_of_bounds_and_nulls_are_no_readings() -> None:
    p = sparkplug.Payload()
    p.metrics.add(name="a", datatype=DataType.DOUBLE, double_value=math.inf)
    p.metrics.add(name="b", datatype=DataType.DOUBLE, double_value=1e300)
    p.metrics.add(name="c", datatype=DataType.DOUBLE, is_null=True)
    p.metrics.add(name="d", datatype=DataType.DOUBLE)
    assert [metric_value(m) for m in p.metrics] == [None, None, None, None]


def test_topics() -> None:
    assert sparkplug.topic("g", "DDATA", "n", "d") == "spBv1.0/g/DDATA/n/d"
    assert sparkplug.parse_topic("spBv1.0/g/NDEATH/n") == sparkplug.Topic("g", "NDEATH", "n")
    assert sparkplug.parse_topic("spBv1.0/STATE/scada") is None
    assert sparkplug.state_topic("scada") == "spBv1.0/STATE/scada"


def test_json_templates_and_payloads() -> None:
    t = jsonfmt.Template("site/{gateway}/meter/{meter}/up")
    assert t.filter == "site/+/meter/+/up"
    assert t.match("site/gw.1/meter/E-7/up") == {"gateway": "gw.1", "meter": "E-7"}
    assert t.match("site/gw/meter/E-7/up/x") is None
    assert t.format(gateway="g", meter="m") == "site/g/meter/m/up"
    assert jsonfmt.parse_payload(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="not JSON"):
        jsonfmt.parse_payload(b"{")
    with pytest.raises(ValueError, match="object"):
        jsonfmt.parse_payload(b"[1]")
    with pytest.raises(ValueError, match="larger"):
        jsonfmt.parse_payload(b" " * (jsonfmt.MAX_PAYLOAD + 1))
    assert jsonfmt.field_value({"d": {"ea": 5}}, "d.ea") == 5
    assert jsonfmt.parse_time(1_714_528_800_000, "epoch_ms") == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert jsonfmt.parse_time("2024-05-01T10:00:00+08:00", "iso8601") == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert jsonfmt.parse_time("2024-05-01T10:00:00", "iso8601") is None  # no zone: not believed
    assert jsonfmt.parse_time(1e30, "epoch_s") is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"format": "json", "topic": "meters/{gateway}/data"}, "needs {meter}"),
        ({"format": "json", "topic": "meters/{site}/{meter}"}, "unknown placeholder {site}"),
        ({"format": "json", "topic": "meters/+/{meter}"}, "not wildcards"),
        ({"group_id": "a/b"}, "group_id"),
        ({"password": {"env": "X"}}, "needs a username"),
        ({"ca_file": "ca.pem"}, "needs tls"),
    ],
)
def test_link_config_errors_name_the_key(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        MqttLinkConfig.model_validate({"name": "g", "kind": "mqtt", "host": "127.0.0.1", **extra})
