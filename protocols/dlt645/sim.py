"""The simulator's DL/T 645 side: one port per simulated bus (a TCP transparent gateway), each
meter at its 12-digit address, answering reads by data identifier and relay control.

Like a bus, a port serves one request at a time, in order. A meter alone on its port also answers
the wildcard address read (C = 0x13); with several meters on a port nobody answers it (their
answers would collide on a real bus). Faults are set per meter, as on the Modbus side:
``timeout`` (silent), ``exception`` (an exception answer whose error byte is ``exception_code``),
``garbage`` (a frame with a wrong checksum) and ``slow`` (answers after ``delay_ms``). Relay
control checks the password when the simulator is given one. :meth:`Dlt645SimServer.serve_fd`
serves the same bus on a pseudo-terminal too, standing in for meters behind a serial port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..modbus.sim.model import SimMeter
from ..modbus.sim.server import Fault, ServerStats, serve_on_fd
from .frames import CONTROL, READ, READ_ADDRESS, WILDCARD, Frame, FrameError, decode_frames, encode_frame

__all__ = ["Dlt645SimServer", "DltSimUnit"]

log = logging.getLogger(__name__)

NO_DATA = 0x02  # error bit 1: no data requested
UNAUTHORISED = 0x04  # error bit 2: password wrong or not authorised
_TRIP, _CLOSE_ALLOWED, _CLOSE = 0x1A, 0x1B, 0x1C


class DltSimUnit:
    """One meter at its address, with its fault."""

    def __init__(self, address: str, meter: SimMeter) -> None:
        self.address = address
        self.meter = meter
        self.fault = Fault()
        self.meters = {1: meter}


class Dlt645SimServer:
    """Serves the meters of one simulated DL/T 645 bus on ``host:port`` (0 binds a free port)."""

    framing = "dlt645"

    def __init__(self, name: str, clock: Callable[[], float], *, host: str = "127.0.0.1", port: int = 0,
                 password: str | None = None) -> None:
        self.name = name
        self.clock = clock
        self.host = host
        self.port = port
        self.password = password
        self.units: dict[str, DltSimUnit] = {}
        self.stats = ServerStats()
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port, reuse_address=True)
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
        """Serve this bus on a file descriptor (the master side of a pseudo-terminal stands in for
        the RS-485 bus behind a serial port). Returns the function that stops serving it."""
        return serve_on_fd(fd, _Connection(self))

    def attach(self, address: str, meter: SimMeter) -> DltSimUnit:
        other = self.units.get(address)
        if other is not None and other.meter.spec.id != meter.spec.id:
            raise ValueError(f"meter {meter.spec.id}: address {address} on {self.name} is already {other.meter.spec.id}")
        unit = self.units[address] = DltSimUnit(address, meter)
        return unit

    def detach(self, meter_id: str) -> None:
        self.units = {a: u for a, u in self.units.items() if u.meter.spec.id != meter_id}

    # -- one request ----------------------------------------------------------------------------
    def handle(self, frame: Frame) -> tuple[bytes | None, float]:
        """The answer to one request (None: silence) and how long the meter takes."""
        stats = self.stats
        stats.requests += 1
        stats.by_unit_fc[(0, frame.control)] += 1
        if frame.address == WILDCARD:
            if frame.control == READ_ADDRESS and len(self.units) == 1:
                unit = next(iter(self.units.values()))
                return encode_frame(unit.address, 0x93, bytes.fromhex(unit.address)[::-1]), 0.0
            stats.dropped += 1
            return None, 0.0
        unit = self.units.get(frame.address)
        if unit is None:
            stats.dropped += 1  # not ours: a meter that is not there stays silent
            return None, 0.0
        fault = unit.fault
        if fault.kind == "timeout":
            stats.dropped += 1
            return None, 0.0
        if fault.kind == "exception":
            stats.exceptions += 1
            return encode_frame(unit.address, frame.control | 0xC0, bytes((fault.exception_code & 0xFF,))), 0.0
        answer = self._execute(unit, frame)
        if fault.kind == "garbage":
            stats.garbage += 1
            answer = answer[:-2] + bytes(((answer[-2] + 0x5A) & 0xFF, 0x16))  # a wrong checksum
        return answer, (fault.delay_ms / 1000 if fault.kind == "slow" else 0.0)

    def _execute(self, unit: DltSimUnit, frame: Frame) -> bytes:
        now = self.clock()
        meter = unit.meter
        if frame.control == READ and len(frame.data) >= 4:
            di = frame.data[:4][::-1].hex().upper()
            values = self._read(meter, di, now)
            if values is None:
                self.stats.exceptions += 1
                return encode_frame(unit.address, 0xD1, bytes((NO_DATA,)))
            return encode_frame(unit.address, 0x91, frame.data[:4] + values)
        if frame.control == CONTROL and len(frame.data) == 16:
            password = frame.data[0:1].hex() + frame.data[1:4][::-1].hex()
            if self.password is not None and password.upper() != self.password.upper():
                self.stats.exceptions += 1
                return encode_frame(unit.address, 0xDC, bytes((UNAUTHORISED,)))
            code = frame.data[8]
            if code == _TRIP:
                meter.switch(False, now)
            elif code in (_CLOSE, _CLOSE_ALLOWED):
                meter.switch(True, now)
            elif code not in (0x2A, 0x2B, 0x3A, 0x3B):
                self.stats.exceptions += 1
                return encode_frame(unit.address, 0xDC, bytes((0x01,)))
            return encode_frame(unit.address, 0x9C)
        self.stats.exceptions += 1
        return encode_frame(unit.address, frame.control | 0xC0, bytes((0x01,)))

    def _read(self, meter: SimMeter, di: str, now: float) -> bytes | None:
        profile: Any = meter.profile
        meter.advance(now)
        for block_di, names in profile.blocks.values():
            if block_di == di:
                return b"".join(bytes(profile.points[n].encode(meter.value(profile.points[n], now))) for n in names)
        for point in profile.points.values():
            if point.di == di:
                return bytes(point.encode(meter.value(point, now)))
        return None


class _Connection(asyncio.Protocol):
    """One client of the bus: requests answered one at a time, in order."""

    def __init__(self, server: Dlt645SimServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.queue: list[Frame | FrameError] = []
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)
        self.server.stats.connections += 1
        self.server.stats.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self in self.server._connections:
            self.server._connections.discard(self)
            self.server.stats.open_connections -= 1
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        frames, used = decode_frames(self.buffer)
        del self.buffer[:used]
        self.queue.extend(frames)
        self._next()

    def _next(self) -> None:
        while not self.busy and self.queue:
            item = self.queue.pop(0)
            if isinstance(item, FrameError):
                self.server.stats.bad_frames += 1  # a meter ignores a frame with a bad checksum
                continue
            answer, delay = self.server.handle(item)
            if answer is None:
                continue
            if delay:
                self.busy = True

                def finish(a: bytes = answer) -> None:
                    self.busy = False
                    self.timer = None
                    self._send(a)
                    self._next()

                self.timer = asyncio.get_running_loop().call_later(delay, finish)
                return
            self._send(answer)

    def _send(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.server.stats.responses += 1
            self.transport.write(answer)
