"""DL/T 645-2007 frames, byte for byte.

A frame is ``68 A0 A1 A2 A3 A4 A5 68 C L DATA CS 16``:

- ``A0..A5``: the meter's 12-digit address in BCD, least significant byte first (``A`` digits are
  wildcards: ``AAAAAAAAAAAA`` asks whoever is on the bus for its address);
- ``C``: the control code (``0x11`` read data, ``0x13`` read address, ``0x1C`` relay control); an
  answer sets bit 7 (``0x91``), an exception answer also bit 6 (``0xD1``) and carries one error
  byte; bit 5 means more data follows in another frame;
- ``L``: the number of data bytes; every data byte is sent plus ``0x33`` (mod 256);
- ``CS``: the sum of every byte from the first ``68`` through the data, mod 256.

A master sends the wake-up preamble ``FE FE FE FE`` before a frame; a meter may send it too, and a
receiver skips it. Data identifiers (``DI3 DI2 DI1 DI0``, written ``00010000``) go DI0 first.
Numbers are BCD, least significant byte first; a signed number (current, power, power factor)
keeps its sign in the top bit of its most significant byte.

Written from the standard (DL/T 645-2007 sections 4-7 and appendix A) instead of taking the
``dlt645`` PyPI package: that package is a single maintainer's beta, brings its own global logger
(loguru), and is synchronous at heart; the part we need is this codec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "BROADCAST",
    "CONTROL",
    "ERROR_BITS",
    "Frame",
    "FrameError",
    "PREAMBLE",
    "READ",
    "READ_ADDRESS",
    "WILDCARD",
    "address_bytes",
    "address_of",
    "decode_bcd",
    "decode_frames",
    "di_bytes",
    "encode_bcd",
    "encode_frame",
    "error_text",
]

PREAMBLE = b"\xfe\xfe\xfe\xfe"
READ = 0x11
READ_ADDRESS = 0x13
CONTROL = 0x1C
WILDCARD = "AAAAAAAAAAAA"  # "whoever you are": the read-address request
BROADCAST = "999999999999"  # every meter (time sync; meters do not answer it)
_ADDRESS = re.compile(r"^[0-9A]{12}$")
_DI = re.compile(r"^[0-9A-Fa-f]{8}$")

# the error byte of an exception answer (appendix: "异常应答帧" error information word)
ERROR_BITS = {
    0: "other error",
    1: "no data requested",  # the meter does not have this identifier
    2: "password wrong or not authorised",
    3: "baud rate cannot be changed",
    4: "too many annual time zones",
    5: "too many daily periods",
    6: "too many tariffs",
}


class FrameError(ValueError):
    """Bytes that are not a valid frame (wrong checksum, no end byte, bad length)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: ``data`` without the ``+0x33`` offset."""

    address: str
    control: int
    data: bytes

    @property
    def is_answer(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def is_exception(self) -> bool:
        return bool(self.control & 0x40)

    @property
    def function(self) -> int:
        """The request's control code (answer bits cleared)."""
        return self.control & 0x1F


def address_bytes(address: str) -> bytes:
    """``"000000000123"`` as ``23 01 00 00 00 00`` (BCD, least significant byte first)."""
    if not _ADDRESS.match(address):
        raise ValueError(f"a DL/T 645 address is 12 digits (A for a wildcard digit), found {address!r}")
    pairs = [address[i:i + 2] for i in range(0, 12, 2)]
    return bytes(int(p, 16) for p in reversed(pairs))


def address_of(raw: bytes) -> str:
    """The 12-digit address of six address bytes (the inverse of :func:`address_bytes`)."""
    return "".join(f"{b:02X}" for b in reversed(raw))


def di_bytes(di: str) -> bytes:
    """A data identifier ``"00010000"`` (DI3 DI2 DI1 DI0) in wire order, DI0 first."""
    if not _DI.match(di):
        raise ValueError(f"a data identifier is 8 hex digits, found {di!r}")
    return bytes.fromhex(di)[::-1]


