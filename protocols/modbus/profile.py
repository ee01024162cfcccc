"""Device profiles: a meter's register map as data (``profiles/*.toml``).

A profile names each *point* (the tag point it feeds: ``energy_total``, ``power``,
``relay_closed``…) with its function code, address, data type, word and byte order,
scale/offset, unit and poll class, and the *commands* (``connect``/``disconnect``) with the
register written, the value and the status point that confirms them. The file format::

    [profile]
    name = "acrel-ddsy1352"          # must equal the file name without .toml
    kind = "electricity"              # or "water"
    source = "which published map it follows"
    word_order = "big"                # defaults for the points below
    byte_order = "big"
    circuits = 1                      # >1: several meters behind one unit id (meter.circuit)
    circuit_stride = 0                # registers between circuit n and n+1
    protocol = "modbus"               # the default; "dlt645" files have their own format

    [poll_classes]                    # seconds between polls of each class
    fast = 5
    energy = 60

    [points.energy_total]
    fc = 3                            # 3 holding, 4 input registers
    address = 0x0000
    type = "u32"                      # u16 i16 u32 i32 f32 f64 bcd
    scale = 0.01                      # value = raw * scale + offset
    unit = "kWh"
    poll = "energy"
    group = "energy"                  # a group is always read in one request
    deadband = 0.5                    # optional, absolute
    ratio = ["pt_ratio", "ct_ratio"]  # optional: multiplied by these points' values (a meter
                                      # on instrument transformers reports secondary values)

    [points.relay_closed]             # a boolean point: true_value = N or bit = B
    address = 0x0051
    type = "u16"
    true_value = 1
    poll = "fast"

    [commands.disconnect]
    fc = 6                            # 6 write single / 16 write multiple registers
    address = 0x0050
    value = 0x0055                    # or values = [..] with fc = 16
    confirm = "relay_closed"          # connect is confirmed when it reads true,
                                      # disconnect when it reads false

    [parameters.tou_table]            # writable parameter blocks (see .params): the
    kind = "tou_table"                # time-of-use table, the clock, displayed values
    address = 0x0100
    day_types = ["workday", "weekend", "holiday"]
    slots = 8
    rates = { sharp = 0, peak = 1, flat = 2, valley = 3 }

A profile with overlapping registers, an unknown type, an unknown poll class or a command
without a (boolean) confirmation point is rejected with every problem named.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tags import Value

from .codec import DATA_TYPES, CodecError, Order, decode_raw, encode_raw, type_words
from .params import BlockSpec, parse_block

__all__ = [
    "BILLING_POINTS",
    "CommandSpec",
    "PointSpec",
    "Profile",
    "ProfileError",
    "ProfileLibrary",
    "load_profile",
    "parse_profile",
    "read_profile_file",
    "shipped_profiles_dir",
]

# cumulative registers a bill is computed from: read together, in one request (see Profile)
BILLING_POINTS = ("energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "volume_total")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TABLES = {3: "holding registers", 4: "input registers"}


class ProfileError(Exception):
    """A profile is invalid; ``problems`` lists every problem as ``<key path>: <what>``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# -- the file format ------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _ProfileHead(_Strict):
    name: str
    protocol: Literal["modbus"] = "modbus"
    kind: Literal["electricity", "water"]
    description: str = ""
    source: str = ""
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    circuits: int = Field(default=1, ge=1, le=64)
    circuit_stride: int = Field(default=0, ge=0, le=4096)


class _PointModel(_Strict):
    fc: Literal[3, 4] = 3
    address: int = Field(ge=0, le=0xFFFF)
    type: str
    words: int | None = Field(default=None, ge=1, le=4)  # bcd only
    word_order: Literal["big", "little"] | None = None
    byte_order: Literal["big", "little"] | None = None
    scale: float = 1.0
    offset: float = 0.0
    decimals: int | None = Field(default=None, ge=0, le=9)
    unit: str = ""
    poll: str
    group: str | None = None
    deadband: float | None = Field(default=None, ge=0)
    true_value: int | None = None
    false_value: int | None = None
    bit: int | None = Field(default=None, ge=0, le=63)
    ratio: list[str] = []
    description: str = ""


