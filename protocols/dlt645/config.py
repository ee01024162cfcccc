"""Configuration of a DL/T 645 link (``[[links]] kind = "dlt645"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..secret import SecretSource

__all__ = ["Dlt645LinkConfig"]


class Dlt645LinkConfig(BaseModel):
    """A DL/T 645 bus: behind a TCP transparent gateway, or on a local serial port.

    One request at a time per bus (``in_flight_limit`` is 1), with the pause after each answer
    and the silence after a timeout of an RTU bus.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["dlt645"]
    transport: Literal["tcp", "serial"] = "tcp"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=2400, gt=0)  # the standard's default: 2400 bit/s, 8E1
    timeout_s: float = Field(default=1.5, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    inter_frame_gap_ms: float = Field(default=20.0, ge=0, le=1000)
    offline_after_failures: int = Field(default=3, ge=1, le=100)
    preamble: bool = True  # send FE FE FE FE before each frame (wakes the meter's UART)
    # relay control: the password (level PA then six digits, "02123456") and the operator code
    password: SecretSource | None = None
    operator_code: SecretSource | None = None

    @model_validator(mode="after")
    def _endpoint(self) -> Dlt645LinkConfig:
        if self.transport == "tcp" and (not self.host or self.port is None):
            raise ValueError("a dlt645 link over tcp needs 'host' and 'port' (a transparent gateway)")
        if self.transport == "serial" and not self.serial_port:
            raise ValueError("a dlt645 link over serial needs 'serial_port' (e.g. /dev/ttyUSB0)")
        return self

    @property
    def in_flight_limit(self) -> int:
        return 1

    @property
    def max_in_flight(self) -> int:
        return 1