def encode_frame(address: str, control: int, data: bytes = b"", *, preamble: bool = True) -> bytes:
    """A frame for ``address`` with control code ``control`` and ``data`` (offset added here)."""
    if len(data) > 200:
        raise ValueError(f"a frame carries at most 200 data bytes, not {len(data)}")
    body = bytes((0x68, *address_bytes(address), 0x68, control & 0xFF, len(data))) + bytes((b + 0x33) & 0xFF for b in data)
    return (PREAMBLE if preamble else b"") + body + bytes((sum(body) & 0xFF, 0x16))


def decode_frames(buffer: bytes | bytearray) -> tuple[list[Frame | FrameError], int]:
    """Complete frames at the start of ``buffer`` and how many bytes they used.

    Preamble and noise before a frame start (``68``) are skipped. A complete frame with a wrong
    checksum or end byte comes back as a :class:`FrameError` in its place (the stream goes on
    after it). Incomplete input stays for the next call.
    """
    out: list[Frame | FrameError] = []
    pos = 0
    n = len(buffer)
    while True:
        while pos < n and buffer[pos] != 0x68:
            pos += 1  # preamble FE FE FE FE, or noise
        if n - pos < 12:
            return out, pos
        if buffer[pos + 7] != 0x68:
            pos += 1  # a 68 that does not start a frame
            continue
        length = buffer[pos + 9]
        end = pos + 12 + length
        if end > n:
            return out, pos
        frame = bytes(buffer[pos:end])
        if frame[-1] != 0x16:
            out.append(FrameError(f"frame does not end with 16 (found {frame[-1]:02X})"))
        elif sum(frame[:-2]) & 0xFF != frame[-2]:
            out.append(FrameError(f"checksum {frame[-2]:02X}, the bytes add up to {sum(frame[:-2]) & 0xFF:02X}"))
        else:
            data = bytes((b - 0x33) & 0xFF for b in frame[10:10 + length])
            out.append(Frame(address_of(frame[1:7]), frame[8], data))
        pos = end


def error_text(code: int) -> str:
    """The error byte of an exception answer, in words."""
    bits = [text for bit, text in ERROR_BITS.items() if code & (1 << bit)]
    return ", ".join(bits) if bits else f"error 0x{code:02X}"


def decode_bcd(data: bytes, decimals: int = 0, signed: bool = False) -> Decimal:
    """A BCD number sent least significant byte first; raises ValueError for a non-BCD nibble."""
    msb_first = bytearray(data[::-1])
    negative = False
    if signed and msb_first:
        negative = bool(msb_first[0] & 0x80)
        msb_first[0] &= 0x7F
    value = 0
    for byte in msb_first:
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise ValueError(f"not BCD: byte {byte:02X}")
        value = value * 100 + hi * 10 + lo
    number = Decimal(value).scaleb(-decimals)
    return -number if negative else number


def encode_bcd(value: Decimal | int | float, length: int, decimals: int = 0, signed: bool = False) -> bytes:
    """``value`` as ``length`` BCD bytes, least significant first (the inverse of :func:`decode_bcd`).
    Raises ValueError when it does not fit."""
    number = Decimal(str(value)).scaleb(decimals).to_integral_value()
    negative = number < 0
    digits = f"{abs(int(number)):0{2 * length}d}"
    if len(digits) > 2 * length or (signed and int(digits[0]) > 7):
        raise ValueError(f"{value} does not fit {length} BCD bytes with {decimals} decimals")
    msb_first = bytearray(int(digits[i]) << 4 | int(digits[i + 1]) for i in range(0, 2 * length, 2))
    if negative:
        if not signed:
            raise ValueError(f"{value}: negative, and the format has no sign")
        msb_first[0] |= 0x80
    return bytes(msb_first[::-1])
