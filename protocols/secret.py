"""Where a protocol's secret comes from (a password, an operator code): an environment variable or
a file, never the value. The same TOML form as the server's other secrets
(``{ env = "VARIABLE" }`` or ``{ file = "/run/secrets/name" }``); the server resolves it and
hands the value to the driver."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["SecretSource"]


class SecretSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a path)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def get(self, base_dir: Path | None = None) -> str | None:
        """The secret, or None when it is unset or its file cannot be read."""
        if self.env is not None:
            return os.environ.get(self.env) or None
        path = Path(self.file or "")
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
