"""Register data types in every word and byte order, checked against struct-built registers."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocols.modbus.codec import CodecError, decode_raw, encode_raw, shortest_f32

FORMATS = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f", "f64": ">d"}


def words_of(data: bytes, word_order: str, byte_order: str) -> list[int]:
    """Registers as a device sends them, built independently of the codec."""
    pairs = [data[i:i + 2] for i in range(0, len(data), 2)]
    if word_order == "little":
        pairs.reverse()
    if byte_order == "little":
        pairs = [p[::-1] for p in pairs]
    return [int.from_bytes(p, "big") for p in pairs]


ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]


@pytest.mark.parametrize("word_order,byte_order", ORDERS)
@pytest.mark.parametrize(
    "data_type,value",
    [
        ("u16", 0), ("u16", 65535), ("i16", -1), ("i16", -32768), ("u32", 4_294_967_295), ("u32", 123_456_789),
        ("i32", -2_000_000_001), ("f32", 1234.5), ("f32", -0.015625), ("f64", 12345678.901234567), ("f64", -1e-300),
    ],
)
def test_decode_matches_struct(data_type: str, value: float, word_order: str, byte_order: str) -> None:
    words = words_of(struct.pack(FORMATS[data_type], value), word_order, byte_order)
    assert decode_raw(words, data_type, word_order, byte_order) == value  # type: ignore[arg-type]
    assert encode_raw(value, data_type, len(words), word_order, byte_order) == words  # type: ignore[arg-type]


def test_word_orders_are_distinct() -> None:
    # 0x12345678 as u32: ABCD, CDAB, BADC, DCBA
    expected = {
        ("big", "big"): [0x1234, 0x5678],
        ("little", "big"): [0x5678, 0x1234],
        ("big", "little"): [0x3412, 0x7856],
        ("little", "little"): [0x7856, 0x3412],
    }
    for (wo, bo), words in expected.items():
        assert encode_raw(0x12345678, "u32", 2, wo, bo) == words  # type: ignore[arg-type]
        assert decode_raw(words, "u32", wo, bo) == 0x12345678  # type: ignore[arg-type]


def test_bcd() -> None:
    assert decode_raw([0x1234], "bcd") == 1234
    assert decode_raw([0x0012, 0x3456], "bcd") == 123456
    assert decode_raw([0x3456, 0x0012], "bcd", "little") == 123456
    assert encode_raw(98765432, "bcd", 2) == [0x9876, 0x5432]
    with pytest.raises(CodecError, match="invalid BCD digits 0x1A"):
        decode_raw([0x121A], "bcd")


def test_unsigned_counters_roll_over_like_a_device() -> None:
    assert encode_raw(2**32 + 5, "u32", 2) == [0, 5]
    assert encode_raw(-1, "i16", 1) == [0xFFFF]


def _significant_digits(x: float) -> int:
    # digits, not characters: 1e15 is one digit although repr writes it with sixteen
    return len(Decimal(repr(x)).normalize().as_tuple().digits)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
@example(999999986991104.0)  # its shortest form, 1e+15, has fewer digits but a longer repr
def test_f32_reads_as_its_shortest_decimal(value: float) -> None:
    words = encode_raw(value, "f32", 2, "little", "big")
    decoded = decode_raw(words, "f32", "little", "big")
    # the same 32-bit float, written with the fewest digits
    assert struct.pack(">f", decoded) == struct.pack(">f", value)
    assert _significant_digits(decoded) <= _significant_digits(value) or decoded == value
    assert Decimal(str(decoded)) == Decimal(repr(decoded))


def test_shortest_f32_examples() -> None:
    f32 = struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert f32 != 0.1 and shortest_f32(f32) == 0.1
    assert shortest_f32(123.456) == 123.456
    assert math.isnan(shortest_f32(float("nan")))


@given(st.integers(0, 2**32 - 1), st.sampled_from(ORDERS))
def test_u32_round_trip(value: int, orders: tuple[str, str]) -> None:
    words = encode_raw(value, "u32", 2, *orders)  # type: ignore[arg-type]
    assert decode_raw(words, "u32", *orders) == value  # type: ignore[arg-type]
