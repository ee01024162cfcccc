"""The ``[reports]`` configuration section: limits, number formats, templates, scheduled reports."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from scada.core.configbase import ConfigModel

__all__ = ["ReportSchedule", "ReportsConfig"]

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


class ReportSchedule(ConfigModel):
    """A report e-mailed as XLSX: ``daily`` (the day before, by day) or ``monthly`` (the month
    before, by day), at ``at`` site time, through the e-mail channel ``channel`` of
    ``[alarms.notifications]``, to ``to``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["energy", "compare", "finance", "arrears"]
    every: Literal["daily", "monthly"]
    at: str = "06:00"
    group: str | None = None  # the kind's default when absent
    interval: Literal["day", "week", "month", "year"] = "day"
    channel: str
    to: list[str] = Field(min_length=1, max_length=50)
    language: Literal["en", "zh-CN"] = "en"

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"expected a time HH:MM (00:00-23:59), found {v!r}")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        for i, address in enumerate(v):
            if not _EMAIL.match(address):
                raise ValueError(f"[{i}]: not an e-mail address: {address[:80]!r}")
        return v


class ReportsConfig(ConfigModel):
    """Reports over interval history and the ledger (``GET /api/v1/reports/{kind}``)."""

    enabled: bool = True
    # a report whose rows (buckets × groups, from the request alone) would exceed this is refused
    max_rows: int = Field(default=500_000, ge=1, le=50_000_000)
    # CSV and JSON answers with more rows than this are streamed
    stream_above_rows: int = Field(default=5_000, ge=1, le=1_000_000)
    # PDF and XLSX documents are built whole: at most this many rows
    max_document_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    # the meters' resolution: decimals shown for energy (kWh) and water (m³) in XLSX and PDF
    energy_decimals: int = Field(default=2, ge=0, le=6)
    volume_decimals: int = Field(default=3, ge=0, le=6)
    # how often the ledger's new entries are folded into the day rollup the energy report reads
    # (reports are exact either way: what is not folded yet is read from the ledger itself)
    ledger_rollup_every_s: float = Field(default=300.0, ge=5.0, le=86_400.0)
    # a folder whose report.html replaces the built-in print template
    templates_dir: str = ""
    schedules: list[ReportSchedule] = []

    @model_validator(mode="after")
    def _unique(self) -> ReportsConfig:
        names = [s.name for s in self.schedules]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"schedules: duplicate schedule name {dup!r}")
        return self
