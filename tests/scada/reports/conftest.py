"""The prepaid test site (SQLite and PostgreSQL) with a historian of its own (SQLite) and the
report sources over both."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from historian import HistoryQuery, IntervalGrid, IntervalRecord, SqliteSettings, make_backend
from historian.backends.base import Backend
from historian.query import run_query
from historian.rollup import day_bounds
from scada.reports.config import ReportsConfig
from scada.reports.service import ReportService
from scada.reports.sources import Sources

from ..prepaid.conftest import Site, site  # noqa: F401  (the fixture)

TZ = ZoneInfo("Asia/Shanghai")


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ)


@dataclass
class Reports:
    site: Site
    backend: Backend
    sources: Sources
    service: ReportService
    queries: list[HistoryQuery]

    async def intervals(self, meter: str, start: dt.datetime, values: Iterable[dict[str, float]], length_s: int = 900) -> None:
        """Store one interval per item from ``start`` (kWh / m³ as given; stored in millionths),
        and the day rollups of the days they fall in (as the historian keeps them)."""
        t0 = int(start.timestamp())
        records = [IntervalRecord(meter, t0 + i * length_s, length_s, {k: round(v * 1_000_000) for k, v in item.items()})
                   for i, item in enumerate(values)]
        await self.backend.write_intervals(records)
        days = {(r.meter, *day_bounds(r.start, TZ)) for r in records}
        await self.backend.rebuild_days(sorted(days))

    async def report(self, kind: str, **params: str) -> dict:
        report = await self.service.report(kind, params)
        return report.as_json()


@pytest.fixture
async def reports(site: Site, tmp_path: Path) -> AsyncIterator[Reports]:  # noqa: F811
    backend = make_backend(SqliteSettings(tmp_path / "history.db"))
    await backend.open()
    grid = IntervalGrid(900, TZ)
    queries: list[HistoryQuery] = []

    async def history(query: HistoryQuery) -> pd.DataFrame:
        queries.append(query)
        return await run_query(backend, query, grid, max_rows=50_000_000)

    sources = Sources(site.db, lambda: site.assets.snapshot, history, TZ, 2, "CNY", ReportsConfig())
    try:
        yield Reports(site, backend, sources, ReportService(sources), queries)
    finally:
        await backend.close()
