"""One connection of a DL/T 645 link: a TCP transparent gateway or a serial port.

Requests go one at a time (the link gives each bus one worker); an answer is matched to its
request by the meter's address and the function, a frame with a wrong checksum fails the request
at once as ``BAD_FRAME``, an exception answer (``C | 0x40``) as ``DEVICE_EXCEPTION`` naming the
error bits. Failures are :class:`~protocols.modbus.client.ModbusFailure` (the poller's one failure
type, carrying the tag quality reason).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import termios
from typing import Any

from tags import QualityReason

from ..modbus.client import ModbusFailure
from .config import Dlt645LinkConfig
from .frames import CONTROL, READ, READ_ADDRESS, WILDCARD, Frame, FrameError, decode_frames, di_bytes, encode_frame, error_text
from .profile import DltBlock

__all__ = ["Dlt645Connection", "relay_data"]

_BAUDS = {1200: termios.B1200, 2400: termios.B2400, 4800: termios.B4800, 9600: termios.B9600, 19200: termios.B19200}


def relay_data(code: int, password: str, operator: str, valid_until: dt.datetime) -> bytes:
    """The data of a relay control request (before the +0x33 offset): PA P0 P1 P2, C0..C3, N1,
    N2 (0), N3..N8 = valid until (ss mm hh DD MM YY, BCD)."""
    if len(password) != 8 or len(operator) != 8:
        raise ValueError("password and operator code are 8 hex digits each (password: level then 6 digits)")
    try:
        pw = bytes.fromhex(password)
        op = bytes.fromhex(operator)
    except ValueError:
        raise ValueError("password and operator code are 8 hex digits each") from None
    t = valid_until
    stamp = bytes(int(f"{x:02d}", 16) for x in (t.second, t.minute, t.hour, t.day, t.month, t.year % 100))
    return pw[:1] + pw[1:][::-1] + op[::-1] + bytes((code, 0x00)) + stamp


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.lost = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.arrived.set()

    def eof_received(self) -> bool:
        self.lost = True
        self.arrived.set()
        return False


class Dlt645Connection:
    """The one connection of a DL/T 645 bus."""

    def __init__(self, link: Dlt645LinkConfig) -> None:
        self.link = link
        self.next_send = 0.0  # loop time before which the link's gap forbids the next request
        self._rx: _Receiver | None = None
        self._write: Any = None
        self._closers: list[Any] = []

    @property
    def endpoint(self) -> str:
        return self.link.serial_port or f"{self.link.host}:{self.link.port}"

    @property
    def connected(self) -> bool:
        return self._rx is not None and not self._rx.lost

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        rx = _Receiver()
        try:
            async with asyncio.timeout(self.link.timeout_s + 1):
                if self.link.transport == "tcp":
                    transport, _ = await loop.create_connection(lambda: rx, self.link.host, self.link.port)
                    self._write = transport.write
                    self._closers = [transport.close]
                else:
                    await self._open_serial(loop, rx)
        except (OSError, TimeoutError, termios.error) as exc:
            self.close()
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"cannot connect to {self.endpoint}: {exc or type(exc).__name__}") from None
        self._rx = rx

    async def _open_serial(self, loop: asyncio.AbstractEventLoop, rx: _Receiver) -> None:
        fd = os.open(self.link.serial_port or "", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            attrs = termios.tcgetattr(fd)
            speed = _BAUDS.get(self.link.baudrate, termios.B2400)
            attrs[0] = termios.IGNPAR  # iflag
            attrs[1] = 0  # oflag: raw
            attrs[2] = termios.CS8 | termios.PARENB | termios.CREAD | termios.CLOCAL  # 8E1
            attrs[3] = 0  # lflag: raw
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # a pseudo-terminal (tests) takes no line settings; the bytes pass all the same
        reader = os.fdopen(fd, "rb", buffering=0, closefd=True)
        writer = os.fdopen(os.dup(fd), "wb", buffering=0, closefd=True)
        read_transport, _ = await loop.connect_read_pipe(lambda: rx, reader)
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, writer)
        self._write = write_transport.write
        self._closers = [read_transport.close, write_transport.close]

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers = []
        if self._rx is not None:
            self._rx.lost = True
        self._rx = None

    async def request(self, address: str, control: int, data: bytes = b"", *, expect: bytes = b"") -> Frame:
        """Send one request and wait for its answer (an exception answer raises). A normal
        answer whose data does not start with ``expect`` (a read's data identifier) is a late
        answer to an earlier request that timed out, not this one's: it is skipped."""
        rx = self._rx
        if rx is None or rx.lost:
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"not connected to {self.endpoint}")
        rx.buffer.clear()  # what came late after an earlier timeout is not this answer
        rx.arrived.clear()
        self._write(encode_frame(address, control, data, preamble=self.link.preamble))
        try:
            async with asyncio.timeout(self.link.timeout_s):
                while True:
                    await rx.arrived.wait()
                    rx.arrived.clear()
                    if rx.lost:
                        self.close()
                        raise ModbusFailure(QualityReason.COMM_FAILURE, f"connection to {self.endpoint} lost")
                    frames, used = decode_frames(rx.buffer)
                    del rx.buffer[:used]
                    for frame in frames:
                        if isinstance(frame, FrameError):
                            raise ModbusFailure(QualityReason.BAD_FRAME, f"undecodable answer ({frame})")
                        if not frame.is_answer or frame.function != control:
                            continue  # an echo of a request on a 2-wire bus, or a stray frame
                        if address != WILDCARD and frame.address != address:
                            continue
                        if not frame.is_exception and not frame.data.startswith(expect):
                            continue  # a slow meter's answer to the request before, after its timeout
                        if frame.is_exception:
                            code = frame.data[0] if frame.data else 0
                            raise ModbusFailure(
                                QualityReason.DEVICE_EXCEPTION, f"exception answer: {error_text(code)}", exception_code=code
                            )
                        return frame
        except TimeoutError:
            raise ModbusFailure(QualityReason.TIMEOUT, f"no answer within {self.link.timeout_s:g} s") from None

    async def read_block(self, address: str, block: DltBlock) -> bytes:
        """The value bytes of one data identifier (the answer's DI checked and removed)."""
        di = di_bytes(block.di)
        frame = await self.request(address, READ, di, expect=di)
        return frame.data[4:]

    async def read_address(self) -> str:
        """The address of the one meter on the bus (the wildcard read, C = 0x13)."""
        frame = await self.request(WILDCARD, READ_ADDRESS)
        return frame.address

    async def relay(self, address: str, code: int, password: str, operator: str) -> None:
        """Relay control (C = 0x1C): ``code`` 1A trip, 1B close allowed, 1C close, 3A/3B keep on."""
        until = dt.datetime.now() + dt.timedelta(minutes=10)  # the meter's local clock
        try:
            data = relay_data(code, password, operator, until)
        except ValueError as exc:
            raise ModbusFailure(QualityReason.CONFIG_ERROR, str(exc)) from None
        await self.request(address, CONTROL, data)
