"""The simulator's Modbus server: one listening port per simulated gateway.

Hand-built on asyncio protocols (pymodbus 3.16's server drops some pipelined requests, see
LIMITS.md, and costs several times the CPU). ``framing="tcp"`` speaks Modbus TCP (MBAP) and
answers pipelined requests, each by its transaction id; ``framing="rtu"`` speaks RTU frames over
TCP like a transparent serial gateway and, like a bus, serves one request at a time in order.

Each unit id holds one meter, or several circuits of a multi-circuit meter. Faults are set per
unit: ``timeout`` (never answers), ``exception`` (an exception response), ``garbage`` (an
answer that does not decode: a malformed PDU in a valid MBAP frame, or a bad CRC on RTU) and
``slow`` (answers after ``delay_ms``). :meth:`ModbusSimServer.serve_fd` serves RTU frames on a
pseudo-terminal too, standing in for a serial bus behind a serial port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..frames import (
    FrameError,
    crc16,
    decode_mbap,
    decode_rtu_request,
    encode_mbap,
    encode_rtu,
    exception_pdu,
    registers_response_pdu,
)
from ..params import BlockError
from ..profile import PointSpec, Profile
from .model import SimMeter

__all__ = ["Fault", "FdTransport", "ModbusSimServer", "ServerStats", "SimUnit", "serve_on_fd"]

log = logging.getLogger(__name__)

FaultKind = Literal["none", "timeout", "exception", "garbage", "slow"]

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
GATEWAY_NO_RESPONSE = 0x0B


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = "none"
    exception_code: int = DEVICE_FAILURE
    delay_ms: int = 3000


class SimUnit:
    """A unit id on a port: one meter, or the circuits of a multi-circuit meter."""

    def __init__(self, unit_id: int, profile: Profile) -> None:
        self.unit_id = unit_id
        self.profile = profile
        self.meters: dict[int, SimMeter] = {}  # circuit (1 for single meters) -> meter
        self.fault = Fault()
        self._index: dict[int, list[tuple[int, int, PointSpec, int]]] = {}
        self._bounds: dict[int, tuple[int, int]] = {}
        self._rebuild()

    def attach(self, meter: SimMeter) -> None:
        if meter.profile.name != self.profile.name:
            raise ValueError(
                f"meter {meter.spec.id}: unit {self.unit_id} already serves profile {self.profile.name}, "
                f"not {meter.profile.name}"
            )
        circuit = meter.spec.circuit or 1
        other = self.meters.get(circuit)
        if other is not None and other.spec.id != meter.spec.id:
            raise ValueError(f"meter {meter.spec.id}: unit {self.unit_id} circuit {circuit} is already {other.spec.id}")
        self.meters[circuit] = meter

    def detach(self, meter_id: str) -> None:
        self.meters = {c: m for c, m in self.meters.items() if m.spec.id != meter_id}

    def _rebuild(self) -> None:
        # every register of every circuit the device has (also circuits without a meter: a
        # real multi-circuit meter answers for all of them)
        entries: dict[int, list[tuple[int, int, PointSpec, int]]] = {}
        for circuit in range(1, self.profile.circuits + 1):
            for p in self.profile.points.values():
                start = self.profile.address(p, circuit)
                entries.setdefault(p.fc, []).append((start, start + p.words, p, circuit))
        for fc, items in entries.items():
            items.sort(key=lambda e: e[0])
            self._bounds[fc] = (items[0][0], max(e[1] for e in items))
        self._index = entries

    def _block_at(self, address: int, count: int) -> tuple[SimMeter, str, int] | None:
        """The meter and parameter block holding registers ``address .. address+count-1``."""
        meter = self.meters.get(1)
        if meter is None:
            return None
        for name, block in self.profile.parameters.items():
            if block.address <= address and address + count <= block.address + block.words:
                return meter, name, address - block.address
        return None

    def read(self, fc: int, address: int, count: int, now: float) -> list[int] | int:
        """Registers ``address .. address+count-1`` of table ``fc``, or an exception code."""
        if fc not in (3, 4):
            return ILLEGAL_FUNCTION
        if not 1 <= count <= 125:
            return ILLEGAL_VALUE
        if fc == 3 and (found := self._block_at(address, count)) is not None:
            meter, name, offset = found
            return meter.read_block(name, now)[offset:offset + count]
        bounds = self._bounds.get(fc)
        end = address + count
        if bounds is None or address < bounds[0] or end > bounds[1]:
            return ILLEGAL_ADDRESS
        words = [0] * count
        for start, stop, point, circuit in self._index[fc]:
            if stop <= address:
                continue
            if start >= end:
                break
            meter = self.meters.get(circuit)
            if meter is None:
                continue
            meter.advance(now)
            encoded = point.encode(meter.value(point, now))
            for i, w in enumerate(encoded):
                j = start + i - address
                if 0 <= j < count:
                    words[j] = w
        return words

    def write(self, address: int, values: list[int], now: float) -> int | None:
        """Apply a write; None when accepted, else an exception code."""
        found = self._block_at(address, len(values))
        if found is not None:
            meter, name, offset = found
            if offset != 0 or len(values) != self.profile.parameters[name].words:
                return ILLEGAL_ADDRESS  # a block is written whole
            if meter.refuse_writes:
                return DEVICE_FAILURE
            try:
                meter.write_block(name, values, now)
            except BlockError:
                return ILLEGAL_VALUE
            return None
        for circuit, meter in self.meters.items():
            for cmd in self.profile.commands.values():
                if self.profile.address(cmd, circuit) != address:
                    continue
                for candidate in self.profile.commands.values():
                    if self.profile.address(candidate, circuit) == address and tuple(values) == candidate.values:
                        meter.switch(candidate.kind == "connect", now)
                        return None
                return ILLEGAL_VALUE
        return ILLEGAL_ADDRESS


@dataclass
class ServerStats:
    requests: int = 0
    responses: int = 0
    exceptions: int = 0
    dropped: int = 0
    garbage: int = 0
    bad_frames: int = 0
    connections: int = 0
    open_connections: int = 0
    max_pending: int = 0  # most requests of one connection received and not yet answered
    pending: int = 0  # received and not yet answered, all connections of the port
    max_pending_port: int = 0  # the most of those at once
    by_unit: Counter[int] = field(default_factory=Counter)
    by_unit_fc: Counter[tuple[int, int]] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "responses": self.responses, "exceptions": self.exceptions,
            "dropped": self.dropped, "garbage": self.garbage, "bad_frames": self.bad_frames,
            "connections": self.connections, "open_connections": self.open_connections,
            "max_pending": self.max_pending, "max_pending_port": self.max_pending_port,
            "by_unit": {str(u): n for u, n in sorted(self.by_unit.items())},
            "by_unit_fc": {f"{u}/{fc}": n for (u, fc), n in sorted(self.by_unit_fc.items())},
        }


@dataclass(frozen=True, slots=True)
class _Reply:
    pdu: bytes
    delay: float = 0.0
    garbage: bool = False


class ModbusSimServer:
    """Serves the units of one simulated gateway on ``host:port`` (0 binds a free port)."""

    def __init__(
        self,
        name: str,
        clock: Callable[[], float],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        framing: Literal["tcp", "rtu"] = "tcp",
    ) -> None:
        self.name = name
        self.clock = clock
        self.host = host
        self.port = port
        self.framing = framing
        self.units: dict[int, SimUnit] = {}
        self.stats = ServerStats()
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        factory = _TcpConnection if self.framing == "tcp" else _RtuConnection
        self._server = await loop.create_server(lambda: factory(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None

    def serve_fd(self, fd: int) -> Callable[[], None]:
        """Serve RTU frames on a file descriptor (the master side of a pseudo-terminal stands in
        for a serial bus). Returns the function that stops serving it."""
        return serve_on_fd(fd, _RtuConnection(self))

    def unit_for(self, unit_id: int, profile: Profile) -> SimUnit:
        unit = self.units.get(unit_id)
        if unit is None:
            unit = self.units[unit_id] = SimUnit(unit_id, profile)
        return unit

    # -- request handling (shared by both framings) ----------------------------------------------
    def handle(self, unit_id: int, pdu: bytes) -> _Reply | None:
        """The reply to one request PDU, or None when the device stays silent."""
        stats = self.stats
        stats.requests += 1
        fc = pdu[0] if pdu else 0
        stats.by_unit[unit_id] += 1
        stats.by_unit_fc[(unit_id, fc)] += 1
        unit = self.units.get(unit_id)
        if unit is None or not unit.meters:
            if self.framing == "tcp":  # the gateway answers for a device that does not
                stats.exceptions += 1
                return _Reply(exception_pdu(fc, GATEWAY_NO_RESPONSE))
            stats.dropped += 1
            return None
        fault = unit.fault
        if fault.kind == "timeout":
            stats.dropped += 1
            return None
        if fault.kind == "exception":
            stats.exceptions += 1
            return _Reply(exception_pdu(fc, fault.exception_code))
        reply = self._execute(unit, pdu)
        if fault.kind == "garbage":
            stats.garbage += 1
            return _Reply(reply.pdu, garbage=True)  # each framing garbles it its own way
        if fault.kind == "slow":
            return _Reply(reply.pdu, delay=fault.delay_ms / 1000)
        return reply

    def _execute(self, unit: SimUnit, pdu: bytes) -> _Reply:
        fc = pdu[0]
        now = self.clock()
        try:
            if fc in (3, 4):
                address, count = struct.unpack_from(">HH", pdu, 1)
                result = unit.read(fc, address, count, now)
                if isinstance(result, int):
                    self.stats.exceptions += 1
                    return _Reply(exception_pdu(fc, result))
                return _Reply(registers_response_pdu(fc, result))
            if fc == 6:
                address, value = struct.unpack_from(">HH", pdu, 1)
                code = unit.write(address, [value], now)
                if code is not None:
                    self.stats.exceptions += 1
                    return _Reply(exception_pdu(fc, code))
                return _Reply(pdu[:5])
            if fc == 16:
                address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
                if nbytes != 2 * count or len(pdu) != 6 + nbytes:
                    self.stats.exceptions += 1
                    return _Reply(exception_pdu(fc, ILLEGAL_VALUE))
                values = list(struct.unpack_from(f">{count}H", pdu, 6))
                code = unit.write(address, values, now)
                if code is not None:
                    self.stats.exceptions += 1
                    return _Reply(exception_pdu(fc, code))
                return _Reply(pdu[:5])
        except struct.error:
            self.stats.exceptions += 1
            return _Reply(exception_pdu(fc, ILLEGAL_VALUE))
        self.stats.exceptions += 1
        return _Reply(exception_pdu(fc, ILLEGAL_FUNCTION))


def _garble(pdu: bytes) -> bytes:
    """A reply that cannot be decoded: the function code is kept, the byte count claims more
    data than follows (what a truncated or corrupted answer looks like)."""
    fc = pdu[0] & 0x7F
    return bytes((fc, 250)) + bytes(range(7, 7 + max(2, len(pdu) - 2)))


class FdTransport:
    """The little of a transport that a connection needs, on a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            os.write(self.fd, data)  # a pty takes a Modbus frame whole

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _Connection(asyncio.Protocol):
    def __init__(self, server: ModbusSimServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending = 0
        self.timers: set[asyncio.TimerHandle] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a socket's, or an FdTransport
        self.server._connections.add(self)
        self.server.stats.connections += 1
        self.server.stats.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.server.stats.pending -= self.pending  # what will never be answered now
        self.pending = 0
        if self in self.server._connections:
            self.server._connections.discard(self)
            self.server.stats.open_connections -= 1
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _received(self) -> None:
        stats = self.server.stats
        self.pending += 1
        stats.pending += 1
        if self.pending > stats.max_pending:
            stats.max_pending = self.pending
        if stats.pending > stats.max_pending_port:
            stats.max_pending_port = stats.pending

    def _done(self) -> None:
        self.pending -= 1
        self.server.stats.pending -= 1

    def _send(self, frame: bytes | None) -> None:
        self._done()
        if frame is not None and self.transport is not None and not self.transport.is_closing():
            self.server.stats.responses += 1
            self.transport.write(frame)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.timers.discard(handle)
            fn()

        handle = loop.call_later(delay, fire)
        self.timers.add(handle)


class _TcpConnection(_Connection):
    """Modbus TCP: every complete request in the buffer is answered (pipelining)."""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames, used = decode_mbap(self.buffer)
        except FrameError as exc:
            self.server.stats.bad_frames += 1
            log.info("simulator closes a connection", extra={"port": self.server.port, "error": str(exc)})
            self.close()
            return
        del self.buffer[:used]
        out = []
        for frame in frames:
            self._received()
            reply = self.server.handle(frame.unit, frame.pdu)
            if reply is None:
                self._send(None)
                continue
            packet = encode_mbap(frame.tid, frame.unit, _garble(reply.pdu) if reply.garbage else reply.pdu)
            if reply.delay:
                self._later(reply.delay, lambda p=packet: self._send(p))  # type: ignore[misc]
            else:
                self._done()
                self.server.stats.responses += 1
                out.append(packet)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class _RtuConnection(_Connection):
    """RTU over TCP: one request at a time, answered in order, like a serial bus."""

    def __init__(self, server: ModbusSimServer) -> None:
        super().__init__(server)
        self.queue: list[tuple[int, bytes, bool]] = []
        self.busy = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames, used = decode_rtu_request(self.buffer)
        except FrameError as exc:
            self.server.stats.bad_frames += 1
            log.info("simulator drops an unframeable RTU request", extra={"port": self.server.port, "error": str(exc)})
            self.buffer.clear()
            return
        del self.buffer[:used]
        for frame in frames:
            self._received()
            self.queue.append((frame.unit, frame.pdu, frame.crc_ok))
        self._next()

    def _next(self) -> None:
        while not self.busy and self.queue:
            unit, pdu, crc_ok = self.queue.pop(0)
            if not crc_ok:
                self.server.stats.bad_frames += 1
                self._send(None)  # a device ignores a frame with a bad CRC
                continue
            reply = self.server.handle(unit, pdu)
            if reply is None:
                self._send(None)
                continue
            frame = encode_rtu(unit, reply.pdu)
            if reply.garbage:
                bad = (crc16(frame[:-2]) ^ 0x5A5A).to_bytes(2, "little")
                frame = frame[:-2] + bad
            if reply.delay:
                self.busy = True

                def finish(f: bytes = frame) -> None:
                    self.busy = False
                    self._send(f)
                    self._next()

                self._later(reply.delay, finish)
                return
            self._send(frame)


def serve_on_fd(fd: int, conn: asyncio.Protocol) -> Callable[[], None]:
    """Feed what arrives on ``fd`` to the protocol ``conn`` (its answers go back on ``fd``), as a
    simulator serves a serial bus on the master side of a pseudo-terminal. Returns the function
    that stops serving it."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    transport = FdTransport(fd)
    conn.connection_made(transport)  # type: ignore[arg-type]

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # the other side closed: nothing to serve until it opens again
        if data:
            conn.data_received(data)

    loop.add_reader(fd, readable)

    def detach() -> None:
        loop.remove_reader(fd)
        transport.close()
        conn.connection_lost(None)

    return detach
