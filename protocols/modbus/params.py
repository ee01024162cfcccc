"""Writable parameter blocks of a device profile: time-of-use table, clock, displayed values.

A block is a run of holding registers the meter stores a setting in, written in one request
(function code 16, or 6 for a one-register value) and read back with function code 3 to verify
it. What the registers mean is data in the profile (``[parameters.<name>]``), so a meter with
another layout needs a profile, not code. Three kinds:

``tou_table``
    The meter's time-of-use switch table, as ACR10R-class meters keep it: per day type
    (``day_types``, e.g. workday, weekend, holiday) ``slots`` entries of three registers
    (hour, minute, rate code), the first starting at 00:00; unused slots hold ``unused`` in all
    three registers. ``rates`` maps the period names of a tariff to the meter's rate codes
    (and so to its energy registers)::

        [parameters.tou_table]
        kind = "tou_table"
        address = 0x0100
        day_types = ["workday", "weekend", "holiday"]
        slots = 8
        rates = { sharp = 0, peak = 1, flat = 2, valley = 3 }

    Its value is ``{"workday": [["00:00", "valley"], ["08:00", "peak"], ...], ...}``.

``clock``
    Six registers: year, month, day, hour, minute, second of the meter's local time, in BCD
    (``encoding = "bcd"``: 2026 is 0x2026) or binary. Its value is a naive local
    :class:`datetime`.

``value``
    One number (``type`` u16/i16/u32/i32, ``scale``, ``unit``, bounds ``min``/``max``): a
    load limit, the price or balance a meter shows on its display. Its value is a Decimal;
    one with more decimals than the register holds is refused, never rounded.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .codec import decode_raw, encode_raw, type_words

__all__ = [
    "BLOCK_KINDS",
    "BlockError",
    "BlockSpec",
    "ClockBlock",
    "TouTable",
    "TouTableBlock",
    "ValueBlock",
    "normalise_tou",
    "parse_block",
]

BLOCK_KINDS = ("tou_table", "clock", "value")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
CLOCK_WORDS = 6

# {"workday": [("00:00", "valley"), ("08:00", "peak")], ...}
TouTable = dict[str, list[tuple[str, str]]]


class BlockError(ValueError):
    """A value that the block cannot hold, or registers that do not decode."""


class _BlockModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    kind: Literal["tou_table", "clock", "value"]
    address: int = Field(ge=0, le=0xFFFF)
    description: str = ""
    # tou_table
    day_types: list[str] | None = None
    slots: int | None = Field(default=None, ge=1, le=8)
    rates: dict[str, int] | None = None
    unused: int = Field(default=0xFFFF, ge=0, le=0xFFFF)
    # clock
    encoding: Literal["bcd", "binary"] | None = None
    # value
    type: Literal["u16", "i16", "u32", "i32"] | None = None
    scale: str | None = None  # a decimal string: "0.01"
    unit: str = ""
    min: str | None = None
    max: str | None = None


@dataclass(frozen=True)
class TouTableBlock:
    name: str
    address: int
    day_types: tuple[str, ...]
    slots: int
    rates: Mapping[str, int]
    unused: int = 0xFFFF
    description: str = ""
    kind: str = "tou_table"

    @property
    def words(self) -> int:
        return len(self.day_types) * self.slots * 3

    def encode(self, table: Mapping[str, Sequence[tuple[str, str]]]) -> list[int]:
        """The registers of ``table`` (every day type of the block must be given)."""
        out: list[int] = []
        for day_type in self.day_types:
            entries = table.get(day_type)
            if not entries:
                raise BlockError(f"{self.name}: no schedule for day type {day_type!r}")
            entries = normalise_tou(entries)
            if len(entries) > self.slots:
                raise BlockError(f"{self.name}: {day_type} has {len(entries)} switch points; the meter holds {self.slots}")
            for hhmm, period in entries:
                m = _HHMM.match(hhmm)
                if not m:
                    raise BlockError(f"{self.name}: {day_type}: expected HH:MM, found {hhmm!r}")
                code = self.rates.get(period)
                if code is None:
                    raise BlockError(f"{self.name}: period {period!r} has no rate on this meter (rates: {', '.join(self.rates)})")
                out += [int(m.group(1)), int(m.group(2)), code]
            out += [self.unused] * (3 * (self.slots - len(entries)))
        return out

    def decode(self, registers: Sequence[int]) -> TouTable:
        if len(registers) != self.words:
            raise BlockError(f"{self.name}: expected {self.words} registers, found {len(registers)}")
        names = {code: period for period, code in self.rates.items()}
        table: TouTable = {}
        i = 0
        for day_type in self.day_types:
            entries: list[tuple[str, str]] = []
            for _ in range(self.slots):
                hour, minute, code = registers[i:i + 3]
                i += 3
                if hour == self.unused and minute == self.unused and code == self.unused:
                    continue
                if not (0 <= hour <= 23 and 0 <= minute <= 59) or code not in names:
                    raise BlockError(f"{self.name}: {day_type}: slot {hour}:{minute} rate {code} is not a valid entry")
                entries.append((f"{hour:02d}:{minute:02d}", names[code]))
            table[day_type] = entries
        return table

    def same(self, wanted: Any, read: Any) -> bool:
        return {k: normalise_tou(v) for k, v in wanted.items() if k in self.day_types} == {
            k: normalise_tou(v) for k, v in read.items()
        }

    def as_json(self, value: TouTable) -> Any:
        return {k: [list(e) for e in v] for k, v in value.items()}


@dataclass(frozen=True)
class ClockBlock:
    name: str
    address: int
    encoding: Literal["bcd", "binary"] = "bcd"
    description: str = ""
    kind: str = "clock"
    tolerance_s: float = 2.0  # a read-back this close to the written time (plus the time since) matches

    @property
    def words(self) -> int:
        return CLOCK_WORDS

    def encode(self, value: dt.datetime) -> list[int]:
        if not isinstance(value, dt.datetime) or value.tzinfo is not None:
            raise BlockError(f"{self.name}: expected a naive local date and time, found {value!r}")
        parts = [value.year, value.month, value.day, value.hour, value.minute, value.second]
        if self.encoding == "binary":
            return parts
        return [encode_raw(p, "bcd", 1)[0] for p in parts]

    def decode(self, registers: Sequence[int]) -> dt.datetime:
        if len(registers) != CLOCK_WORDS:
            raise BlockError(f"{self.name}: expected {CLOCK_WORDS} registers, found {len(registers)}")
        try:
            parts = [int(r) if self.encoding == "binary" else int(decode_raw([r], "bcd")) for r in registers]
            return dt.datetime(*parts)  # type: ignore[arg-type,misc]
        except ValueError as exc:
            raise BlockError(f"{self.name}: registers {list(registers)} are not a date and time ({exc})") from None

    def same(self, wanted: Any, read: Any, elapsed_s: float = 0.0) -> bool:
        return bool(abs((read - wanted).total_seconds() - elapsed_s) <= self.tolerance_s)

    def as_json(self, value: dt.datetime) -> Any:
        return value.isoformat()


@dataclass(frozen=True)
class ValueBlock:
    name: str
    address: int
    data_type: str
    scale: Decimal
    unit: str = ""
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    description: str = ""
    kind: str = "value"

    @property
    def words(self) -> int:
        return type_words(self.data_type)

    def check(self, value: Any) -> Decimal:
        """``value`` as an exact Decimal the register can hold, or :class:`BlockError` saying why."""
        if isinstance(value, (bool, float)) or not isinstance(value, (int, str, Decimal)):
            raise BlockError(f"{self.name}: expected a decimal number as a string, found {value!r}")
        text = str(value).strip()
        if len(text) > 24:
            raise BlockError(f"{self.name}: {text[:24]!r}... is too long for a number")
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise BlockError(f"{self.name}: expected a decimal number, found {text!r}") from None
        if not d.is_finite():
            raise BlockError(f"{self.name}: expected a finite number, found {text!r}")
        if self.minimum is not None and d < self.minimum:
            raise BlockError(f"{self.name}: {text} is below the minimum {self.minimum}")
        if self.maximum is not None and d > self.maximum:
            raise BlockError(f"{self.name}: {text} is above the maximum {self.maximum}")
        raw = d / self.scale
        if raw != raw.to_integral_value():
            raise BlockError(f"{self.name}: {text} has more decimals than the register holds (steps of {self.scale})")
        bits = 16 * self.words
        lo, hi = (0, 2**bits - 1) if self.data_type.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not lo <= int(raw) <= hi:
            raise BlockError(f"{self.name}: {text} does not fit the {self.data_type} register")
        return d

    def encode(self, value: Any) -> list[int]:
        d = self.check(value)
        return encode_raw(int(d / self.scale), self.data_type, self.words)

    def decode(self, registers: Sequence[int]) -> Decimal:
        raw = decode_raw(registers, self.data_type)
        return (Decimal(int(raw)) * self.scale).normalize()

    def same(self, wanted: Any, read: Any) -> bool:
        return bool(Decimal(str(wanted)) == Decimal(str(read)))

    def as_json(self, value: Decimal) -> Any:
        return format(value, "f")


BlockSpec = TouTableBlock | ClockBlock | ValueBlock


def normalise_tou(entries: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Switch points sorted, with a switch to the period already in force dropped."""
    out: list[tuple[str, str]] = []
    for hhmm, period in sorted((str(e[0]), str(e[1])) for e in entries):
        if out and out[-1][1] == period:
            continue
        out.append((hhmm, period))
    return out


