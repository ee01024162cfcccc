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


async def _retained(broker: MosquittoServer, topic_name: str, client_id: str) -> tuple[str, bytes]:
    """The message a new subscriber to ``topic_name`` gets at once (the retained one)."""
    wire = MqttWire()
    await wire.connect("127.0.0.1", broker.port, client_id)
    try:
        wire.subscribe(topic_name)
        return await asyncio.wait_for(wire.messages.get(), 10)
    finally:
        await wire.close()


async def test_host_state_online_retained_offline_as_will_and_on_shutdown(mqtt_broker: MosquittoServer) -> None:
    import json

    host = "host-state-t"
    state_topic = f"spBv1.0/STATE/{host}"
    site = Site(mqtt_broker, [sparkplug_link(mqtt_broker, "gw-s", host_id=host)], specs("gw-s", 1))
    watcher = MqttWire()  # sees every STATE change as it happens
    await watcher.connect("127.0.0.1", mqtt_broker.port, "state-watcher")
    try:
        watcher.subscribe(state_topic)  # before or after the host's birth: online comes first (retained)
        async with running(site):
            got_topic, raw = await asyncio.wait_for(watcher.messages.get(), 10)
            online = json.loads(raw)
            assert got_topic == state_topic and online["online"] is True
            assert abs(online["timestamp"] / 1000 - datetime.now(UTC).timestamp()) < 60
            # retained: a late subscriber learns the host is online
            assert json.loads((await _retained(mqtt_broker, state_topic, "late-1"))[1]) == online

            # the host's connection dies without DISCONNECT (taken over by a client with its id):
            # the broker publishes its last will, offline, with the birth's timestamp, retained
            thief = MqttWire()
            await thief.connect("127.0.0.1", mqtt_broker.port, f"scada-{host}")
            _, raw = await asyncio.wait_for(watcher.messages.get(), 10)
            assert json.loads(raw) == {"online": False, "timestamp": online["timestamp"]}
            assert json.loads((await _retained(mqtt_broker, state_topic, "late-2"))[1])["online"] is False
            await thief.close()
            # the host connects again: online, with a new timestamp
            _, raw = await asyncio.wait_for(watcher.messages.get(), 20)
            again = json.loads(raw)
            assert again["online"] is True and again["timestamp"] > online["timestamp"]
            await until(lambda: all(b.connected for b in site.links.brokers))
        # a clean shutdown (its DISCONNECT makes the broker drop the will): the host says offline
        # itself, retained, with the timestamp of its birth
        _, raw = await asyncio.wait_for(watcher.messages.get(), 10)
        assert json.loads(raw) == {"online": False, "timestamp": again["timestamp"]}
        assert json.loads((await _retained(mqtt_broker, state_topic, "late-3"))[1])["online"] is False
    finally:
        await watcher.close()


async def test_ddeath_marks_one_device_bad_and_a_stale_ndeath_is_ignored(mqtt_broker: MosquittoServer) -> None:
    site = Site(mqtt_broker, [sparkplug_link(mqtt_broker, "gw-d")], specs("gw-d", 3))
    gw = SimGateway("127.0.0.1", mqtt_broker.port, "gw-d", [device(i, 200.0 + i) for i in range(1, 4)], group="t", keepalive=5)
    gw.bd_seq = 6  # its next birth is bdSeq 7: an earlier session's death carries 6
    g = site.links.gateways["gw-d"]
    async with running(site), stopped(gw):
        await gw.start()
        await until(lambda: all(site.value(f"E-gw-d-{i}", "comm_ok") is True for i in (1, 2, 3)))
        assert g.bd_seq == 7

        # DDEATH of m2: its meter goes Bad, the others and the gateway stay Good
        gw.device_death("m2")
        await until(lambda: site.value("E-gw-d-2", "comm_ok") is False)
        dead = site.db.read("E-gw-d-2.energy_total")
        assert (dead.quality, dead.reason, dead.value) == (Quality.BAD, QualityReason.COMM_FAILURE, 202.0)
        assert dead.detail == "device m2 offline (DDEATH)"
        for i in (1, 3):
            assert site.db.read(f"E-gw-d-{i}.energy_total").quality is Quality.GOOD
            assert site.value(f"E-gw-d-{i}", "comm_ok") is True
        assert site.db.read("link:gw-d.comm_ok").value is True
        assert [s.state for s in site.links.device_stats("E-gw-d-2")] == ["offline"]
        assert [s.devices_offline for s in site.links.link_stats() if s.name == "gw-d"] == [1]
        # its data again (after the gateway's DBIRTH on a real node): Good again
        gw.read("m2", {"energy_total": 202.5})
        await until(lambda: site.value("E-gw-d-2", "energy_total") == 202.5)
        assert site.db.read("E-gw-d-2.energy_total").quality is Quality.GOOD and site.value("E-gw-d-2", "comm_ok") is True
        assert g.seq_gaps == 0  # DDEATH took its place in the node's seq

        # an NDEATH whose bdSeq is an earlier session's (the broker's late will of a connection
        # the node has since replaced): ignored, nothing goes Bad
        wire = MqttWire()
        await wire.connect("127.0.0.1", mqtt_broker.port, "late-will")
        try:
            seen = g.stats.requests
            stale = encode_payload([Metric("bdSeq", 6, DataType.UINT64)], None, int(datetime.now(UTC).timestamp() * 1000))
            wire.publish(topic("t", "NDEATH", "gw-d"), stale)
            await wire.drain()
            await until(lambda: g.stats.requests > seen)  # the host has processed it
            assert site.db.read("link:gw-d.comm_ok").value is True and g.alive
            assert all(site.db.read(f"E-gw-d-{i}.energy_total").quality is Quality.GOOD for i in (1, 2, 3))
            # the current session's death (bdSeq 7) counts: every meter Bad, the link down
            current = encode_payload([Metric("bdSeq", 7, DataType.UINT64)], None, int(datetime.now(UTC).timestamp() * 1000))
            wire.publish(topic("t", "NDEATH", "gw-d"), current)
            await wire.drain()
            await until(lambda: site.db.read("link:gw-d.comm_ok").value is False)
            assert all(site.db.read(f"E-gw-d-{i}.energy_total").reason is QualityReason.COMM_FAILURE for i in (1, 2, 3))
        finally:
            await wire.close()
