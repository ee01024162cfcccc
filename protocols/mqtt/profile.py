"""Profiles of meters behind MQTT gateways (``[profile] protocol = "mqtt"``): which metric (a
Sparkplug metric name, or a JSON payload field) feeds which point, and how supply commands are
written::

    [profile]
    name = "mqtt-electricity"
    protocol = "mqtt"
    kind = "electricity"

    [points.energy_total]
    metric = "energy_total"      # Sparkplug metric name / JSON field (dotted path)
    unit = "kWh"
    [points.relay_closed]
    metric = "relay_closed"
    type = "bool"

    [commands.disconnect]        # a DCMD (or a JSON command) writing the metric
    metric = "relay_closed"
    value = false
    confirm = "relay_closed"     # read back from the gateway's next data message
    [commands.connect]
    metric = "relay_closed"
    value = true
    confirm = "relay_closed"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..modbus.profile import ProfileError, _pydantic_problems

__all__ = ["MqttCommand", "MqttPoint", "MqttProfile", "parse_profile"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Head(_Strict):
    name: str
    protocol: Literal["mqtt"]
    kind: Literal["electricity", "water"]
    description: str = ""
    source: str = ""


class _PointModel(_Strict):
    metric: str = Field(min_length=1, max_length=200)
    type: Literal["number", "bool", "string"] = "number"
    unit: str = ""
    deadband: float | None = Field(default=None, ge=0)
    description: str = ""


class _CommandModel(_Strict):
    metric: str = Field(min_length=1, max_length=200)
    value: bool
    confirm: str


class _File(_Strict):
    profile: _Head
    points: dict[str, _PointModel]
    commands: dict[str, _CommandModel] = {}


@dataclass(frozen=True, slots=True)
class MqttPoint:
    name: str
    metric: str
    type: str  # number | bool | string
    unit: str = ""
    deadband: float | None = None
    description: str = ""

    @property
    def is_bool(self) -> bool:
        return self.type == "bool"

    @property
    def text(self) -> bool:
        return self.type == "string"

    # what the simulator's meter model reads of a point (a gateway reports values, not registers:
    # cumulative ones to 0.01, as most meters count)
    data_type = "f64"
    decimals = 2
    scale = 0.01
    ratio: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MqttCommand:
    kind: str  # connect | disconnect
    metric: str
    value: bool
    confirm: str

    @property
    def confirm_value(self) -> bool:
        return self.kind == "connect"


@dataclass(frozen=True)
class MqttProfile:
    name: str
    kind: str
    description: str
    source: str
    points: dict[str, MqttPoint]
    commands: dict[str, MqttCommand] = field(default_factory=dict)
    path: str = ""
    protocol: str = "mqtt"
    circuits: int = 1
    # writable parameter blocks (a Modbus profile's ``[parameters.*]``): a gateway takes none;
    # the field is here so that the simulator's meter model serves every protocol
    parameters: dict[str, Any] = field(default_factory=dict)

    def check_circuit(self, circuit: int | None) -> None:
        if circuit not in (None, 1):
            raise ValueError(f"profile {self.name} has one circuit, not circuit {circuit}")

    @property
    def supply_point(self) -> str | None:
        cmd = self.commands.get("connect")
        return cmd.confirm if cmd else None

    @property
    def by_metric(self) -> dict[str, MqttPoint]:
        return {p.metric: p for p in self.points.values()}


def parse_profile(data: dict[str, Any], source: str, expected_name: str | None = None) -> MqttProfile:
    """Parse an MQTT profile; raises :class:`ProfileError` naming every problem."""
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
    points: dict[str, MqttPoint] = {}
    metrics: dict[str, str] = {}
    for name, p in parsed.points.items():
        where = f"points.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: {name!r} is not a point name (snake_case)")
        if p.metric in metrics:
            problems.append(f"{where}.metric: {p.metric!r} already feeds point {metrics[p.metric]!r}")
        metrics[p.metric] = name
        if p.type != "number" and p.deadband is not None:
            problems.append(f"{where}: only a number point takes a deadband")
        points[name] = MqttPoint(name, p.metric, p.type, p.unit, p.deadband, p.description)
    if not points:
        problems.append("points: at least one point is needed")
    commands: dict[str, MqttCommand] = {}
    for kind, c in parsed.commands.items():
        where = f"commands.{kind}"
        if kind not in ("connect", "disconnect"):
            problems.append(f"{where}: unknown command (known: connect, disconnect)")
            continue
        target = points.get(c.confirm)
        if target is None or not target.is_bool:
            problems.append(f"{where}.confirm: {c.confirm!r} is not a bool point of this profile")
            continue
        commands[kind] = MqttCommand(kind, c.metric, c.value, c.confirm)
    if len(commands) == 1:
        problems.append("commands: a profile with supply control needs connect and disconnect")
    if problems:
        raise ProfileError(source, problems)
    return MqttProfile(head.name, head.kind, head.description, head.source, points, commands, path=source)
