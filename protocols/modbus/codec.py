"""Register data types: 16-bit words to values and back, in every word and byte order.

A value spans ``words`` consecutive registers. ``word_order = "big"`` means the most significant
word comes first (the Modbus convention, "ABCD"); ``"little"`` puts the least significant word
first ("CDAB"). ``byte_order`` is the order of the two bytes inside each word (``"little"``
gives "BADC"/"DCBA"). BCD packs one decimal digit per nibble, most significant first.

Floats decoded from ``f32`` registers are given as the shortest decimal that reads back as the
same 32-bit float (``0.1f`` is ``0.1``, not ``0.10000000149011612``), so a reading converts to
``Decimal(str(value))`` exactly as the device meant it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "DATA_TYPES",
    "CodecError",
    "DataTypeName",
    "Order",
    "decode_raw",
    "encode_raw",
    "shortest_f32",
    "type_words",
]

DataTypeName = Literal["u16", "i16", "u32", "i32", "f32", "f64", "bcd"]
Order = Literal["big", "little"]

DATA_TYPES: tuple[str, ...] = ("u16", "i16", "u32", "i32", "f32", "f64", "bcd")

_FIXED_WORDS = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "f64": 4}
_STRUCTS = {
    "u16": struct.Struct(">H"),
    "i16": struct.Struct(">h"),
    "u32": struct.Struct(">I"),
    "i32": struct.Struct(">i"),
    "f32": struct.Struct(">f"),
    "f64": struct.Struct(">d"),
}
_F32 = struct.Struct(">f")


class CodecError(ValueError):
    """Register contents that do not decode as the declared type (e.g. a nibble > 9 in BCD)."""


def type_words(data_type: str, bcd_words: int = 1) -> int:
    """How many registers a value of ``data_type`` occupies."""
    if data_type == "bcd":
        return bcd_words
    try:
        return _FIXED_WORDS[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r} (known: {', '.join(DATA_TYPES)})") from None


def _to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    ordered = words if word_order == "big" else list(reversed(words))
    out = bytearray()
    for w in ordered:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        if byte_order == "big":
            out += bytes((hi, lo))
        else:
            out += bytes((lo, hi))
    return bytes(out)


def _to_words(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    words = []
    for i in range(0, len(data), 2):
        hi, lo = data[i], data[i + 1]
        words.append((hi << 8 | lo) if byte_order == "big" else (lo << 8 | hi))
    return words if word_order == "big" else list(reversed(words))


def decode_raw(words: Sequence[int], data_type: str, word_order: Order = "big", byte_order: Order = "big") -> int | float:
    """The raw (unscaled) number held in ``words``. Raises :class:`CodecError` for bad BCD."""
    data = _to_bytes(words, word_order, byte_order)
    if data_type == "bcd":
        value = 0
        for byte in data:
            hi, lo = byte >> 4, byte & 0x0F
            if hi > 9 or lo > 9:
                raise CodecError(f"invalid BCD digits 0x{byte:02X}")
            value = value * 100 + hi * 10 + lo
        return value
    if data_type == "f32":
        return shortest_f32(_F32.unpack(data)[0])
    return _STRUCTS[data_type].unpack(data)[0]  # type: ignore[no-any-return]


def encode_raw(value: int | float, data_type: str, words: int, word_order: Order = "big", byte_order: Order = "big") -> list[int]:
    """``value`` (already unscaled) as ``words`` registers. Unsigned integers wrap like a
    device counter does (a u32 energy register rolls over at 2**32)."""
    if data_type == "bcd":
        n = int(value)
        if n < 0:
            raise ValueError(f"BCD cannot hold negative {value}")
        n %= 10 ** (4 * words)
        digits = f"{n:0{4 * words}d}"
        data = bytes(int(digits[i]) << 4 | int(digits[i + 1]) for i in range(0, len(digits), 2))
    elif data_type in ("f32", "f64"):
        data = _STRUCTS[data_type].pack(float(value))
    else:
        n = int(value)
        bits = 16 * words
        if data_type.startswith("u"):
            n %= 1 << bits
        else:
            n = (n + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
        data = _STRUCTS[data_type].pack(n)
    return _to_words(data, word_order, byte_order)


def shortest_f32(value: float) -> float:
    """The shortest decimal that is the same 32-bit float as ``value``."""
    if not math.isfinite(value) or value == 0.0:
        return value
    target = _F32.pack(value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.pack(candidate) == target:
                return candidate
        except OverflowError:  # rounding near the largest float32 went past it
            continue
    return value
