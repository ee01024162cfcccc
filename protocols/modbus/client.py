"""One client connection of a link, on pymodbus, with failures classified for tag quality.

pymodbus 3.16's async client serialises requests on a connection (one in flight), so a link
that allows N requests in flight opens N connections (an RTU bus: one). Two things are added
around it:

- *guarded framers*: an answer that cannot be decoded (a malformed PDU, a protocol id that is
  not Modbus, a bad CRC) fails the waiting request at once as ``BAD_FRAME`` and is dropped
  from the receive buffer, instead of raising inside the transport (which pymodbus reports
  as a fatal transport error and a closed connection) or jamming the buffer until a timeout;
- one exception type, :class:`ModbusFailure`, carrying the tag quality reason and a detail.

pymodbus's own logger is turned down to CRITICAL: it logs every timeout as an error, and the
poller logs changes of health itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerRTU, FramerSocket, FramerType
from pymodbus.pdu import DecodePDU, ExceptionResponse

from tags import QualityReason

from .config import LinkConfig

__all__ = ["EXCEPTION_NAMES", "ModbusConnection", "ModbusFailure"]

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


# exceptions a TCP gateway sends for the device behind it: not the device's answer, a comm failure
_GATEWAY_FAILURES = {10: QualityReason.COMM_FAILURE, 11: QualityReason.TIMEOUT}


class ModbusFailure(Exception):
    """A request that did not give a usable answer. ``reason`` is the tag quality reason."""

    def __init__(self, reason: QualityReason, detail: str, *, exception_code: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.exception_code = exception_code

    @property
    def device_answered(self) -> bool:
        """An exception response: the device is reachable, it refused the request."""
        return self.reason is QualityReason.DEVICE_EXCEPTION

    @property
    def retryable(self) -> bool:
        # 5 acknowledge / 6 busy: the device asks to be asked again
        return not self.device_answered or self.exception_code in (5, 6)


class _BadFrame(Exception):
    pass


class _Guard:
    """Mixed into pymodbus framers: report undecodable input to the waiting request."""

    on_bad_frame: Any = None

    def _bad(self, detail: str) -> None:
        if self.on_bad_frame is not None:
            self.on_bad_frame(detail)

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, Any]:
        try:
            return super().handleFrame(data, exp_devid, exp_tid)  # type: ignore[misc,no-any-return]
        except (ModbusIOException, ModbusException, ValueError, IndexError) as exc:
            self._bad(f"undecodable answer ({exc})")
            return len(data), None


class _GuardedSocketFramer(_Guard, FramerSocket):
    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        if len(data) >= 8:
            pid = int.from_bytes(data[2:4], "big")
            length = int.from_bytes(data[4:6], "big")
            if pid != 0 or not 2 <= length <= 254:
                self._bad(f"not a Modbus TCP frame (protocol id {pid}, length {length})")
                return len(data), 0, 0, self.EMPTY
        return super().decode(data)


class _GuardedRtuFramer(_Guard, FramerRTU):
    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, dev_id, tid, frame = super().decode(data)
        if used and not frame:
            self._bad("CRC error")
        return used, dev_id, tid, frame


def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ModbusConnection:
    """One connection of a link. Not safe for concurrent use: the link gives each worker its own."""

    def __init__(self, link: LinkConfig) -> None:
        _quiet_pymodbus()
        self.link = link
        rtu = link.kind != "tcp"
        common: dict[str, Any] = {"timeout": link.timeout_s, "retries": 0, "reconnect_delay": 0}
        if link.kind == "rtu":
            self.client: Any = AsyncModbusSerialClient(
                link.serial_port or "", framer=FramerType.RTU, baudrate=link.baudrate, **common
            )
        else:
            self.client = AsyncModbusTcpClient(
                link.host or "", port=link.port or 502, framer=FramerType.RTU if rtu else FramerType.SOCKET, **common
            )
        framer = (_GuardedRtuFramer if rtu else _GuardedSocketFramer)(DecodePDU(False))
        framer.on_bad_frame = self._on_bad_frame
        self.client.ctx.framer = framer
        # we decide when a connection is dead, not pymodbus's count of unanswered requests
        self.client.set_max_no_responses(1 << 30)
        self._waiting = False
        self.next_send = 0.0  # loop time before which the link's gap forbids the next request

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.link.timeout_s + 1):
                ok = await self.client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            self.client.close()
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"cannot connect to {self.endpoint}: {exc or type(exc).__name__}") from None
        if not ok:
            self.client.close()
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"cannot connect to {self.endpoint}")

    @property
    def endpoint(self) -> str:
        return self.link.serial_port or f"{self.link.host}:{self.link.port}"

    def close(self) -> None:
        self.client.close()

    def _on_bad_frame(self, detail: str) -> None:
        future = getattr(self.client.ctx, "response_future", None)
        if self._waiting and future is not None and not future.done():
            future.set_exception(_BadFrame(detail))

    async def read(self, unit: int, fc: int, address: int, count: int) -> list[int]:
        """Registers of table ``fc`` (3 holding, 4 input), or :class:`ModbusFailure`."""
        call = self.client.read_holding_registers if fc == 3 else self.client.read_input_registers
        response = await self._call(call, address, count=count, device_id=unit)
        registers = list(getattr(response, "registers", []) or [])
        if len(registers) != count:
            raise ModbusFailure(QualityReason.BAD_FRAME, f"asked for {count} registers, the answer holds {len(registers)}")
        return registers

    async def read_block(self, unit: int, block: Any) -> list[int]:
        """The registers of a planned block read (:class:`~protocols.modbus.plan.Block`)."""
        return await self.read(unit, block.fc, block.address, block.count)

    async def write(self, unit: int, fc: int, address: int, values: Sequence[int]) -> None:
        if fc == 6:
            await self._call(self.client.write_register, address, values[0], device_id=unit)
        else:
            await self._call(self.client.write_registers, address, list(values), device_id=unit)

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.client.connected:
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"not connected to {self.endpoint}")
        self._waiting = True
        try:
            # pymodbus times out after link.timeout_s; ours is a backstop
            async with asyncio.timeout(self.link.timeout_s * 2 + 1):
                response = await method(*args, **kwargs)
        except _BadFrame as exc:
            raise ModbusFailure(QualityReason.BAD_FRAME, str(exc)) from None
        except ConnectionException as exc:
            raise ModbusFailure(QualityReason.COMM_FAILURE, f"connection to {self.endpoint} lost: {exc}") from None
        except (TimeoutError, ModbusIOException):
            if not self.client.connected:
                raise ModbusFailure(QualityReason.COMM_FAILURE, f"connection to {self.endpoint} lost") from None
            raise ModbusFailure(QualityReason.TIMEOUT, f"no answer within {self.link.timeout_s:g} s") from None
        except ModbusException as exc:
            raise ModbusFailure(QualityReason.BAD_FRAME, f"undecodable answer ({exc})") from None
        finally:
            self._waiting = False
        if isinstance(response, ExceptionResponse) or response.isError():
            code = getattr(response, "exception_code", 0)
            name = EXCEPTION_NAMES.get(code, "unknown")
            if code in _GATEWAY_FAILURES:  # the gateway answered: the meter behind it did not
                raise ModbusFailure(_GATEWAY_FAILURES[code], f"gateway: exception {code} ({name})", exception_code=code)
            raise ModbusFailure(QualityReason.DEVICE_EXCEPTION, f"exception {code} ({name})", exception_code=code)
        return response