def _decimal(text: str | None, where: str, problems: list[str]) -> Decimal | None:
    if text is None:
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        problems.append(f"{where}: expected a decimal number as a string, found {text!r}")
        return None
    if not d.is_finite():
        problems.append(f"{where}: expected a finite number, found {text!r}")
        return None
    return d


def parse_block(name: str, data: Any, problems: list[str]) -> BlockSpec | None:
    """The block ``[parameters.<name>]``; adds what is wrong to ``problems`` and returns None then."""
    from pydantic import ValidationError  # noqa: PLC0415 - only the profile parser needs it here

    where = f"parameters.{name}"
    try:
        b = _BlockModel.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}.{loc}: {what}" if loc else f"{where}: {what}")
        return None
    before = len(problems)
    if b.kind == "tou_table":
        stray = [k for k in ("encoding", "type", "scale", "min", "max") if getattr(b, k) is not None]
        if stray:
            problems.append(f"{where}: {', '.join(stray)}: not a key of a tou_table block")
        if not b.day_types:
            problems.append(f"{where}.day_types: name the day types the meter keeps a table for")
        elif len(set(b.day_types)) != len(b.day_types) or any(d not in ("workday", "weekend", "holiday") for d in b.day_types):
            problems.append(f"{where}.day_types: distinct names of workday, weekend, holiday; found {b.day_types}")
        if b.slots is None:
            problems.append(f"{where}.slots: missing (switch points per day, at most 8)")
        if not b.rates:
            problems.append(f"{where}.rates: map period names to the meter's rate codes")
        elif len(set(b.rates.values())) != len(b.rates) or any(not 0 <= c < 0xFFFF or c == b.unused for c in b.rates.values()):
            problems.append(f"{where}.rates: distinct codes 0..65534, other than unused ({b.unused})")
        if len(problems) > before:
            return None
        assert b.day_types is not None and b.slots is not None and b.rates is not None
        block: BlockSpec = TouTableBlock(name, b.address, tuple(b.day_types), b.slots, dict(b.rates), b.unused, b.description)
        if len(b.day_types) * b.slots * 3 > 123:
            problems.append(f"{where}: {block.words} registers; one write request carries at most 123")
            return None
        return block
    if b.kind == "clock":
        stray = [k for k in ("day_types", "slots", "rates", "type", "scale", "min", "max") if getattr(b, k) is not None]
        if stray:
            problems.append(f"{where}: {', '.join(stray)}: not a key of a clock block")
            return None
        return ClockBlock(name, b.address, b.encoding or "bcd", b.description)
    stray = [k for k in ("day_types", "slots", "rates", "encoding") if getattr(b, k) is not None]
    if stray:
        problems.append(f"{where}: {', '.join(stray)}: not a key of a value block")
    if b.type is None:
        problems.append(f"{where}.type: missing (u16, i16, u32 or i32)")
    scale = _decimal(b.scale or "1", f"{where}.scale", problems)
    if scale is not None and scale <= 0:
        problems.append(f"{where}.scale: must be above 0")
    minimum = _decimal(b.min, f"{where}.min", problems)
    maximum = _decimal(b.max, f"{where}.max", problems)
    if minimum is not None and maximum is not None and minimum > maximum:
        problems.append(f"{where}: min is above max")
    if len(problems) > before:
        return None
    assert b.type is not None and scale is not None
    return ValueBlock(name, b.address, b.type, scale, b.unit, minimum, maximum, b.description)
