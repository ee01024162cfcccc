"""The plain historian settings built from the ``[historian]`` section: paths resolved against the
config file's folder (defaults in ``runtime.data_dir``), secrets read from their source."""

from __future__ import annotations

from pathlib import Path

from historian.rawlog import RawRule
from historian.settings import HistorianSettings, InfluxSettings, SqliteSettings
from scada.config import ScadaConfig

__all__ = ["backend_settings", "historian_settings"]


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
        late_window_h=h.late_window_h,
        spool_path=_file(config, h.buffer.path, "historian-buffer.db"),
        max_buffer_points=h.buffer.max_points,
        warn_fill=h.buffer.warn_fill,
        write_timeout_s=max(30.0, h.influx.timeout_s * 2),
        retry_max_s=h.buffer.retry_max_s,
        raw_rules=tuple(RawRule(tuple(r.tags), r.deadband) for r in h.raw),
        max_query_rows=h.max_query_rows,
    )
