"""DL/T 645-2007 frame goldens, worked out by hand from the standard (not from our encoder).

Frame: 68 A0..A5 68 C L DATA CS 16. The address 123456789012 goes least significant byte first:
12 90 78 56 34 12. Data bytes are sent +0x33. CS is the sum of every byte from the first 68
through the last data byte, mod 256.

Sum of the fixed head ``68 12 90 78 56 34 12 68`` = 104+18+144+120+86+52+18+104 = 646.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from protocols.dlt645.client import relay_data
from protocols.dlt645.frames import (
    Frame,
    FrameError,
    decode_bcd,
    decode_frames,
    encode_bcd,
    encode_frame,
)
from protocols.library import load_library

ADDRESS = "123456789012"
HEAD = "68 12 90 78 56 34 12 68"


def hexb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_read_forward_active_energy() -> None:
    # request: C = 11, L = 04, DI 00010000 sent DI0 first: 00 00 01 00, +33: 33 33 34 33
    # CS = 646 + 0x11 (17) + 4 + 51 + 51 + 52 + 51 = 872 = 3 * 256 + 104 -> 0x68
    request = hexb(f"FE FE FE FE {HEAD} 11 04 33 33 34 33 68 16")
    assert encode_frame(ADDRESS, 0x11, hexb("00 00 01 00")) == request
    # answer: 12345.67 kWh as XXXXXX.XX: 01234567 -> bytes 01 23 45 67, sent 67 45 23 01,
    # +33: 9A 78 56 34. C = 91, L = 08 (DI and value).
    # CS = 646 + 145 + 8 + (51 + 51 + 52 + 51) + (154 + 120 + 86 + 52) = 1416 = 5 * 256 + 136 -> 0x88
    answer = hexb(f"{HEAD} 91 08 33 33 34 33 9A 78 56 34 88 16")
    frames, used = decode_frames(answer)
    assert used == len(answer)
    assert frames == [Frame(ADDRESS, 0x91, hexb("00 00 01 00 67 45 23 01"))]
    profile = load_library()["dlt645-single-phase"]
    assert profile.points["energy_total"].decode(frames[0].data[4:]) == 12345.67


def test_read_voltage() -> None:
    # request DI 02010100 -> 00 01 01 02, +33: 33 34 34 35
    # CS = 646 + 17 + 4 + 51 + 52 + 52 + 53 = 875 -> 875 - 768 = 107 -> 0x6B
    assert encode_frame(ADDRESS, 0x11, hexb("00 01 01 02")) == hexb(f"FE FE FE FE {HEAD} 11 04 33 34 34 35 6B 16")
    # answer 220.1 V as XXX.X: 2201 -> 22 01, sent 01 22, +33: 34 55; L = 06
    # CS = 646 + 145 + 6 + (51 + 52 + 52 + 53) + (52 + 85) = 1142 -> 1142 - 1024 = 118 -> 0x76
    frames, _ = decode_frames(hexb(f"{HEAD} 91 06 33 34 34 35 34 55 76 16"))
    assert isinstance(frames[0], Frame)
    voltage = load_library()["dlt645-single-phase"].points["voltage"]
    assert voltage.decode(frames[0].data[4:]) == 220.1


def test_relay_trip_and_its_answer() -> None:
    # password 02123456: level PA = 02, then the password 123456 low byte first: 56 34 12;
    # operator 12345678 low byte first: 78 56 34 12; N1 = 1A (trip), N2 = 00; valid until
    # 2026-01-15 08:10:00 as ss mm hh DD MM YY: 00 10 08 15 01 26 (BCD)
    data = relay_data(0x1A, "02123456", "12345678", dt.datetime(2026, 1, 15, 8, 10, 0))
    assert data == hexb("02 56 34 12 78 56 34 12 1A 00 00 10 08 15 01 26")
    # +33 each: 35 89 67 45 AB 89 67 45 4D 33 33 43 3B 48 34 59; C = 1C, L = 10
    # CS = 646 + 28 + 16 + (53+137+103+69+171+137+103+69+77+51+51+67+59+72+52+89 = 1360) = 2050
    #    = 8 * 256 + 2 -> 0x02
    expected = hexb(f"FE FE FE FE {HEAD} 1C 10 35 89 67 45 AB 89 67 45 4D 33 33 43 3B 48 34 59 02 16")
    assert encode_frame(ADDRESS, 0x1C, data) == expected
    # the normal answer: C = 9C, L = 00; CS = 646 + 156 + 0 = 802 -> 802 - 768 = 34 -> 0x22
    frames, _ = decode_frames(hexb(f"{HEAD} 9C 00 22 16"))
    assert frames == [Frame(ADDRESS, 0x9C, b"")]
    assert frames[0].is_answer and not frames[0].is_exception and frames[0].function == 0x1C


def test_exception_answer() -> None:
    # C = D1 (answer, exception, function 11), L = 01, error 02 (no data requested) +33 = 35
    # CS = 646 + 209 + 1 + 53 = 909 -> 909 - 768 = 141 -> 0x8D
    frames, _ = decode_frames(hexb(f"{HEAD} D1 01 35 8D 16"))
    assert frames == [Frame(ADDRESS, 0xD1, b"\x02")]
    assert frames[0].is_exception and frames[0].function == 0x11


def test_preamble_and_wrong_checksum() -> None:
    # a meter's answer may come with the preamble; a wrong checksum (89 for 88) is an error in its
    # place, and the next good frame is still found
    good = f"{HEAD} 91 08 33 33 34 33 9A 78 56 34 88 16"
    bad = f"FE FE FE FE {HEAD} 91 08 33 33 34 33 9A 78 56 34 89 16"
    frames, used = decode_frames(hexb(f"{bad} FE FE {good} 68 12"))
    assert isinstance(frames[0], FrameError) and "checksum 89" in str(frames[0])
    assert isinstance(frames[1], Frame)
    assert used == len(hexb(f"{bad} FE FE {good}"))  # the incomplete rest waits for more bytes


@pytest.mark.parametrize(
    ("value", "length", "decimals", "signed", "wire"),
    [
        (Decimal("12345.67"), 4, 2, False, "67 45 23 01"),
        (Decimal("-1.234"), 2, 3, True, "34 92"),  # X.XXX signed: 1234 -> 12 34, sign bit on 12 -> 92
        (Decimal("-0.5000"), 3, 4, True, "00 50 80"),  # XX.XXXX signed: 005000 -> 00 50 00, sign -> 80
    ],
)
def test_bcd_both_ways(value: Decimal, length: int, decimals: int, signed: bool, wire: str) -> None:
    assert encode_bcd(value, length, decimals, signed) == hexb(wire)
    assert decode_bcd(hexb(wire), decimals, signed) == value


def test_not_bcd_is_refused() -> None:
    with pytest.raises(ValueError, match="not BCD"):
        decode_bcd(hexb("6A 45"))