class _CommandModel(_Strict):
    fc: Literal[6, 16] = 6
    address: int = Field(ge=0, le=0xFFFF)
    value: int | None = Field(default=None, ge=0, le=0xFFFF)
    values: list[int] | None = None
    confirm: str | None = None


class _ProfileFile(_Strict):
    profile: _ProfileHead
    poll_classes: dict[str, float]
    points: dict[str, _PointModel]
    commands: dict[str, _CommandModel] = {}
    parameters: dict[str, dict[str, Any]] = {}


# -- the compiled form -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PointSpec:
    """One point of a profile, at the address of circuit 1."""

    name: str
    fc: int
    address: int
    data_type: str
    words: int
    word_order: Order
    byte_order: Order
    scale: float
    offset: float
    decimals: int | None
    unit: str
    poll: str
    group: str | None
    deadband: float | None
    true_value: int | None
    false_value: int | None
    bit: int | None
    description: str = ""
    ratio: tuple[str, ...] = ()  # points whose values multiply this one (PT, CT)

    @property
    def is_bool(self) -> bool:
        return self.true_value is not None or self.bit is not None

    def decode(self, registers: Sequence[int], index: int = 0, ratio: float = 1.0) -> Value:
        """The engineering value held at ``registers[index:index + words]`` (times ``ratio``,
        the product of the point's ratio points, for a point with ``ratio``).

        Raises :class:`CodecError` when the registers do not hold a valid value of the type.
        """
        raw = decode_raw(registers[index:index + self.words], self.data_type, self.word_order, self.byte_order)
        if self.bit is not None:
            return bool((int(raw) >> self.bit) & 1)
        if self.true_value is not None:
            return raw == self.true_value
        if isinstance(raw, float):
            if raw != raw or raw in (float("inf"), float("-inf")):
                raise CodecError(f"{self.name}: not a finite number ({raw})")
            if self.scale == 1.0 and self.offset == 0.0 and ratio == 1.0:
                return raw if self.decimals is None else round(raw, self.decimals)
            # exact decimal arithmetic, so 0.1 * 3 is 0.3 and not 0.30000000000000004
            exact = (Decimal(repr(raw)) * Decimal(repr(self.scale)) + Decimal(repr(self.offset))) * Decimal(repr(ratio))
            value = float(exact)
            return value if self.decimals is None else round(value, self.decimals)
        if ratio != 1.0:
            exact = (Decimal(raw) * Decimal(repr(self.scale)) + Decimal(repr(self.offset))) * Decimal(repr(ratio))
            return round(float(exact), self.decimals if self.decimals is not None else 0)
        value = raw * self.scale + self.offset
        return round(value, self.decimals if self.decimals is not None else 0)

    def encode(self, value: Value, ratio: float = 1.0) -> list[int]:
        """``value`` (engineering units) as registers: what a device holding it returns (a point
        with ``ratio`` holds ``value / ratio``)."""
        if self.is_bool:
            if self.bit is not None:
                raw: int | float = (1 << self.bit) if value else 0
            else:
                assert self.true_value is not None
                raw = self.true_value if value else (self.false_value if self.false_value is not None else 0)
        else:
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
            raw = (value / ratio - self.offset) / self.scale
            if self.data_type not in ("f32", "f64"):
                raw = round(raw)
        return encode_raw(raw, self.data_type, self.words, self.word_order, self.byte_order)

    @property
    def end(self) -> int:
        """The last register address (inclusive), for circuit 1."""
        return self.address + self.words - 1


