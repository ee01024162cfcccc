"""Configuration of Modbus links (one scheduler per link)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LinkConfig"]


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
    def _endpoint(self) -> "LinkConfig":
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
