"""Configuration of Modbus links (one scheduler per link)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .sim.tou import DEFAULT_TOU

__all__ = ["LinkConfig", "ModbusConfig", "SimulatorConfig", "TouPeriod"]


class LinkConfig(BaseModel):
    """A Modbus link: a TCP endpoint, an RTU-over-TCP gateway or a serial RTU bus."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["tcp", "rtu_over_tcp", "rtu"] = "tcp"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=9600, gt=0)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    max_in_flight: int | None = Field(default=None, ge=1, le=64)
    inter_frame_gap_ms: float = Field(default=0.0, ge=0, le=1000)
    max_block_registers: int = Field(default=60, ge=1, le=125)
    max_gap_registers: int = Field(default=8, ge=0, le=100)
    offline_after_failures: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _endpoint(self) -> LinkConfig:
        if self.kind in ("tcp", "rtu_over_tcp"):
            if not self.host or self.port is None:
                raise ValueError(f"a {self.kind} link needs 'host' and 'port'")
        elif not self.serial_port:
            raise ValueError("an rtu link needs 'serial_port' (e.g. /dev/ttyUSB0)")
        if self.kind != "tcp" and (self.max_in_flight or 1) > 1:
            raise ValueError("an RTU bus allows one request in flight: max_in_flight must be 1")
        return self

    @property
    def in_flight_limit(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return 4 if self.kind == "tcp" else 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModbusConfig(_Section):
    """``[modbus]``: the poller."""

    # an extra folder of device profiles (a profile there replaces a shipped one of that name)
    profiles_dir: str | None = None
    # override a poll class's interval (seconds) in every profile, e.g. { fast = 2, energy = 30 }
    poll_intervals: dict[str, float] = {}
    # the first poll of each class is spread over this share of its interval (1: the whole
    # interval), so a thousand meters do not fire at once; later polls keep their phase
    start_spread: float = Field(default=1.0, ge=0, le=1)
    retry_backoff_s: float = Field(default=0.05, ge=0, le=10)  # before the first retry; doubles
    probe_initial_s: float = Field(default=5.0, gt=0, le=3600)  # an offline device is probed
    probe_max_s: float = Field(default=300.0, gt=0, le=86_400)  # ... with backoff up to this
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _intervals(self) -> ModbusConfig:
        for name, seconds in self.poll_intervals.items():
            if not 0 < seconds <= 86_400:
                raise ValueError(f"poll_intervals.{name}: expected seconds in (0, 86400], found {seconds}")
        return self


class TouPeriod(_Section):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # HH:MM, local time of the site
    period: Literal["sharp", "peak", "flat", "valley"]


def _default_tou() -> list[TouPeriod]:
    return [TouPeriod(start=s, period=p) for s, p in DEFAULT_TOU]  # type: ignore[arg-type]


class SimulatorConfig(_Section):
    """``[simulator]``: serve simulated meters on the configured links (``scada demo``)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback only: the simulator and its control API are for this machine
    # the HTTP control API (faults, loads, registers, clock): off unless a port is given (the demo
    # gives 8090; 0: any free port); it needs the token kept in <runtime.data_dir>
    control_port: int | None = Field(default=None, ge=0, le=65535)
    # links to simulate (their host must be loopback); empty: every tcp/rtu_over_tcp link on
    # a loopback address
    links: list[str] = []
    speed: float = Field(default=1.0, ge=0, le=100_000)  # simulated seconds per real second
    seed: int = 0
    tou: list[TouPeriod] = Field(default_factory=_default_tou)
    # where the meters' registers and relay states are kept across restarts (none: start fresh)
    state_file: str | None = None
    save_every_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _loopback(self) -> SimulatorConfig:
        host = self.host.strip("[]")
        if host != "localhost" and not (host.startswith("127.") or host == "::1"):
            raise ValueError(f"host: the simulator listens on loopback only (127.0.0.1, ::1, localhost), not {self.host!r}")
        return self
