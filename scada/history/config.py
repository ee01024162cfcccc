"""The ``[historian]`` config section (its defaults are those of :mod:`historian.settings`;
:mod:`scada.history.settings` turns it into them).

Keys are described in config/README.md. Secrets (InfluxDB password or token) come from the
environment or a file, like every secret; relative paths resolve against the config file's
folder, and the default files live in ``runtime.data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from historian.settings import HistorianSettings, InfluxSettings, SqliteSettings
from scada.core.configbase import ConfigModel, SecretRef

# the defaults live in the historian's settings; the config section only names them
_SQLITE = SqliteSettings(Path())
_INFLUX = InfluxSettings(url="http://127.0.0.1:8086")
_HISTORIAN = HistorianSettings()

__all__ = [
    "HistorianBufferConfig",
    "HistorianConfig",
    "HistorianInfluxConfig",
    "HistorianSqliteConfig",
    "RawLogConfig",
]


class HistorianSqliteConfig(ConfigModel):
    """The ``[historian.sqlite]`` backend: file and retention."""
    path: str = ""  # default: <runtime.data_dir>/historian.db
    interval_retention_days: int = Field(default=_SQLITE.interval_retention_days, ge=0)  # 0 keeps for ever
    raw_retention_days: int = Field(default=_SQLITE.raw_retention_days, ge=0)


class HistorianInfluxConfig(ConfigModel):
    """The ``[historian.influx]`` backend: server, API version, credentials, retention."""
    url: str = _INFLUX.url
    api: Literal["v1", "v2"] = _INFLUX.api
    timeout_s: float = Field(default=_INFLUX.timeout_s, gt=0, le=300)
    verify_tls: bool = _INFLUX.verify_tls
    # v1: InfluxDB 1.x
    database: str = Field(default=_INFLUX.database, min_length=1)
    username: str | None = None
    password: SecretRef | None = None
    manage_schema: bool = _INFLUX.manage_schema
    interval_retention_policy: str = Field(default=_INFLUX.interval_rp, min_length=1)
    raw_retention_policy: str = Field(default=_INFLUX.raw_rp, min_length=1)
    interval_retention_days: int = Field(default=_INFLUX.interval_retention_days, ge=0)
    raw_retention_days: int = Field(default=_INFLUX.raw_retention_days, ge=0)
    # v2: InfluxDB 2.x / 3.x
    token: SecretRef | None = None
    org: str = ""
    bucket: str = ""
    raw_bucket: str = ""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
        return value

    @model_validator(mode="after")
    def _api_keys(self) -> HistorianInfluxConfig:
        if self.api == "v2":
            missing = [k for k in ("token", "org", "bucket") if not getattr(self, k)]
            if missing:
                raise ValueError(f"api = \"v2\" needs {', '.join(missing)}")
        elif self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        return self


class HistorianBufferConfig(ConfigModel):
    """The ``[historian.buffer]`` store-and-forward spool."""
    path: str = ""  # default: <runtime.data_dir>/historian-buffer.db
    max_points: int = Field(default=_HISTORIAN.max_buffer_points, ge=100)
    warn_fill: float = Field(default=_HISTORIAN.warn_fill, gt=0, lt=1)
    retry_max_s: float = Field(default=_HISTORIAN.retry_max_s, ge=1, le=600)


class RawLogConfig(ConfigModel):
    """One ``[[historian.raw]]`` rule: tags whose raw samples are kept, with a deadband."""
    tags: list[str] = Field(min_length=1)
    deadband: float = Field(default=0.0, ge=0)


class HistorianConfig(ConfigModel):
    """The ``[historian]`` section: interval length, backend, buffer, raw logging."""
    enabled: bool = True
    backend: Literal["sqlite", "influx"] = "sqlite"
    interval_min: int = Field(default=_HISTORIAN.interval_s // 60, ge=1, le=60)
    close_delay_s: float = Field(default=_HISTORIAN.close_delay_s, ge=0, le=300)
    late_window_h: float = Field(default=_HISTORIAN.late_window_h, ge=0, le=24 * 62)
    max_query_rows: int = Field(default=_HISTORIAN.max_query_rows, ge=1000)
    # queries (and the rendering of their answers) computed at once; more wait for a turn, and
    # after query_wait_s are answered 503 (busy): a stream of large queries never starves the rest
    max_concurrent_queries: int = Field(default=1, ge=1, le=32)
    query_wait_s: float = Field(default=30.0, gt=0, le=600)
    sqlite: HistorianSqliteConfig = HistorianSqliteConfig()
    influx: HistorianInfluxConfig = HistorianInfluxConfig()
    buffer: HistorianBufferConfig = HistorianBufferConfig()
    raw: list[RawLogConfig] = []

    @field_validator("interval_min")
    @classmethod
    def _divides_an_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError(f"must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), found {value}")
        return value
