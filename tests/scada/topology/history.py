"""A historian over a SQLite backend the tests fill with interval records directly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from historian import Historian, HistorianSettings, IntervalGrid, IntervalRecord, SqliteSettings, make_backend
from historian.rollup import day_rollups
from scada.history.service import HistoryService
from scada.site.assets import AssetRegistry

from .conftest import TZ


async def open_history(tmp_path: Path, assets: AssetRegistry, interval_s: int = 900) -> HistoryService:
    backend = make_backend(SqliteSettings(tmp_path / "historian.db"))
    historian = Historian(HistorianSettings(interval_s=interval_s, spool_path=tmp_path / "spool.db"), backend,
                          IntervalGrid(interval_s, TZ))
    await historian.open()
    return HistoryService(historian, assets, TZ)


def constant_records(
    per_interval: Mapping[str, str], start: dt.datetime, end: dt.datetime, interval_s: int = 900
) -> list[IntervalRecord]:
    """Every interval of ``[start, end)``, each meter uses its kWh (a decimal string)."""
    out = []
    t = int(start.timestamp())
    while t < int(end.timestamp()):
        for meter, kwh in per_interval.items():
            micro = int(Decimal(kwh) * 1_000_000)
            out.append(IntervalRecord(meter, t, interval_s, {"energy_total": micro, "samples": 1, "good_samples": 1,
                                                              "flag_gap": 0, "flag_reset": 0, "flag_first": 0}))
        t += interval_s
    return out


async def store(history: HistoryService, records: list[IntervalRecord]) -> None:
    backend = history.historian.backend
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, TZ))
