"""DL/T 645 device profiles: a meter's data identifiers as data (``protocols/profiles/*.toml``
with ``[profile] protocol = "dlt645"``).

A profile names each point (the tag point it feeds) with the data identifier that reads it and
its format from appendix A of the standard; identifiers read together (a block such as
``0001FF00``: total and tariff energies in one answer) are a ``[blocks.<name>]`` with the points
it returns, in order::

    [profile]
    name = "dlt645-single-phase"
    protocol = "dlt645"
    kind = "electricity"
    source = "DL/T 645-2007 appendix A"

    [poll_classes]
    fast = 10
    energy = 60

    [points.energy_total]
    di = "00010000"          # forward active energy, total
    format = "XXXXXX.XX"     # 4 BCD bytes, 2 decimals (the digits count the bytes)
    unit = "kWh"
    poll = "energy"

    [points.current]
    di = "02020100"
    format = "XXX.XXX"
    signed = true            # sign in the top bit of the most significant byte

    [points.relay_closed]    # a bit of a status word (not BCD): true when the bit is true_bit
    di = "04000503"
    type = "bits"
    bytes = 2
    bit = 4                  # running status word 3, bit 4: relay 0 closed / 1 open
    true_bit = 0
    poll = "fast"

    [points.meter_date]      # the meter's clock: "date" (YYMMDDWW) and "time" (hhmmss) as text
    di = "04000101"
    type = "date"

    [blocks.energy]
    di = "0001FF00"
    points = ["energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley"]

    [commands.disconnect]
    code = 0x1A              # relay control (C = 0x1C) command N1: 1A trip
    confirm = "relay_closed"
    [commands.connect]
    code = 0x1C              # 1B close allowed (the tenant presses the button) or 1C close now
    confirm = "relay_closed"

A profile with an unknown format, a point in two blocks, a block across poll classes or
cumulative registers outside one block is refused with every problem named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tags import Value

from ..modbus.codec import CodecError
from ..modbus.profile import BILLING_POINTS, ProfileError, _pydantic_problems
from .frames import decode_bcd, di_bytes, encode_bcd

__all__ = ["DltBlock", "DltCommand", "DltPoint", "DltProfile", "parse_profile", "plan_dlt645"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Head(_Strict):
    name: str
    protocol: Literal["dlt645"]
    kind: Literal["electricity", "water"]
    description: str = ""
    source: str = ""


class _PointModel(_Strict):
    di: str
    type: Literal["number", "bits", "date", "time"] = "number"
    format: str | None = None
    signed: bool = False
    bytes: int | None = Field(default=None, ge=1, le=8)
    bit: int | None = Field(default=None, ge=0, le=63)
    true_bit: Literal[0, 1] = 1
    unit: str = ""
    poll: str
    deadband: float | None = Field(default=None, ge=0)
    description: str = ""


class _BlockModel(_Strict):
    di: str
    points: list[str] = Field(min_length=1)


class _CommandModel(_Strict):
    code: int = Field(ge=0, le=0xFF)
    confirm: str


class _File(_Strict):
    profile: _Head
    poll_classes: dict[str, float]
    points: dict[str, _PointModel]
    blocks: dict[str, _BlockModel] = {}
    commands: dict[str, _CommandModel] = {}


@dataclass(frozen=True, slots=True)
class DltPoint:
    """One point: its data identifier and how its bytes read."""

    name: str
    di: str
    type: str  # number | bits | date | time
    length: int  # bytes in the answer
    decimals: int
    signed: bool
    bit: int | None
    true_bit: int
    unit: str
    poll: str
    deadband: float | None
    description: str = ""
    ratio: tuple[str, ...] = ()  # (the poller's interface; DL/T 645 meters report primary values)
    group: str | None = None  # the block it is read in, if any

    @property
    def is_bool(self) -> bool:
        return self.type == "bits"

    @property
    def data_type(self) -> str:
        return "bcd"

    @property
    def scale(self) -> float:
        return float(Decimal(1).scaleb(-self.decimals))

    @property
    def text(self) -> bool:
        return self.type in ("date", "time")

    def decode(self, data: bytes, index: int = 0, ratio: float = 1.0) -> Value:
        """The value held at ``data[index:index + length]``; ValueError (a
        :class:`~protocols.modbus.codec.CodecError`) when the bytes are not of the format."""
        raw = data[index:index + self.length]
        if len(raw) != self.length:
            raise _codec_error(f"{self.name}: answer holds {len(raw)} of {self.length} bytes")
        if self.type == "bits":
            assert self.bit is not None
            return ((int.from_bytes(raw, "little") >> self.bit) & 1) == self.true_bit
        try:
            if self.type == "date":  # YYMMDDWW, WW first on the wire
                yy, mm, dd = (int(decode_bcd(raw[i:i + 1])) for i in (3, 2, 1))
                return f"20{yy:02d}-{mm:02d}-{dd:02d}"
            if self.type == "time":  # hhmmss, ss first
                hh, mi, ss = (int(decode_bcd(raw[i:i + 1])) for i in (2, 1, 0))
                return f"{hh:02d}:{mi:02d}:{ss:02d}"
            number = decode_bcd(raw, self.decimals, self.signed)
        except ValueError as exc:
            raise _codec_error(f"{self.name}: {exc}") from None
        if ratio != 1.0:
            number *= Decimal(repr(ratio))
        return float(number)

    def encode(self, value: Value) -> list[int]:
        """``value`` as the bytes a meter answers (least significant first)."""
        if self.type == "bits":
            assert self.bit is not None
            on = bool(value) == bool(self.true_bit)
            return list(((1 << self.bit) if on else 0).to_bytes(self.length, "little"))
        if self.type in ("date", "time"):
            parts = [int(p) for p in re.split(r"[-:]", str(value))]
            if self.type == "date":
                yy, mm, dd = parts[0] % 100, parts[1], parts[2]
                return [0x00, *(int(f"{x:02d}", 16) for x in (dd, mm, yy))]
            return [int(f"{x:02d}", 16) for x in reversed(parts)]
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        # a register counts on past its digits like a real one (a rollover)
        number = Decimal(str(value)).scaleb(self.decimals).to_integral_value()
        if not self.signed:
            number %= 10 ** (2 * self.length)
        return list(encode_bcd(number.scaleb(-self.decimals), self.length, self.decimals, self.signed))


def _codec_error(detail: str) -> Exception:
    return CodecError(detail)


@dataclass(frozen=True, slots=True)
class DltCommand:
    kind: str  # connect | disconnect
    code: int  # N1 of the relay control frame
    confirm: str

    @property
    def confirm_value(self) -> bool:
        return self.kind == "connect"


@dataclass(frozen=True, slots=True)
class DltBlock:
    """One read request: identifier ``di``, and each point with its byte offset in the answer."""

    di: str
    points: tuple[tuple[DltPoint, int], ...]

    @property
    def count(self) -> int:
        return sum(p.length for p, _ in self.points)

    def __repr__(self) -> str:
        return f"<DltBlock {self.di} [{','.join(p.name for p, _ in self.points)}]>"


@dataclass(frozen=True)
class DltProfile:
    name: str
    kind: str
    description: str
    source: str
    poll_classes: dict[str, float]
    points: dict[str, DltPoint]
    blocks: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # name -> (di, points)
    commands: dict[str, DltCommand] = field(default_factory=dict)
    path: str = ""
    protocol: str = "dlt645"
    circuits: int = 1
    circuit_stride: int = 0
    # writable parameter blocks (a Modbus profile's ``[parameters.*]``): none are modelled for
    # DL/T 645 meters; the field is here so that the simulator's meter model serves both
    parameters: dict[str, Any] = field(default_factory=dict)

    def check_circuit(self, circuit: int | None) -> None:
        if circuit not in (None, 1):
            raise ValueError(f"profile {self.name} has one circuit, not circuit {circuit}")

    @property
    def supply_point(self) -> str | None:
        cmd = self.commands.get("connect")
        return cmd.confirm if cmd else None


def _length(fmt: str) -> tuple[int, int] | None:
    m = _FORMAT.match(fmt)
    if m is None:
        return None
    digits = len(m.group(1)) + len(m.group(2) or "")
    if digits % 2:
        return None
    return digits // 2, len(m.group(2) or "")


def parse_profile(data: dict[str, Any], source: str, expected_name: str | None = None) -> DltProfile:
    """Parse a DL/T 645 profile; raises :class:`ProfileError` naming every problem."""
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(source, _pydantic_problems(exc)) from None
    head = parsed.profile
    problems: list[str] = []
    if not _PROFILE_NAME.match(head.name):
        problems.append(f"profile.name: {head.name!r} is not a profile name (lower case, digits, - _ .)")
    if expected_name is not None and head.name != expected_name:
        problems.append(f"profile.name: {head.name!r} differs from the file name {expected_name!r}")
    if not parsed.poll_classes:
        problems.append("poll_classes: at least one poll class is needed")
    for cls_name, interval in parsed.poll_classes.items():
        if not _NAME.match(cls_name) or not 0 < interval <= 86_400:
            problems.append(f"poll_classes.{cls_name}: expected a snake_case name and seconds in (0, 86400], found {interval}")
    in_block: dict[str, str] = {}
    for block_name, b in parsed.blocks.items():
        for name in b.points:
            if name in in_block:
                problems.append(f"blocks.{block_name}.points: {name!r} is already in block {in_block[name]!r}")
            in_block[name] = block_name

    points: dict[str, DltPoint] = {}
    for name, p in parsed.points.items():
        where = f"points.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: {name!r} is not a point name (snake_case)")
        try:
            di_bytes(p.di)
        except ValueError as exc:
            problems.append(f"{where}.di: {exc}")
        if p.poll not in parsed.poll_classes:
            problems.append(f"{where}.poll: unknown poll class {p.poll!r} (declared: {', '.join(parsed.poll_classes) or 'none'})")
        length, decimals = 0, 0
        if p.type == "number":
            shape = _length(p.format or "")
            if shape is None:
                problems.append(f"{where}.format: expected digits like 'XXXXXX.XX' (an even number of X), found {p.format!r}")
                continue
            length, decimals = shape
        elif p.type == "bits":
            if p.bytes is None or p.bit is None:
                problems.append(f"{where}: a bits point needs bytes (the status word's size) and bit")
                continue
            if p.bit >= 8 * p.bytes:
                problems.append(f"{where}.bit: bit {p.bit} is outside {p.bytes} bytes")
            length = p.bytes
        else:
            length = 4 if p.type == "date" else 3
        if p.type != "number" and (p.format or p.signed or p.deadband is not None):
            problems.append(f"{where}: only a number point takes format, signed or deadband")
        points[name] = DltPoint(
            name=name, di=p.di.upper(), type=p.type, length=length, decimals=decimals, signed=p.signed,
            bit=p.bit, true_bit=p.true_bit, unit=p.unit, poll=p.poll, deadband=p.deadband,
            description=p.description, group=in_block.get(name),
        )

    blocks: dict[str, tuple[str, tuple[str, ...]]] = {}
    for block_name, b in parsed.blocks.items():
        where = f"blocks.{block_name}"
        try:
            di_bytes(b.di)
        except ValueError as exc:
            problems.append(f"{where}.di: {exc}")
        unknown = [n for n in b.points if n not in points]
        if unknown:
            problems.append(f"{where}.points: no point {', '.join(map(repr, unknown))} in this profile")
            continue
        if len({points[n].poll for n in b.points}) > 1:
            problems.append(f"{where}: its points must share one poll class ({', '.join(b.points)})")
        if sum(points[n].length for n in b.points) > 196:
            problems.append(f"{where}: an answer carries at most 196 data bytes")
        blocks[block_name] = (b.di.upper(), tuple(b.points))
    billing = [n for n in BILLING_POINTS if n in points]
    if len(billing) > 1 and (any(n not in in_block for n in billing) or len({in_block[n] for n in billing}) > 1):
        problems.append(
            f"points {', '.join(billing)}: cumulative registers must be read in one block "
            "(one request, so a bill never mixes readings of two moments)"
        )

    commands: dict[str, DltCommand] = {}
    for kind, c in parsed.commands.items():
        where = f"commands.{kind}"
        if kind not in ("connect", "disconnect"):
            problems.append(f"{where}: unknown command (known: connect, disconnect)")
            continue
        target = points.get(c.confirm)
        if target is None or not target.is_bool:
            problems.append(f"{where}.confirm: {c.confirm!r} is not a bits point of this profile")
            continue
        commands[kind] = DltCommand(kind, c.code, c.confirm)
    if len(commands) == 1:
        problems.append("commands: a profile with supply control needs connect and disconnect")

    if problems:
        raise ProfileError(source, problems)
    return DltProfile(
        name=head.name, kind=head.kind, description=head.description, source=head.source,
        poll_classes=dict(parsed.poll_classes), points=points, blocks=blocks, commands=commands, path=source,
    )


def plan_dlt645(profile: DltProfile) -> dict[str, list[DltBlock]]:
    """The reads of each poll class: each block in one request, every other point alone."""
    classes: dict[str, list[DltBlock]] = {}
    done: set[str] = set()
    for di, names in profile.blocks.values():
        offset = 0
        members = []
        for n in names:
            members.append((profile.points[n], offset))
            offset += profile.points[n].length
            done.add(n)
        classes.setdefault(profile.points[names[0]].poll, []).append(DltBlock(di, tuple(members)))
    for p in profile.points.values():
        if p.name not in done:
            classes.setdefault(p.poll, []).append(DltBlock(p.di, ((p, 0),)))
    return classes