@dataclass(frozen=True, slots=True)
class CommandSpec:
    kind: str  # "connect" (supply on) | "disconnect" (supply off)
    fc: int
    address: int
    values: tuple[int, ...]
    confirm: str  # a boolean point: True confirms connect, False confirms disconnect

    @property
    def confirm_value(self) -> bool:
        return self.kind == "connect"


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    description: str
    source: str
    circuits: int
    circuit_stride: int
    poll_classes: dict[str, float]
    points: dict[str, PointSpec]
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    path: str = ""
    parameters: dict[str, BlockSpec] = field(default_factory=dict)  # writable parameter blocks

    def address(self, point: PointSpec | CommandSpec, circuit: int | None) -> int:
        """The address of ``point`` for the meter on ``circuit`` (1-based; None means 1)."""
        n = (circuit or 1) - 1
        return point.address + n * self.circuit_stride

    def check_circuit(self, circuit: int | None) -> None:
        if self.circuits == 1:
            if circuit not in (None, 1):
                raise ValueError(f"profile {self.name} has one circuit, not circuit {circuit}")
        elif circuit is None or not 1 <= circuit <= self.circuits:
            raise ValueError(f"profile {self.name} needs circuit = 1..{self.circuits}, found {circuit}")

    @property
    def supply_point(self) -> str | None:
        """The status point confirming supply commands (``relay_closed``/``valve_open``)."""
        cmd = self.commands.get("connect")
        return cmd.confirm if cmd else None


