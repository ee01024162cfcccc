"""MQTT gateway links: meters' tags fed from what their gateways publish.

:class:`MqttLinks` is to pushed links what the Modbus poller is to polled ones: it registers one
tag per profile point of each meter (``<meter>.<point>``, ``<meter>.comm_ok``) and one
``link:<link>.comm_ok`` per gateway, follows the registry (:meth:`set_devices`), sends supply
commands (:meth:`set_supply`, read back by :meth:`read_supply`) and keeps statistics for the HMI.

Each broker gets one connection (``aiomqtt``); every link on it is a gateway. Readings are
written with their own source times and ``keep_newest`` (a gateway's replay after an outage
reaches history and billing; displays keep the newest value).

Sparkplug B (:mod:`.sparkplug`): NBIRTH makes the edge node alive (its ``bdSeq`` remembered),
DBIRTH a device (its metric aliases remembered), DDATA updates, DDEATH marks a device's meter
bad, NDEATH (the node's last will, published by the broker when the gateway's connection dies)
marks all its meters bad and ``link:<link>.comm_ok`` False — one link alarm — unless its
``bdSeq`` is not the current birth's (a stale death). Each node's ``seq`` must count 0..255 in
order: a gap, or data before any birth, sends a rebirth request (NCMD ``Node Control/Rebirth``,
at most one per ``rebirth_interval_s``). The server is a Sparkplug host application: it
publishes ``spBv1.0/STATE/<host_id>`` online (retained) and leaves the offline state as its own
last will; on a clean shutdown it publishes the offline state itself (a DISCONNECT drops the
will). Relay commands go out as DCMD; their read-back is the gateway's next DDATA.

JSON (:mod:`.jsonfmt`): readings on the link's ``topic`` template; the gateway's ``status_topic``
(its retained last will) ``offline`` marks its meters bad and the link down; commands go to
``command_topic``.

Losing the broker marks every gateway on it down until the connection is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt

from tags import DataType as TagType
from tags import Quality, QualityReason, TagDB, TagMeta, TagValue, TagWrite, utcnow
from tags.names import link_tag, meter_tag

from ..modbus.poller import DeviceSpec, MeterRef
from ..modbus.profile import ProfileLibrary
from ..modbus.stats import DeviceStats, LinkStats
from . import jsonfmt, sparkplug
from .config import MqttLinkConfig
from .profile import MqttProfile

__all__ = ["MqttLinks", "MqttFailure"]

log = logging.getLogger(__name__)

_AHEAD = timedelta(seconds=60)  # a source time further ahead of the server's clock is not believed


class MqttFailure(Exception):
    """A command could not be sent (gateway or broker away)."""


class _Meter:
    def __init__(self, spec: DeviceSpec, profile: MqttProfile, link: str) -> None:
        self.spec = spec
        self.profile = profile
        self.tags = {p.name: meter_tag(spec.meter_id, p.name) for p in profile.points.values()}
        self.comm_tag = meter_tag(spec.meter_id, "comm_ok")
        self.alive = False
        self.stats = DeviceStats(meter_id=spec.meter_id, link=link, profile=spec.profile, address=spec.address)

    @property
    def address(self) -> str:
        return self.spec.address or self.spec.meter_id


class _Gateway:
    """One link: a Sparkplug edge node or a JSON gateway, and its meters by device id."""

    def __init__(self, config: MqttLinkConfig) -> None:
        self.config = config
        self.name = config.name
        self.meters: dict[str, _Meter] = {}  # device id -> meter
        self.alive = False
        self.born = False  # Sparkplug: NBIRTH seen
        self.bd_seq: int | None = None
        self.seq: int | None = None
        self.aliases: dict[int, str] = {}  # Sparkplug metric alias -> name (unique per edge node)
        self.last_rebirth = -1e9
        self.rebirths = 0
        self.seq_gaps = 0
        self.stats = LinkStats(
            name=config.name, kind=f"mqtt/{config.format}", endpoint=_endpoint(config), state="connecting", connections=1,
        )
        if config.format == "json":
            self.data = jsonfmt.Template(config.topic)
            self.status = jsonfmt.Template(config.status_topic) if config.status_topic else None
            self.command = jsonfmt.Template(config.command_topic) if config.command_topic else None


def _endpoint(c: MqttLinkConfig) -> str:
    scheme = "mqtts" if c.tls else "mqtt"
    where = f"{c.group_id}/{c.edge_node_id}" if c.format == "sparkplug" else c.topic.replace("{gateway}", c.gateway_id)
    return f"{scheme}://{c.host}:{c.broker_port} {where}"


class _Broker:
    """One connection to a broker, shared by the gateways on it."""

    def __init__(self, owner: MqttLinks, gateways: list[_Gateway], password: str | None) -> None:
        self.owner = owner
        self.gateways = gateways
        self.config = gateways[0].config
        self.password = password
        self.client: aiomqtt.Client | None = None
        self.connected = False
        self.sparkplug = {(g.config.group_id, g.config.edge_node_id): g for g in gateways if g.config.format == "sparkplug"}
        self.json = [g for g in gateways if g.config.format == "json"]
        # the JSON gateways by their topics' templates, then by their {gateway}
        self.json_data: dict[str, tuple[jsonfmt.Template, dict[str, _Gateway]]] = {}
        self.json_status: dict[str, tuple[jsonfmt.Template, dict[str, _Gateway]]] = {}
        for g in self.json:
            self.json_data.setdefault(g.config.topic, (g.data, {}))[1][g.config.gateway_id] = g
            if g.status is not None:
                self.json_status.setdefault(g.status.template, (g.status, {}))[1][g.config.gateway_id] = g
        self.received = 0
        # rebirth requests wait here for the connection's sender (a task of the connection)
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1000)

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        return ssl.create_default_context(cafile=self.config.ca_file)

    def _filters(self) -> list[str]:
        out: dict[str, None] = {}
        for group in sorted({g for g, _ in self.sparkplug}):
            out[f"{sparkplug.NAMESPACE}/{group}/#"] = None
        for g in self.json:
            out[g.data.filter] = None
            if g.status is not None:
                out[g.status.filter] = None
        return list(out)

    def _state(self, online: bool, ts_ms: int) -> bytes:
        return json.dumps({"online": online, "timestamp": ts_ms}, separators=(",", ":")).encode()

    async def run(self) -> None:
        c = self.config
        backoff = 1.0
        down_logged = False
        while True:
            born_ms = int(time.time() * 1000)
            host_state = sparkplug.state_topic(c.host_id)
            will = aiomqtt.Will(host_state, self._state(False, born_ms), qos=1, retain=True) if self.sparkplug else None
            try:
                async with aiomqtt.Client(
                    c.host, c.broker_port, username=c.username, password=self.password,
                    identifier=c.client_id or f"scada-{c.host_id}", keepalive=c.keepalive_s, will=will,
                    tls_context=self._tls(), clean_session=True, timeout=10,
                ) as client, asyncio.TaskGroup() as tasks:
                    self.client = client
                    for topic_filter in self._filters():
                        await client.subscribe(topic_filter, qos=c.qos)
                    if self.sparkplug:
                        await client.publish(host_state, self._state(True, born_ms), qos=1, retain=True)
                    self.connected = True
                    backoff = 1.0
                    if down_logged:
                        log.info("MQTT broker connected again", extra={"broker": f"{c.host}:{c.broker_port}"})
                    down_logged = False
                    for g in self.gateways:
                        g.stats.connections_up = 1
                        g.stats.state = "up" if g.alive else "connecting"
                    sender = tasks.create_task(self._send(client), name="mqtt-sender")
                    for g in self.sparkplug.values():
                        self.rebirth(g, force=True)  # we may have missed its birth
                    try:
                        async for message in client.messages:
                            self.received += 1
                            self.owner.dispatch(self, str(message.topic), message.payload)  # type: ignore[arg-type]
                    except asyncio.CancelledError:
                        if self.sparkplug:
                            await self._say_offline(client, host_state, born_ms)
                        raise
                    sender.cancel()
            except* aiomqtt.MqttError as group:
                exc = group.exceptions[0]
                self.client = None
                self.connected = False
                if not down_logged:
                    log.warning("MQTT broker unreachable", extra={"broker": f"{c.host}:{c.broker_port}", "error": str(exc)})
                    down_logged = True
                for g in self.gateways:
                    g.stats.connections_up = 0
                    g.stats.reconnects += 1
                    if g.stats.state != "down":
                        self.owner.gateway_down(g, f"broker {c.host}:{c.broker_port} unreachable: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self.client = None

    async def _say_offline(self, client: aiomqtt.Client, host_state: str, born_ms: int) -> None:
        """On a clean shutdown: the offline STATE, retained, before the DISCONNECT (which makes
        the broker drop our last will, so nobody would learn that the host is gone)."""
        try:
            async with asyncio.timeout(2):
                await client.publish(host_state, self._state(False, born_ms), qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("offline STATE not published", extra={"error": str(exc) or type(exc).__name__})

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload = await self._outbox.get()
            await client.publish(topic, payload, qos=self.config.qos)

    async def publish(self, topic: str, payload: bytes) -> None:
        client = self.client
        if client is None or not self.connected:
            raise MqttFailure(f"broker {self.config.host}:{self.config.broker_port} is not connected")
        try:
            await client.publish(topic, payload, qos=self.config.qos)
        except aiomqtt.MqttError as exc:
            raise MqttFailure(f"publish to {topic} failed: {exc}") from None

    def rebirth(self, g: _Gateway, *, force: bool = False) -> None:
        """Ask the edge node for a new birth (NCMD ``Node Control/Rebirth``), at most once per
        ``rebirth_interval_s`` unless ``force``."""
        now = time.monotonic()
        if not force and now - g.last_rebirth < g.config.rebirth_interval_s:
            return
        g.last_rebirth = now
        g.rebirths += 1
        c = g.config
        payload = sparkplug.encode_payload(
            [sparkplug.Metric(sparkplug.REBIRTH, True, sparkplug.DataType.BOOLEAN)], None, int(time.time() * 1000)
        )
        try:
            self._outbox.put_nowait((sparkplug.topic(c.group_id, "NCMD", c.edge_node_id), payload))
        except asyncio.QueueFull:
            log.warning("rebirth request not sent: the outbox is full", extra={"link": g.name})


class MqttLinks:
    """The gateways of every ``[[links]] kind = "mqtt"`` entry, and their meters."""

    def __init__(
        self,
        tagdb: TagDB,
        links: Sequence[MqttLinkConfig],
        profiles: ProfileLibrary,
        passwords: dict[str, str | None] | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.tagdb = tagdb
        self.profiles = profiles
        self.clock = clock
        self.gateways: dict[str, _Gateway] = {c.name: _Gateway(c) for c in links}
        self.devices: dict[str, _Meter] = {}  # meter id -> meter (the command path routes by this)
        self.unknown = 0  # messages about devices the site does not have
        self.rejected = 0  # payloads that could not be read
        self.updates = 0  # metric values written to tags
        by_key: dict[tuple[object, ...], list[_Gateway]] = {}
        for g in self.gateways.values():
            by_key.setdefault(g.config.broker_key, []).append(g)
        passwords = passwords or {}
        self.brokers = [_Broker(self, gws, passwords.get(gws[0].name)) for gws in by_key.values()]
        self._broker_of = {g.name: b for b in self.brokers for g in b.gateways}
        for name in self.gateways:
            tagdb.register(TagMeta(link_tag(name, "comm_ok"), TagType.BOOL, description=f"gateway {name} alive"))

    async def run(self) -> None:
        """Keep every broker connection until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i, broker in enumerate(self.brokers):
                group.create_task(broker.run(), name=f"mqtt-broker-{i}")

    # -- devices -----------------------------------------------------------------------------
    def set_devices(self, specs: Iterable[DeviceSpec]) -> None:
        """Serve exactly ``specs``: tags of new meters registered, removed ones unregistered."""
        wanted = {s.meter_id: s for s in specs}
        for meter_id in list(self.devices):
            if meter_id not in wanted or self.devices[meter_id].spec != wanted[meter_id]:
                self._remove(meter_id)
        for spec in wanted.values():
            if spec.meter_id not in self.devices:
                self._add(spec)

    def _add(self, spec: DeviceSpec) -> None:
        g = self.gateways.get(spec.link)
        profile = self.profiles.get(spec.profile)
        problem = None
        if g is None:
            problem = f"unknown link {spec.link!r} (configured: {', '.join(self.gateways) or 'none'})"
        elif not isinstance(profile, MqttProfile):
            problem = (f"device profile {spec.profile!r} is a {getattr(profile, 'protocol', 'modbus')} profile; link {spec.link!r} speaks mqtt"
                       if profile is not None else f"unknown device profile {spec.profile!r}")
        elif spec.kind is not None and spec.kind != profile.kind:
            problem = f"a {spec.kind} meter with the {profile.kind} profile {profile.name!r}"
        if problem is not None:
            comm = meter_tag(spec.meter_id, "comm_ok")
            self.tagdb.register(TagMeta(comm, TagType.BOOL, meter_id=spec.meter_id, room_id=spec.room_id, point="comm_ok"))
            self.tagdb.write(comm, None, Quality.BAD, QualityReason.CONFIG_ERROR, detail=problem)
            log.error("meter not served", extra={"meter": spec.meter_id, "error": problem})
            return
        assert g is not None and isinstance(profile, MqttProfile)
        m = _Meter(spec, profile, g.name)
        for p in profile.points.values():
            self.tagdb.register(TagMeta(
                m.tags[p.name], TagType.BOOL if p.is_bool else TagType.STRING if p.text else TagType.FLOAT,
                unit=p.unit, description=p.description, meter_id=spec.meter_id, room_id=spec.room_id, point=p.name,
                deadband=p.deadband,
            ))
        self.tagdb.register(TagMeta(m.comm_tag, TagType.BOOL, description="meter reports", meter_id=spec.meter_id,
                                    room_id=spec.room_id, point="comm_ok"))
        self.devices[spec.meter_id] = m
        g.meters[m.address] = m
        g.stats.devices = len(g.meters)

    def _remove(self, meter_id: str) -> None:
        m = self.devices.pop(meter_id)
        g = self.gateways.get(m.spec.link)
        if g is not None and g.meters.get(m.address) is m:
            del g.meters[m.address]
            g.stats.devices = len(g.meters)
        for name in [*m.tags.values(), m.comm_tag]:
            self.tagdb.unregister(name)

    # -- messages ----------------------------------------------------------------------------
    def dispatch(self, broker: _Broker, topic: str, payload: bytes) -> None:
        """One message from ``broker`` (called by its connection, in order)."""
        try:
            if topic.startswith(sparkplug.NAMESPACE + "/"):
                self._sparkplug(broker, topic, payload)
            else:
                self._json(broker, topic, payload)
        except Exception:  # one bad message must not end the connection
            self.rejected += 1
            log.exception("MQTT message not processed", extra={"topic": topic[:200]})

    def _now(self) -> datetime:
        return self.clock()

    def _ts(self, ms: int, now: datetime) -> datetime:
        if ms <= 0:
            return now
        try:
            ts = datetime.fromtimestamp(ms / 1000.0, UTC)
        except (OverflowError, OSError, ValueError):
            return now
        return now if ts > now + _AHEAD or ts.year < 2000 else ts

    # Sparkplug B ----------------------------------------------------------------------------
    def _sparkplug(self, broker: _Broker, topic: str, payload: bytes) -> None:
        t = sparkplug.parse_topic(topic)
        if t is None:
            return  # the STATE topic (ours or another host's)
        g = broker.sparkplug.get((t.group, t.edge_node))
        if g is None or t.type in ("NCMD", "DCMD"):
            return
        try:
            p = sparkplug.Payload.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError
            self.rejected += 1
            g.stats.failed(QualityReason.BAD_FRAME, f"{t.type}: undecodable payload ({exc})")
            return
        g.stats.requests += 1
        now = self._now()
        if t.type == "NDEATH":
            bd = next((sparkplug.metric_value(m) for m in p.metrics if m.name == sparkplug.BDSEQ), None)
            if g.bd_seq is not None and bd is not None and bd != g.bd_seq:
                return  # the death of an earlier session: this one lives
            g.born = False
            self.gateway_down(g, f"edge node {t.edge_node} died (NDEATH)")
            return
        if t.type == "NBIRTH":
            g.born = True
            g.seq = p.seq if p.HasField("seq") else 0
            g.aliases = {}
            for m in p.metrics:
                if m.name == sparkplug.BDSEQ:
                    bd = sparkplug.metric_value(m)
                    g.bd_seq = bd if isinstance(bd, int) else None
                if m.HasField("alias") and m.name:
                    g.aliases[m.alias] = m.name
            self._gateway_up(g)
            return
        if not g.born:
            broker.rebirth(g)
            return
        seq = p.seq if p.HasField("seq") else None
        if seq is not None and g.seq is not None and seq != (g.seq + 1) % 256:
            g.seq_gaps += 1
            g.stats.failed(QualityReason.BAD_FRAME, f"seq {seq} after {g.seq}: messages lost; rebirth requested")
            log.warning("Sparkplug seq gap: rebirth requested", extra={"link": g.name, "seq": seq, "expected": (g.seq + 1) % 256})
            broker.rebirth(g)
        if seq is not None:
            g.seq = seq
        if t.type == "NDATA" or t.device is None:
            return
        if t.type == "DBIRTH":  # aliases are the node's, whether or not the site has this device
            for m in p.metrics:
                if m.HasField("alias") and m.name:
                    g.aliases[m.alias] = m.name
        meter = g.meters.get(t.device)
        if meter is None:
            self.unknown += 1
            return
        if t.type == "DDEATH":
            self._meter_down(meter, f"device {t.device} offline (DDEATH)", now)
            return
        default_ms = p.timestamp
        by_metric = meter.profile.by_metric
        writes: list[TagWrite] = []
        for m in p.metrics:
            name = (m.name or g.aliases.get(m.alias)) if m.HasField("alias") else m.name
            point = by_metric.get(name) if name else None
            if point is None:
                continue
            value = _point_value(point.type, sparkplug.metric_value(m))
            ts = self._ts(m.timestamp or default_ms, now)
            if value is None:
                writes.append(TagWrite(meter.tags[point.name], None, Quality.BAD, QualityReason.BAD_FRAME, f"{name}: no value", ts))
            else:
                writes.append(TagWrite(meter.tags[point.name], value, Quality.GOOD, QualityReason.NONE, "", ts))
        self._publish(meter, writes, now)

    # JSON -----------------------------------------------------------------------------------
    def _json(self, broker: _Broker, topic: str, payload: bytes) -> None:
        for template, by_id in broker.json_status.values():
            parts = template.match(topic)
            g = by_id.get(parts.get("gateway", "")) if parts is not None else None
            if parts is not None and g is None and "gateway" not in parts and len(by_id) == 1:
                g = next(iter(by_id.values()))  # a template without {gateway}: its one gateway
            if g is not None:
                text = payload.decode("utf-8", "replace").strip()
                g.stats.requests += 1
                if text == g.config.offline_payload:
                    self.gateway_down(g, f"gateway {g.config.gateway_id} offline (status)")
                elif text == g.config.online_payload:
                    self._gateway_up(g)
                return
        for template, by_id in broker.json_data.values():
            parts = template.match(topic)
            if parts is None:
                continue
            g = by_id.get(parts["gateway"]) if "gateway" in parts else (next(iter(by_id.values())) if len(by_id) == 1 else None)
            if g is None:
                continue
            g.stats.requests += 1
            meter = g.meters.get(parts["meter"])
            if meter is None:
                self.unknown += 1
                return
            try:
                items = jsonfmt.parse_payload(payload)
            except ValueError as exc:
                self.rejected += 1
                g.stats.failed(QualityReason.BAD_FRAME, f"{topic[:120]}: {exc}")
                meter.stats.failed(QualityReason.BAD_FRAME, str(exc))
                return
            if not g.alive:
                self._gateway_up(g)
            now = self._now()
            c = g.config
            writes: list[TagWrite] = []
            for item in items:
                ts = now
                if c.timestamp_field is not None:
                    raw = jsonfmt.field_value(item, c.timestamp_field)
                    parsed = jsonfmt.parse_time(raw, c.timestamp_format) if raw is not None else None
                    if parsed is not None and parsed <= now + _AHEAD:
                        ts = parsed
                for point in meter.profile.points.values():
                    raw = jsonfmt.field_value(item, c.fields.get(point.name, point.metric))
                    if raw is None:
                        continue
                    value = _point_value(point.type, raw)
                    if value is None:
                        writes.append(TagWrite(meter.tags[point.name], None, Quality.BAD, QualityReason.OUT_OF_RANGE,
                                               f"{point.name}: {str(raw)[:40]!r} is not a {point.type}", ts))
                    else:
                        writes.append(TagWrite(meter.tags[point.name], value, Quality.GOOD, QualityReason.NONE, "", ts))
            self._publish(meter, writes, now)
            return

    # -- health ------------------------------------------------------------------------------
    def _publish(self, meter: _Meter, writes: list[TagWrite], now: datetime) -> None:
        meter.stats.polls += 1
        meter.stats.last_poll_at = now
        meter.stats.last_ok_at = now
        if not meter.alive:
            meter.alive = True
            meter.stats.state = "online"
            writes.append(TagWrite(meter.comm_tag, True, source_ts=now))
        self.updates += len(writes)
        self.tagdb.write_many(writes, keep_newest=True)

    def _gateway_up(self, g: _Gateway) -> None:
        if not g.alive:
            log.info("gateway alive", extra={"link": g.name})
        g.alive = True
        g.stats.state = "up"
        g.stats.last_ok_at = self._now()
        self.tagdb.write(link_tag(g.name, "comm_ok"), True)

    def gateway_down(self, g: _Gateway, detail: str) -> None:
        """The gateway died (or its broker is away): its meters bad, its link down."""
        now = self._now()
        if g.alive:
            log.warning("gateway dead", extra={"link": g.name, "error": detail})
        g.alive = False
        g.born = False
        g.stats.state = "down"
        g.stats.last_error, g.stats.last_error_at = detail, now
        g.stats.devices_offline = len(g.meters)
        self.tagdb.write(link_tag(g.name, "comm_ok"), False)
        for meter in g.meters.values():
            self._meter_down(meter, detail, now)

    def _meter_down(self, meter: _Meter, detail: str, now: datetime) -> None:
        meter.alive = False
        meter.stats.state = "offline"
        meter.stats.failed(QualityReason.COMM_FAILURE, detail)
        self.tagdb.set_quality(meter.tags.values(), Quality.BAD, QualityReason.COMM_FAILURE, detail, source_ts=now)
        self.tagdb.write(meter.comm_tag, False, source_ts=now)

    # -- supply commands (the command path's driver) -----------------------------------------
    def _meter(self, meter_id: str) -> _Meter:
        m = self.devices.get(meter_id)
        if m is None:
            raise LookupError(f"meter {meter_id!r} is not behind an MQTT gateway of this server")
        return m

    def supports_supply(self, meter: MeterRef) -> bool:
        m = self.devices.get(meter.id)
        return m is not None and bool(m.profile.commands)

    async def set_supply(self, meter: MeterRef, on: bool) -> None:
        """Send the profile's connect (``on``) or disconnect command to the meter's gateway."""
        m = self._meter(meter.id)
        command = m.profile.commands.get("connect" if on else "disconnect")
        if command is None:
            raise LookupError(f"meter {meter.id}: profile {m.profile.name} has no supply control")
        g = self.gateways[m.spec.link]
        if not g.alive:
            raise MqttFailure(f"gateway {g.name} is not alive")
        broker = self._broker_of[g.name]
        c = g.config
        now_ms = int(time.time() * 1000)
        if c.format == "sparkplug":
            payload = sparkplug.encode_payload(
                [sparkplug.Metric(command.metric, command.value, sparkplug.DataType.BOOLEAN, now_ms)], None, now_ms
            )
            await broker.publish(sparkplug.topic(c.group_id, "DCMD", c.edge_node_id, m.address), payload)
        else:
            if g.command is None:
                raise LookupError(f"link {g.name} has no command_topic")
            body = json.dumps({command.metric: command.value, "ts": now_ms}).encode()
            await broker.publish(g.command.format(gateway=c.gateway_id, meter=m.address), body)
        m.stats.requests += 1

    async def read_supply(self, meter: MeterRef) -> bool:
        """The supply state the gateway last reported (its data after a command is the read-back)."""
        m = self._meter(meter.id)
        name = m.profile.supply_point
        if name is None:
            raise LookupError(f"meter {meter.id}: profile {m.profile.name} has no supply control")
        value: TagValue = self.tagdb.read(m.tags[name])
        if not value.good:
            raise MqttFailure(f"{name} is {value.quality.name.lower()} ({value.reason.value})")
        return bool(value.value)

    # -- statistics --------------------------------------------------------------------------
    def link_stats(self) -> list[LinkStats]:
        out = []
        for g in self.gateways.values():
            snap = g.stats.snapshot()
            snap.devices_offline = sum(1 for m in g.meters.values() if not m.alive)
            out.append(snap)
        return out

    def device_stats(self, meter_id: str | None = None) -> list[DeviceStats]:
        if meter_id is not None:
            m = self.devices.get(meter_id)
            return [m.stats.snapshot()] if m is not None else []  # type: ignore[attr-defined]
        return [m.stats.snapshot() for m in self.devices.values()]  # type: ignore[attr-defined]

    def stats(self) -> dict[str, Any]:
        return {
            "gateways": {g.name: {"alive": g.alive, "seq_gaps": g.seq_gaps, "rebirths": g.rebirths} for g in self.gateways.values()},
            "updates": self.updates, "unknown": self.unknown, "rejected": self.rejected,
        }


def _point_value(kind: str, value: Any) -> bool | float | str | None:
    if value is None:
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        return None
    if kind == "string":
        return str(value)[:256] if isinstance(value, (str, int, float)) else None
    return jsonfmt.number(value)

