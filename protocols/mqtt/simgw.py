"""A simulated MQTT gateway: meters published as a Sparkplug B edge node (or as JSON topics), with
store-and-forward, for the demo, the tests and the benchmark.

It speaks MQTT 3.1.1 itself over an asyncio connection (QoS 0, a last will, keep-alive pings), so
that it can also die the way a real gateway does: :meth:`SimGateway.kill` drops the TCP
connection without a DISCONNECT, and the broker publishes its last will (NDEATH, or ``offline``
on the status topic). While it is away it buffers its meters' readings and replays them after
the next birth, marked historical, with their own times. It follows DCMD relay commands (and
JSON commands) and reports the new state in its next data message, as a real one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import sparkplug
from .sparkplug import DataType, Metric

__all__ = ["MqttWire", "SimDevice", "SimGateway"]

log = logging.getLogger(__name__)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


class MqttWire:
    """A minimal MQTT 3.1.1 client connection (QoS 0 publish, QoS 0 subscribe, will, pings)."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._packet_id = 0

    async def connect(
        self, host: str, port: int, client_id: str, *, keepalive: int = 30,
        will: tuple[str, bytes, bool] | None = None, username: str | None = None, password: str | None = None,
    ) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        flags = 0x02  # clean session
        payload = _str(client_id)
        if will is not None:
            flags |= 0x04 | (0x20 if will[2] else 0)
            payload += _str(will[0]) + _str(will[1])
        if username is not None:
            flags |= 0x80
            payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
        self.writer.write(b"\x10" + _varint(len(body)) + body)
        async with asyncio.timeout(10):
            kind, data = await self._read_packet()
        if kind != 0x20 or len(data) < 2 or data[1] != 0:
            raise ConnectionError(f"broker refused the connection (CONNACK {data.hex()})")
        self._tasks = [
            asyncio.get_running_loop().create_task(self._ping(keepalive), name=f"mqtt-sim-ping-{client_id}"),
            asyncio.get_running_loop().create_task(self._receive(), name=f"mqtt-sim-rx-{client_id}"),
        ]

    async def _read_packet(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readexactly(1)
        length, shift = 0, 0
        while True:
            b = (await self.reader.readexactly(1))[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return head[0] & 0xF0, await self.reader.readexactly(length)

    async def _receive(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, data = await self._read_packet()
                if kind == 0x30:
                    n = struct.unpack("!H", data[:2])[0]
                    self.messages.put_nowait((data[2:2 + n].decode(), data[2 + n:]))

    async def _ping(self, keepalive: int) -> None:
        while True:
            await asyncio.sleep(keepalive / 2)
            if self.writer is not None:
                self.writer.write(b"\xc0\x00")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.writer is None:
            raise ConnectionError("not connected")
        body = _str(topic) + payload
        self.writer.write(bytes([0x30 | (1 if retain else 0)]) + _varint(len(body)) + body)

    async def drain(self) -> None:
        if self.writer is not None:
            await self.writer.drain()

    def subscribe(self, topic_filter: str) -> None:
        assert self.writer is not None
        self._packet_id = self._packet_id % 65535 + 1
        body = struct.pack("!H", self._packet_id) + _str(topic_filter) + b"\x00"
        self.writer.write(b"\x82" + _varint(len(body)) + body)

    async def close(self, *, clean: bool = True) -> None:
        """End the connection: with DISCONNECT (no last will), or by dropping it (the will goes out)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        w, self.writer = self.writer, None
        if w is None:
            return
        if clean:
            w.write(b"\xe0\x00")
            with contextlib.suppress(ConnectionError):
                await w.drain()
            w.close()
        else:
            w.transport.abort()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()


@dataclass
class SimDevice:
    """A meter behind the gateway: its metrics' current values and their data types."""

    device_id: str
    values: dict[str, bool | float | str] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)

    def datatype(self, name: str) -> int:
        return self.types.get(name) or (DataType.BOOLEAN if isinstance(self.values[name], bool) else DataType.DOUBLE)


class SimGateway:
    """A gateway publishing its devices as a Sparkplug B edge node (``format="sparkplug"``) or on
    JSON topics (``format="json"``: ``meters/{gateway}/{meter}/data``, status and command
    topics as in the JSON link's defaults)."""

    def __init__(
        self, host: str, port: int, edge_node: str, devices: list[SimDevice], *, group: str = "site",
        format: str = "sparkplug", keepalive: int = 5, aliases: bool = True,
        username: str | None = None, password: str | None = None, clock: Callable[[], int] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.clock = clock or _ms  # epoch ms of births, deaths and readings without a time
        self.group, self.edge_node, self.format = group, edge_node, format
        self.devices = {d.device_id: d for d in devices}
        self.keepalive = keepalive
        self.use_aliases = aliases
        self.username, self.password = username, password
        self.wire: MqttWire | None = None
        self.bd_seq = -1
        self.seq = 0
        self.online = False
        self.buffer: list[tuple[str, dict[str, bool | float | str], int]] = []  # (device, values, ms)
        self.rebirths = 0
        self.published = 0  # births and data messages sent
        self.commands: list[tuple[str, str, bool | float | str]] = []  # (device, metric, value)
        self._aliases: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None

    # -- life -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, be born, then replay what was buffered while away."""
        self.bd_seq = (self.bd_seq + 1) % 256
        wire = MqttWire()
        if self.format == "sparkplug":
            death = sparkplug.encode_payload([Metric(sparkplug.BDSEQ, self.bd_seq, DataType.UINT64)], None, self.clock())
            will = (sparkplug.topic(self.group, "NDEATH", self.edge_node), death, False)
        else:
            will = (f"meters/{self.edge_node}/status", b"offline", True)
        await wire.connect(self.host, self.port, f"sim-{self.group}-{self.edge_node}", keepalive=self.keepalive,
                           will=will, username=self.username, password=self.password)
        self.wire = wire
        if self.format == "sparkplug":
            wire.subscribe(sparkplug.topic(self.group, "NCMD", self.edge_node))
            wire.subscribe(sparkplug.topic(self.group, "DCMD", self.edge_node, "+"))
            self.birth()
        else:
            wire.subscribe(f"meters/{self.edge_node}/+/cmd")
            wire.publish(f"meters/{self.edge_node}/status", b"online", retain=True)
        self.online = True
        self._task = asyncio.get_running_loop().create_task(self._commands(wire), name=f"mqtt-sim-{self.edge_node}")
        self.replay()
        await wire.drain()

    def birth(self) -> None:
        """NBIRTH (seq 0, bdSeq, rebirth control) and a DBIRTH per device with every metric."""
        assert self.wire is not None
        now = self.clock()
        self.seq = 0
        self._aliases = {}
        node = [Metric(sparkplug.BDSEQ, self.bd_seq, DataType.UINT64), Metric(sparkplug.REBIRTH, False, DataType.BOOLEAN)]
        self.wire.publish(sparkplug.topic(self.group, "NBIRTH", self.edge_node), sparkplug.encode_payload(node, 0, now))
        self.published += 1 + len(self.devices)
        for dev in self.devices.values():
            metrics = []
            for name, value in dev.values.items():
                alias = None
                if self.use_aliases:
                    alias = self._aliases[(dev.device_id, name)] = len(self._aliases) + 1
                metrics.append(Metric(name, value, dev.datatype(name), now, alias))
            self.wire.publish(sparkplug.topic(self.group, "DBIRTH", self.edge_node, dev.device_id),
                              sparkplug.encode_payload(metrics, self._next_seq(), now))

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def skip_seq(self) -> None:
        """Lose a message (a gap in ``seq``) as a flaky uplink would."""
        self._next_seq()

    def device_death(self, device: str) -> None:
        """DDEATH of one device (its meter stopped answering the gateway; the node lives on)."""
        assert self.wire is not None
        self.published += 1
        self.wire.publish(sparkplug.topic(self.group, "DDEATH", self.edge_node, device),
                          sparkplug.encode_payload([], self._next_seq(), self.clock()))

    async def kill(self) -> None:
        """The gateway's connection dies (no DISCONNECT: the broker publishes its last will)."""
        self.online = False
        await self._stop(clean=False)

    async def stop(self) -> None:
        self.online = False
        await self._stop(clean=True)

    async def _stop(self, *, clean: bool) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.wire is not None:
            await self.wire.close(clean=clean)
            self.wire = None

    # -- data -------------------------------------------------------------------------------
    def read(self, device: str, values: Mapping[str, bool | float | str], ts_ms: int | None = None) -> None:
        """The meter's new values, published now (or buffered while the gateway is away)."""
        ts = ts_ms if ts_ms is not None else self.clock()
        self.devices[device].values.update(values)
        if not self.online:
            self.buffer.append((device, dict(values), ts))
            return
        self._data(device, values, ts, historical=False)

    def replay(self) -> None:
        buffered, self.buffer = self.buffer, []
        for device, values, ts in buffered:
            self._data(device, values, ts, historical=True)

    def _data(self, device: str, values: Mapping[str, bool | float | str], ts: int, *, historical: bool) -> None:
        assert self.wire is not None
        self.published += 1
        if self.format == "json":
            self.wire.publish(f"meters/{self.edge_node}/{device}/data", json.dumps({"ts": ts, **values}).encode())
            return
        dev = self.devices[device]
        metrics = [
            Metric(None if (device, k) in self._aliases else k, v, dev.datatype(k), ts, self._aliases.get((device, k)), historical)
            for k, v in values.items()
        ]
        self.wire.publish(sparkplug.topic(self.group, "DDATA", self.edge_node, device),
                          sparkplug.encode_payload(metrics, self._next_seq(), ts))

    async def flush(self) -> None:
        if self.wire is not None:
            await self.wire.drain()

    # -- commands ---------------------------------------------------------------------------
    async def _commands(self, wire: MqttWire) -> None:
        while True:
            topic, payload = await wire.messages.get()
            if self.format == "json":
                device = topic.split("/")[2]
                with contextlib.suppress(ValueError, AttributeError):
                    for k, v in json.loads(payload).items():
                        if k != "ts" and device in self.devices and k in self.devices[device].values:
                            self.commands.append((device, k, v))
                            self.read(device, {k: v})
                continue
            t = sparkplug.parse_topic(topic)
            if t is None:
                continue
            p = sparkplug.Payload.FromString(payload)
            if t.type == "NCMD":
                if any(m.name == sparkplug.REBIRTH and sparkplug.metric_value(m) for m in p.metrics):
                    self.rebirths += 1
                    self.birth()
            elif t.type == "DCMD" and t.device in self.devices:
                for m in p.metrics:
                    value = sparkplug.metric_value(m)
                    if m.name in self.devices[t.device].values and value is not None:
                        self.commands.append((t.device, m.name, value))
                        self.read(t.device, {m.name: value})
            await wire.drain()


def _ms() -> int:
    return int(time.time() * 1000)