# -- parsing and validation --------------------------------------------------------------------------
def _key_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        path = _key_path(err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key")
        elif err["type"] == "missing":
            problems.append(f"{path}: missing required key")
        else:
            problems.append(f"{path}: {err['msg'][0].lower() + err['msg'][1:]}, found {err.get('input')!r}")
    return problems


def _decimals_of(*numbers: float) -> int:
    places = 0
    for x in numbers:
        exponent = Decimal(repr(x)).normalize().as_tuple().exponent
        if isinstance(exponent, int):
            places = max(places, -exponent)
    return places


def _span(address: int, words: int) -> str:
    return f"0x{address:04X}" if words == 1 else f"0x{address:04X}-0x{address + words - 1:04X}"


def parse_profile(data: dict[str, Any], source: str, expected_name: str | None = None) -> Profile:
    try:
        parsed = _ProfileFile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(source, _pydantic_problems(exc)) from None
    head = parsed.profile
    problems: list[str] = []
    if not _PROFILE_NAME.match(head.name):
        problems.append(f"profile.name: {head.name!r} is not a profile name (lower case, digits, - _ .)")
    if expected_name is not None and head.name != expected_name:
        problems.append(f"profile.name: {head.name!r} differs from the file name {expected_name!r}")
    if head.circuits > 1 and head.circuit_stride == 0:
        problems.append("profile.circuit_stride: a profile with several circuits needs the registers between circuits")
    if not parsed.poll_classes:
        problems.append("poll_classes: at least one poll class is needed")
    for cls_name, interval in parsed.poll_classes.items():
        if not _NAME.match(cls_name):
            problems.append(f"poll_classes.{cls_name}: not a class name (snake_case)")
        if not 0 < interval <= 86_400:
            problems.append(f"poll_classes.{cls_name}: expected seconds in (0, 86400], found {interval}")

    points: dict[str, PointSpec] = {}
    for name, p in parsed.points.items():
        where = f"points.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: {name!r} is not a point name (snake_case)")
        if p.type not in DATA_TYPES:
            problems.append(f"{where}.type: unknown type {p.type!r} (known: {', '.join(DATA_TYPES)})")
            continue
        if p.words is not None and p.type != "bcd":
            problems.append(f"{where}.words: only a bcd point takes words (a {p.type} has a fixed size)")
        words = type_words(p.type, p.words or 1)
        if p.address + words - 1 > 0xFFFF:
            problems.append(f"{where}.address: {_span(p.address, words)} runs past register 0xFFFF")
        if p.poll not in parsed.poll_classes:
            problems.append(f"{where}.poll: unknown poll class {p.poll!r} (declared: {', '.join(parsed.poll_classes) or 'none'})")
        if p.scale == 0:
            problems.append(f"{where}.scale: must not be 0")
        is_bool = p.true_value is not None or p.bit is not None
        if p.true_value is not None and p.bit is not None:
            problems.append(f"{where}: give true_value or bit, not both")
        if p.false_value is not None and p.true_value is None:
            problems.append(f"{where}.false_value: only with true_value")
        if is_bool and p.type not in ("u16", "u32", "i16", "i32"):
            problems.append(f"{where}: a boolean point needs an integer type, found {p.type}")
        if is_bool and (p.scale != 1.0 or p.offset != 0.0 or p.deadband is not None or p.decimals is not None):
            problems.append(f"{where}: a boolean point takes no scale, offset, decimals or deadband")
        if p.bit is not None and p.bit >= 16 * words:
            problems.append(f"{where}.bit: bit {p.bit} is outside a {p.type}")
        decimals = p.decimals
        if decimals is None and not is_bool and p.type not in ("f32", "f64"):
            decimals = _decimals_of(p.scale, p.offset)
        if p.ratio and is_bool:
            problems.append(f"{where}.ratio: a boolean point takes no ratio")
        points[name] = PointSpec(
            name=name, fc=p.fc, address=p.address, data_type=p.type, words=words,
            word_order=p.word_order or head.word_order, byte_order=p.byte_order or head.byte_order,
            scale=p.scale, offset=p.offset, decimals=decimals, unit=p.unit, poll=p.poll,
            group=p.group, deadband=p.deadband, true_value=p.true_value, false_value=p.false_value,
            bit=p.bit, description=p.description, ratio=tuple(p.ratio),
        )

    problems += _overlaps(points.values())
    problems += _check_ratios(points)
    if head.circuits > 1 and head.circuit_stride:
        lowest = min((spec.address for spec in points.values()), default=0)
        for spec in points.values():
            if spec.end - lowest >= head.circuit_stride:
                problems.append(
                    f"points.{spec.name}.address: {_span(spec.address, spec.words)} reaches into circuit 2 "
                    f"(circuit_stride {head.circuit_stride} from 0x{lowest:04X})"
                )
    problems += _check_groups(points)

    commands: dict[str, CommandSpec] = {}
    for kind, c in parsed.commands.items():
        where = f"commands.{kind}"
        if kind not in ("connect", "disconnect"):
            problems.append(f"{where}: unknown command (known: connect, disconnect)")
            continue
        if (c.value is None) == (c.values is None):
            problems.append(f"{where}: give value (one register) or values (fc 16)")
            continue
        values = (c.value,) if c.value is not None else tuple(c.values or ())
        if c.fc == 6 and len(values) != 1:
            problems.append(f"{where}.values: fc 6 writes one register; use fc = 16 for {len(values)}")
        if not 1 <= len(values) <= 123 or any(not 0 <= v <= 0xFFFF for v in values):
            problems.append(f"{where}.values: 1 to 123 register values of 0..65535")
        if c.confirm is None:
            problems.append(f"{where}.confirm: missing confirmation point (the status point read back after the write)")
            continue
        target = points.get(c.confirm)
        if target is None:
            problems.append(f"{where}.confirm: no point {c.confirm!r} in this profile")
            continue
        if not target.is_bool:
            problems.append(f"{where}.confirm: point {c.confirm!r} is not boolean (give it true_value or bit)")
        commands[kind] = CommandSpec(kind, c.fc, c.address, values, c.confirm)
    declared = {k for k in parsed.commands if k in ("connect", "disconnect")}
    if len(declared) == 1:
        missing = ({"connect", "disconnect"} - declared).pop()
        problems.append(f"commands.{missing}: missing (a profile with supply control needs connect and disconnect)")
    if len({c.confirm for c in commands.values()}) > 1:
        problems.append("commands: connect and disconnect must be confirmed by the same status point")

    blocks: dict[str, BlockSpec] = {}
    for name, data in parsed.parameters.items():
        if not _NAME.match(name):
            problems.append(f"parameters.{name}: {name!r} is not a block name (snake_case)")
            continue
        if head.circuits > 1:
            problems.append(f"parameters.{name}: parameter blocks are not supported on multi-circuit profiles")
            continue
        block = parse_block(name, data, problems)
        if block is not None:
            if block.address + block.words - 1 > 0xFFFF:
                problems.append(f"parameters.{name}.address: {_span(block.address, block.words)} runs past register 0xFFFF")
                continue
            blocks[name] = block
    problems += _block_overlaps(blocks, points, commands)

    if problems:
        raise ProfileError(source, problems)
    return Profile(
        name=head.name, kind=head.kind, description=head.description, source=head.source,
        circuits=head.circuits, circuit_stride=head.circuit_stride,
        poll_classes=dict(parsed.poll_classes), points=points, commands=commands, path=source, parameters=blocks,
    )


