"""``[commands]``: the retry policy of relay and valve commands (see :mod:`scada.commands.service`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from scada.core.configbase import ConfigModel

__all__ = ["CommandsConfig"]


class CommandsConfig(ConfigModel):
    """The ``[commands]`` section: confirmation time-outs, retries and backoff."""
    retries: int = Field(default=2, ge=0, le=10)  # further attempts after the first
    confirm_timeout_s: float = Field(default=10.0, gt=0, le=600)  # write -> status must follow within
    confirm_interval_s: float = Field(default=1.0, gt=0, le=60)  # status read-back period meanwhile
    backoff_s: float = Field(default=2.0, ge=0, le=600)  # before the first retry; doubles
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> CommandsConfig:
        if self.confirm_interval_s > self.confirm_timeout_s:
            raise ValueError("confirm_interval_s must not exceed confirm_timeout_s")
        return self
