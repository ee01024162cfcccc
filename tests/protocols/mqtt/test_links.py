"""MQTT gateway links on a real Mosquitto: Sparkplug B edge nodes and JSON gateways (simulated
gateways of ours that speak MQTT on their own connection and can die the way real ones do)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from protocols.library import load_library
from protocols.modbus.poller import DeviceSpec
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.links import MqttFailure, MqttLinks
from protocols.mqtt.simgw import MqttWire, SimDevice, SimGateway
from protocols.mqtt.sparkplug import DataType, Metric, Payload, encode_payload, metric_value, topic
from tags import Quality, QualityReason, TagDB

from ...services import MosquittoServer

LIBRARY = load_library()


def device(i: int, kwh: float = 100.0) -> SimDevice:
    return SimDevice(f"m{i}", {"energy_total": kwh, "power": 1.5, "voltage": 230.0, "relay_closed": True})


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Site:
    def __init__(
        self, broker: MosquittoServer, links: list[MqttLinkConfig], meters: list[DeviceSpec], passwords: dict[str, str | None] | None = None
    ) -> None:
        self.db = TagDB()
        self.links = MqttLinks(self.db, links, LIBRARY, passwords)
        self.links.set_devices(meters)
        self.broker = broker

    def value(self, meter: str, point: str) -> object:
        return self.db.read(f"{meter}.{point}").value


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[Site]:
    task = asyncio.create_task(site.links.run(), name="mqtt-links")
    try:
        await until(lambda: all(b.connected for b in site.links.brokers))
        yield site
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def stopped(gw: SimGateway) -> AsyncIterator[SimGateway]:
    try:
        yield gw
    finally:
        await gw.stop()


def sparkplug_link(broker: MosquittoServer, name: str = "gw-1", **kw: object) -> MqttLinkConfig:
    return MqttLinkConfig.model_validate({"name": name, "kind": "mqtt", "host": "127.0.0.1", "port": broker.port,
                                          "group_id": "t", "rebirth_interval_s": 0.0, **kw})


def specs(link: str, n: int, first: int = 1) -> list[DeviceSpec]:
    return [DeviceSpec(f"E-{link}-{i}", "mqtt-electricity", link, 0, address=f"m{i}") for i in range(first, first + n)]


async def test_sparkplug_birth_data_death_and_a_replay(mqtt_broker: MosquittoServer) -> None:
    site = Site(mqtt_broker, [sparkplug_link(mqtt_broker)], specs("gw-1", 3))
    gw = SimGateway("127.0.0.1", mqtt_broker.port, "gw-1", [device(i, 100.0 + i) for i in range(1, 4)], group="t", keepalive=5)
    async with running(site), stopped(gw):
        await gw.start()
        await until(lambda: site.value("E-gw-1-2", "energy_total") == 102.0)
        assert site.db.read("link:gw-1.comm_ok").value is True
        assert site.value("E-gw-1-1", "comm_ok") is True
        t1 = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 1, UTC)  # newer than the birth
        gw.read("m1", {"energy_total": 101.5, "power": 2.0}, int(t1.timestamp() * 1000))  # DDATA by alias
        await until(lambda: site.value("E-gw-1-1", "energy_total") == 101.5)
        assert site.db.read("E-gw-1-1.energy_total").source_ts == t1
        assert site.value("E-gw-1-1", "power") == 2.0
        # the connection dies: the broker publishes NDEATH, the meters go bad, the link down
        await gw.kill()
        await until(lambda: site.db.read("link:gw-1.comm_ok").value is False)
        bad = site.db.read("E-gw-1-3.energy_total")
        assert (bad.quality, bad.reason, bad.value) == (Quality.BAD, QualityReason.COMM_FAILURE, 103.0)
        assert site.value("E-gw-1-3", "comm_ok") is False
        # readings taken while away come back, marked historical, after the next birth
        history = site.db.subscribe(include_late=True)
        away = datetime.now(UTC) - timedelta(minutes=5)
        gw.read("m1", {"energy_total": 101.7}, int(away.timestamp() * 1000))
        await gw.start()
        got: list[object] = []

        def late_seen() -> bool:
            got.extend(c.new.value for c in history.drain() if c.late and c.name == "E-gw-1-1.energy_total")
            return bool(got)

        await until(late_seen)
        assert got == [101.7]
        # the display keeps the newest: the birth's value, taken after the reading replayed
        assert site.db.read("E-gw-1-1.energy_total").source_ts > away
        assert site.value("E-gw-1-1", "comm_ok") is True
        history.close()
        await gw.stop()


async def test_a_seq_gap_and_data_before_a_birth_request_a_rebirth(mqtt_broker: MosquittoServer) -> None:
    site = Site(mqtt_broker, [sparkplug_link(mqtt_broker, "gw-2"), sparkplug_link(mqtt_broker, "gw-2b")],
                specs("gw-2", 1) + specs("gw-2b", 1))
    gw = SimGateway("127.0.0.1", mqtt_broker.port, "gw-2", [device(1)], group="t", keepalive=5)
    async with running(site), stopped(gw):
        await gw.start()
        await until(lambda: site.value("E-gw-2-1", "comm_ok") is True)
        before = gw.rebirths
        gw.skip_seq()
        gw.read("m1", {"energy_total": 150.0})
        await until(lambda: gw.rebirths == before + 1)
        assert site.value("E-gw-2-1", "energy_total") == 150.0  # the data still counts
        assert site.links.gateways["gw-2"].seq_gaps == 1
        # a node whose birth the host never saw sends data: a rebirth request, no data taken
        wire = MqttWire()
        await wire.connect("127.0.0.1", mqtt_broker.port, "gw-2b")
        wire.subscribe(topic("t", "NCMD", "gw-2b"))
        await asyncio.sleep(0.2)  # the subscription is in place
        wire.publish(topic("t", "DDATA", "gw-2b", "m1"), encode_payload([Metric("energy_total", 1.0, DataType.DOUBLE)], 9, 1))
        ncmd_topic, payload = await asyncio.wait_for(wire.messages.get(), 10)
        assert ncmd_topic == topic("t", "NCMD", "gw-2b")
        request = Payload.FromString(payload).metrics[0]
        assert (request.name, metric_value(request)) == ("Node Control/Rebirth", True)
        assert site.db.read("E-gw-2b-1.energy_total").value is None
        await wire.close()


async def test_relay_command_as_dcmd_with_read_back(mqtt_broker: MosquittoServer) -> None:
    site = Site(mqtt_broker, [sparkplug_link(mqtt_broker, "gw-3")], specs("gw-3", 2))
    gw = SimGateway("127.0.0.1", mqtt_broker.port, "gw-3", [device(1), device(2)], group="t", keepalive=5)
    meter = site.links.devices["E-gw-3-2"].spec

    class Ref:
        id = meter.meter_id

    async with running(site), stopped(gw):
        await gw.start()
        await until(lambda: site.value("E-gw-3-2", "relay_closed") is True)
        assert site.links.supports_supply(Ref())
        await site.links.set_supply(Ref(), False)
        await until(lambda: site.value("E-gw-3-2", "relay_closed") is False)
        assert await site.links.read_supply(Ref()) is False
        assert gw.commands == [("m2", "relay_closed", False)]
        await gw.kill()
        await until(lambda: site.db.read("link:gw-3.comm_ok").value is False)
        with pytest.raises(MqttFailure, match="not alive"):
            await site.links.set_supply(Ref(), True)
        with pytest.raises(MqttFailure, match="bad"):
            await site.links.read_supply(Ref())


async def test_json_gateway_data_status_commands_and_bad_payloads(mqtt_broker: MosquittoServer) -> None:
    link = MqttLinkConfig.model_validate({
        "name": "j-1", "kind": "mqtt", "format": "json", "host": "127.0.0.1", "port": mqtt_broker.port,
        "timestamp_format": "epoch_ms", "fields": {"power": "power"},
    })
    site = Site(mqtt_broker, [link], specs("j-1", 2))
    gw = SimGateway("127.0.0.1", mqtt_broker.port, "j-1", [device(1), device(2)], format="json", keepalive=5)
    async with running(site), stopped(gw):
        await gw.start()
        t = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) - 30, UTC)
        gw.read("m2", {"energy_total": 321.25, "power": 0.5}, int(t.timestamp() * 1000))
        await until(lambda: site.value("E-j-1-2", "energy_total") == 321.25)
        assert site.db.read("E-j-1-2.energy_total").source_ts == t
        assert site.db.read("link:j-1.comm_ok").value is True
        # payloads that are not readings: counted, nothing written
        wire = MqttWire()
        await wire.connect("127.0.0.1", mqtt_broker.port, "other")
        wire.publish("meters/j-1/m2/data", b"{not json")
        wire.publish("meters/j-1/m2/data", b'{"energy_total": "lots", "power": 1e400}')  # no time: now
        wire.publish("meters/j-1/m9/data", b'{"energy_total": 1}')  # a meter the site does not have
        await until(lambda: site.links.rejected == 1 and site.links.unknown == 1)
        await until(lambda: site.db.read("E-j-1-2.energy_total").quality is Quality.BAD)
        assert site.db.read("E-j-1-2.energy_total").reason is QualityReason.OUT_OF_RANGE
        await wire.close()
        # a command, then the gateway's own report of the new state
        class Ref:
            id = "E-j-1-1"

        await site.links.set_supply(Ref(), False)
        await until(lambda: site.value("E-j-1-1", "relay_closed") is False)
        # death: the retained last will on the status topic
        await gw.kill()
        await until(lambda: site.db.read("link:j-1.comm_ok").value is False)
        assert site.db.read("E-j-1-1.power").quality is Quality.BAD


async def test_json_gateways_sharing_a_template_on_one_connection(mqtt_broker: MosquittoServer) -> None:
    links = [MqttLinkConfig.model_validate({"name": n, "kind": "mqtt", "format": "json", "host": "127.0.0.1", "port": mqtt_broker.port})
             for n in ("ja", "jb")]
    site = Site(mqtt_broker, links, specs("ja", 1) + specs("jb", 1))
    assert len(site.links.brokers) == 1  # one subscriber for both gateways
    async with running(site):
        wire = MqttWire()
        await wire.connect("127.0.0.1", mqtt_broker.port, "pub")
        wire.publish("meters/jb/m1/data", b'{"energy_total": 2.5}')
        wire.publish("meters/ja/m1/data", b'{"energy_total": 1.5}')
        wire.publish("meters/jb/status", b"offline")
        await until(lambda: site.db.read("link:jb.comm_ok").value is False and site.value("E-ja-1", "energy_total") == 1.5)
        assert site.value("E-jb-1", "energy_total") == 2.5 and site.db.read("E-jb-1.energy_total").quality is Quality.BAD
        assert site.db.read("link:ja.comm_ok").value is True
        await wire.close()