def _block_overlaps(blocks: dict[str, BlockSpec], points: dict[str, PointSpec], commands: dict[str, CommandSpec]) -> list[str]:
    """Blocks live in the holding registers: none may share a register with a point or another block."""
    spans = [(f"points.{p.name}", p.address, p.end) for p in points.values() if p.fc == 3]
    spans += [(f"commands.{c.kind}", c.address, c.address + len(c.values) - 1) for c in commands.values()]
    problems = []
    taken: list[tuple[str, int, int]] = []
    for name, b in sorted(blocks.items(), key=lambda kv: kv[1].address):
        lo, hi = b.address, b.address + b.words - 1
        for other, start, end in spans + taken:
            if lo <= end and start <= hi:
                problems.append(f"parameters.{name}: registers {_span(lo, b.words)} overlap {other} (0x{start:04X}-0x{end:04X})")
                break
        taken.append((f"parameters.{name}", lo, hi))
    return problems


def _overlaps(points: Iterable[PointSpec]) -> list[str]:
    problems = []
    by_table: dict[int, list[PointSpec]] = {}
    for p in points:
        by_table.setdefault(p.fc, []).append(p)
    for fc, items in sorted(by_table.items()):
        items.sort(key=lambda p: (p.address, p.name))
        reach: PointSpec | None = None  # the point reaching furthest so far
        for p in items:
            if reach is not None and p.address <= reach.end:
                problems.append(
                    f"points.{p.name}: registers {_span(p.address, p.words)} overlap points.{reach.name} "
                    f"({_span(reach.address, reach.words)}) in the {_TABLES[fc]}"
                )
            if reach is None or p.end > reach.end:
                reach = p
    return problems


def _check_ratios(points: dict[str, PointSpec]) -> list[str]:
    """A ratio point is a plain number without a ratio of its own (the poller keeps its last good
    value and reads its poll class first)."""
    problems = []
    for p in points.values():
        for i, name in enumerate(p.ratio):
            where = f"points.{p.name}.ratio[{i}]"
            other = points.get(name)
            if other is None:
                problems.append(f"{where}: no point {name!r} in this profile")
            elif other.is_bool or other.ratio:
                problems.append(f"{where}: point {name!r} is boolean or has a ratio itself")
    return problems


def _check_groups(points: dict[str, PointSpec]) -> list[str]:
    problems = []
    groups: dict[str, list[PointSpec]] = {}
    for p in points.values():
        if p.group is not None:
            groups.setdefault(p.group, []).append(p)
    for name, members in groups.items():
        if len({p.fc for p in members}) > 1 or len({p.poll for p in members}) > 1:
            problems.append(f"group {name!r}: its points must share one fc and one poll class ({', '.join(p.name for p in members)})")
            continue
        span = max(p.end for p in members) - min(p.address for p in members) + 1
        if span > 125:
            problems.append(f"group {name!r}: spans {span} registers; one read request carries at most 125")
    billing = [points[n] for n in BILLING_POINTS if n in points]
    if len(billing) > 1 and (billing[0].group is None or len({p.group for p in billing}) > 1):
        problems.append(
            f"points {', '.join(p.name for p in billing)}: cumulative registers must be in one group "
            "(read in one request, so a bill never mixes readings of two moments)"
        )
    return problems


ProfileParser = Callable[[dict[str, Any], str, str | None], Any]


