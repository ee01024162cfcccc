"""Plain settings the historian is built from.

The application parses the ``[historian]`` config section (and resolves its secrets) and hands
these frozen values over; the historian itself knows nothing of config files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .rawlog import RawRule

__all__ = ["HistorianSettings", "InfluxSettings", "SqliteSettings"]


@dataclass(frozen=True)
class SqliteSettings:
    path: Path
    interval_retention_days: int = 0  # 0 keeps forever
    raw_retention_days: int = 90


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    api: Literal["v1", "v2"] = "v1"
    timeout_s: float = 10.0
    verify_tls: bool = True
    # v1 (InfluxDB 1.x HTTP API)
    database: str = "scada"
    username: str | None = None
    password: str | None = None
    manage_schema: bool = True  # create the database and keep the retention policies
    interval_rp: str = "scada_intervals"
    raw_rp: str = "scada_raw"
    interval_retention_days: int = 0  # 0 keeps forever
    raw_retention_days: int = 30
    # v2 (InfluxDB 2.x / 3.x write API)
    token: str | None = None
    org: str = ""
    bucket: str = ""
    raw_bucket: str = ""

    def __post_init__(self) -> None:
        if self.api == "v2" and not (self.token and self.bucket):
            raise ValueError("InfluxDB api v2 needs a token and a bucket")


@dataclass(frozen=True)
class HistorianSettings:
    interval_s: int = 900
    close_delay_s: float = 10.0
    late_window_h: float = 48.0  # a gap's intervals take a gateway's replayed readings this long
    spool_path: Path = Path("var/historian-spool.db")
    max_buffer_points: int = 1_000_000
    warn_fill: float = 0.8
    batch_points: int = 5_000
    write_timeout_s: float = 30.0
    retry_max_s: float = 30.0
    raw_rules: tuple[RawRule, ...] = field(default_factory=tuple)
    raw_flush_s: float = 2.0
    checkpoint_s: float = 60.0
    retention_check_s: float = 3600.0
    max_query_rows: int = 2_000_000
