"""Modbus application data units: the MBAP header of Modbus TCP and the CRC of RTU framing.

Used by the simulator's server (and by ``bench/modbus`` for a lean client to compare with
pymodbus). Both decoders are incremental: feed them what arrived, take the complete frames,
keep the rest for the next read, so pipelined requests on one connection are all seen.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FrameError",
    "MbapFrame",
    "RtuFrame",
    "crc16",
    "decode_mbap",
    "decode_rtu_request",
    "decode_rtu_response",
    "encode_mbap",
    "encode_rtu",
    "exception_pdu",
    "read_registers_pdu",
    "registers_response_pdu",
    "write_multiple_pdu",
    "write_single_pdu",
]

MAX_PDU = 253
_MBAP = struct.Struct(">HHHB")


class FrameError(ValueError):
    """Bytes that cannot be a Modbus frame: the stream has lost its framing."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class MbapFrame:
    tid: int
    unit: int
    pdu: bytes


@dataclass(frozen=True, slots=True)
class RtuFrame:
    unit: int
    pdu: bytes
    crc_ok: bool = True


def encode_mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return _MBAP.pack(tid & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


def decode_mbap(buffer: bytes | bytearray) -> tuple[list[MbapFrame], int]:
    """Complete frames at the start of ``buffer`` and how many bytes they used.

    Raises :class:`FrameError` for a header that cannot be Modbus (protocol id not 0, length
    out of range): the connection should be closed.
    """
    frames = []
    pos = 0
    n = len(buffer)
    while n - pos >= 7:
        tid, pid, length, unit = _MBAP.unpack_from(buffer, pos)
        if pid != 0:
            raise FrameError(f"protocol id {pid} (Modbus is 0)")
        if not 2 <= length <= MAX_PDU + 1:
            raise FrameError(f"MBAP length {length} out of range")
        end = pos + 6 + length
        if end > n:
            break
        frames.append(MbapFrame(tid, unit, bytes(buffer[pos + 7:end])))
        pos = end
    return frames, pos


def encode_rtu(unit: int, pdu: bytes) -> bytes:
    body = bytes((unit,)) + pdu
    return body + struct.pack("<H", crc16(body))


def _rtu_request_length(buffer: bytes | bytearray, pos: int) -> int | None:
    """Length of the request starting at ``pos``, None when more bytes are needed."""
    if len(buffer) - pos < 2:
        return None
    fc = buffer[pos + 1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        if len(buffer) - pos < 7:
            return None
        return 9 + buffer[pos + 6]
    raise FrameError(f"cannot frame an RTU request with function code {fc}")


def decode_rtu_request(buffer: bytes | bytearray) -> tuple[list[RtuFrame], int]:
    """Requests at the start of ``buffer`` (a server's view). A frame with a bad CRC is
    returned with ``crc_ok=False`` (a device stays silent on those)."""
    frames = []
    pos = 0
    while True:
        length = _rtu_request_length(buffer, pos)
        if length is None or pos + length > len(buffer):
            break
        frame = bytes(buffer[pos:pos + length])
        ok = crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]
        frames.append(RtuFrame(frame[0], frame[1:-2], ok))
        pos += length
    return frames, pos


def decode_rtu_response(buffer: bytes | bytearray) -> tuple[RtuFrame | None, int]:
    """One response at the start of ``buffer`` (a client's view), or None if incomplete."""
    if len(buffer) < 3:
        return None, 0
    fc = buffer[1]
    if fc & 0x80:
        length = 5
    elif fc in (1, 2, 3, 4):
        length = 5 + buffer[2]
    elif fc in (5, 6, 15, 16):
        length = 8
    else:
        raise FrameError(f"cannot frame an RTU response with function code {fc}")
    if len(buffer) < length:
        return None, 0
    frame = bytes(buffer[:length])
    ok = crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]
    return RtuFrame(frame[0], frame[1:-2], ok), length


# -- PDUs -------------------------------------------------------------------------------------------
def read_registers_pdu(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def write_single_pdu(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 6, address, value)


def write_multiple_pdu(address: int, values: list[int] | tuple[int, ...]) -> bytes:
    return struct.pack(f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values)


def registers_response_pdu(fc: int, values: list[int]) -> bytes:
    return struct.pack(f">BB{len(values)}H", fc, 2 * len(values), *values)


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes((fc | 0x80, code))