def read_profile_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The TOML of a profile file and its protocol (``[profile] protocol``, default modbus)."""
    return _profile_toml(Path(path), _read_text(Path(path)))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ProfileError(str(path), [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None


def _profile_toml(path: Path, text: str) -> tuple[str, dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(str(path), [f"not valid TOML: {exc}"]) from None
    head = data.get("profile")
    protocol = head.get("protocol", "modbus") if isinstance(head, dict) else "modbus"
    return str(protocol), data


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    protocol, data = read_profile_file(path)
    if protocol != "modbus":
        raise ProfileError(str(path), [f"profile.protocol: a {protocol!r} profile, not a Modbus one"])
    return parse_profile(data, str(path), expected_name=path.stem)


def shipped_profiles_dir() -> Path:
    """The profiles shipped with the server (every protocol's; ``config/profiles`` links here)."""
    return Path(str(resources.files("protocols").joinpath("profiles")))


_LEFT_OUT = object()  # a profile of another protocol, left out of a Modbus-only library
# (path, text, parsers, modbus_only) -> the parsed profile: a start loads the library once for
# each component that needs it (poller, simulator, topology, site), each time every file, and
# parsing (TOML, then the checks) was ~0.1 s of it. The parsed profiles are frozen and never
# changed after parsing, so they may be shared; a file whose text changed is parsed again.
_PARSED: dict[tuple[str, str, tuple[tuple[str, ProfileParser], ...], bool], Any] = {}
_PARSED_MAX = 1024


def _parsed_file(path: Path, known: dict[str, ProfileParser], *, modbus_only: bool) -> Any:
    text = _read_text(path)
    key = (str(path), text, tuple(known.items()), modbus_only)
    parsed = _PARSED.get(key)
    if parsed is not None:
        return parsed
    protocol, data = _profile_toml(path, text)
    parser = known.get(protocol)
    if parser is None:
        if not modbus_only:
            raise ProfileError(str(path), [f"profile.protocol: unknown protocol {protocol!r} (known: {', '.join(known)})"])
        parsed = _LEFT_OUT
    else:
        parsed = parser(data, str(path), path.stem)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = parsed
    return parsed


class ProfileLibrary:
    """The profiles of one or more folders; a later folder overrides a profile of the same name.

    Profiles of each protocol are parsed by that protocol's parser (``parsers``: protocol ->
    ``parse(data, source, expected_name)``); by default only Modbus ones are read and files of
    other protocols are left out. :func:`protocols.library.load_library` reads every protocol.
    """

    def __init__(self, profiles: dict[str, Any]) -> None:
        self._profiles = dict(profiles)

    @classmethod
    def load(cls, *folders: str | Path, parsers: dict[str, ProfileParser] | None = None) -> ProfileLibrary:
        """Load every ``*.toml`` of ``folders``; raises :class:`ProfileError` naming every problem."""
        known: dict[str, ProfileParser] = parsers if parsers is not None else {"modbus": parse_profile}
        profiles: dict[str, Any] = {}
        errors: list[ProfileError] = []
        for folder in folders or (shipped_profiles_dir(),):
            folder = Path(folder)
            if not folder.is_dir():
                raise ProfileError(str(folder), ["not a folder of device profiles"])
            for path in sorted(folder.glob("*.toml")):
                try:
                    parsed = _parsed_file(path, known, modbus_only=parsers is None)
                except ProfileError as exc:
                    errors.append(exc)
                    continue
                if parsed is not _LEFT_OUT:
                    profiles[path.stem] = parsed
        if errors:
            raise ProfileError(
                errors[0].source if len(errors) == 1 else "profiles",
                [f"{e.source}: {p}" if len(errors) > 1 else p for e in errors for p in e.problems],
            )
        return cls(profiles)

    def get(self, name: str) -> Any:
        """The profile named ``name`` (a :class:`Profile` for Modbus), or None."""
        return self._profiles.get(name)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._profiles[name]
        except KeyError:
            raise KeyError(f"unknown device profile {name!r} (known: {', '.join(sorted(self._profiles))})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._profiles.items())
