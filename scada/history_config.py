"""The ``[historian]`` config section, and the plain historian settings built from it.

Keys are described in config/README.md. Secrets (InfluxDB password or token) come from the
environment or a file, like every secret; relative paths resolve against the config file's
folder, and the default files live in ``runtime.data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from historian.rawlog import RawRule
from historian.settings import HistorianSettings, InfluxSettings, SqliteSettings

from .configbase import ConfigModel, SecretRef

if TYPE_CHECKING:
    from .config import ScadaConfig

__all__ = [
    "HistorianBufferConfig",
    "HistorianConfig",
    "HistorianInfluxConfig",
    "HistorianSqliteConfig",
    "RawLogConfig",
    "backend_settings",
    "historian_settings",
]


class HistorianSqliteConfig(ConfigModel):
    path: str = ""  # default: <runtime.data_dir>/historian.db
    interval_retention_days: int = Field(default=0, ge=0)  # 0 keeps for ever
    raw_retention_days: int = Field(default=90, ge=0)


class HistorianInfluxConfig(ConfigModel):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    verify_tls: bool = True
    # v1: InfluxDB 1.x
    database: str = Field(default="scada", min_length=1)
    username: str | None = None
    password: SecretRef | None = None
    manage_schema: bool = True
    interval_retention_policy: str = Field(default="scada_intervals", min_length=1)
    raw_retention_policy: str = Field(default="scada_raw", min_length=1)
    interval_retention_days: int = Field(default=0, ge=0)
    raw_retention_days: int = Field(default=30, ge=0)
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
    path: str = ""  # default: <runtime.data_dir>/historian-buffer.db
    max_points: int = Field(default=1_000_000, ge=100)
    warn_fill: float = Field(default=0.8, gt=0, lt=1)
    retry_max_s: float = Field(default=30.0, ge=1, le=600)


class RawLogConfig(ConfigModel):
    tags: list[str] = Field(min_length=1)
    deadband: float = Field(default=0.0, ge=0)


class HistorianConfig(ConfigModel):
    enabled: bool = True
    backend: Literal["sqlite", "influx"] = "sqlite"
    interval_min: int = Field(default=15, ge=1, le=60)
    close_delay_s: float = Field(default=10.0, ge=0, le=300)
    max_query_rows: int = Field(default=2_000_000, ge=1000)
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


def _file(config: ScadaConfig, value: str, default: str) -> Path:
    return config.path(value) if value else config.data_dir / default


def backend_settings(config: ScadaConfig) -> SqliteSettings | InfluxSettings:
    """The chosen backend's settings, secrets resolved."""
    h = config.historian
    base = Path(config.base_dir)
    if h.backend == "sqlite":
        s = h.sqlite
        return SqliteSettings(
            _file(config, s.path, "historian.db"), s.interval_retention_days, s.raw_retention_days
        )
    i = h.influx
    return InfluxSettings(
        url=i.url,
        api=i.api,
        timeout_s=i.timeout_s,
        verify_tls=i.verify_tls,
        database=i.database,
        username=i.username,
        password=i.password.require(base) if i.password else None,
        manage_schema=i.manage_schema,
        interval_rp=i.interval_retention_policy,
        raw_rp=i.raw_retention_policy,
        interval_retention_days=i.interval_retention_days,
        raw_retention_days=i.raw_retention_days,
        token=i.token.require(base) if i.token else None,
        org=i.org,
        bucket=i.bucket,
        raw_bucket=i.raw_bucket,
    )


def historian_settings(config: ScadaConfig) -> HistorianSettings:
    h = config.historian
    return HistorianSettings(
        interval_s=h.interval_min * 60,
        close_delay_s=h.close_delay_s,
        spool_path=_file(config, h.buffer.path, "historian-buffer.db"),
        max_buffer_points=h.buffer.max_points,
        warn_fill=h.buffer.warn_fill,
        write_timeout_s=max(30.0, h.influx.timeout_s * 2),
        retry_max_s=h.buffer.retry_max_s,
        raw_rules=tuple(RawRule(tuple(r.tags), r.deadband) for r in h.raw),
        max_query_rows=h.max_query_rows,
    )
