"""Reports as a runtime component (``ctx[REPORTS]``), and its scheduled reports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

import pandas as pd

from historian.query import HistoryQuery, run_query
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context
from scada.core.runtime import Component, Restart
from scada.db import Database
from scada.db.component import DATABASE
from scada.history.service import HISTORY, HistoryService
from scada.reports.params import ReportError
from scada.reports.rollup import LedgerRollup
from scada.reports.service import REPORTS, ReportService
from scada.reports.sources import HistoryRunner, Sources
from scada.site.assets import AssetRegistry
from scada.site.component import ASSETS
from scada.topology.service import TOPOLOGY
from scada.topology.usage import UsageSource
from tags.timers import run_every

__all__ = ["ReportsComponent", "history_runner", "sources_for", "topology_usage"]


def history_runner(service: HistoryService) -> HistoryRunner:
    """History for reports through the running historian, one of its query slots at a time (the
    report's own row limit was checked before; the historian's bucket limit is not the report's)."""

    async def run(query: HistoryQuery) -> pd.DataFrame:
        async with service.turn():
            historian = service.historian
            return await run_query(historian.backend, query, historian.grid, max_rows=50_000_000)

    return run


def sources_for(config: ScadaConfig, db: Database, assets: AssetRegistry, history: HistoryRunner | None,
                usage: Callable[[], UsageSource] | None = None) -> Sources:
    """What reports read from (database, registry, history, topology usage), set up from the config."""
    return Sources(db, lambda: assets.snapshot, history, config.site.tz, config.site.currency_minor_units, config.site.currency,
                   config.reports, usage=usage)


def topology_usage(ctx: Context) -> Callable[[], UsageSource]:
    """The running topology's consumption source (looked up at each report: the topology
    component may have been restarted since)."""

    def usage() -> UsageSource:
        topology = ctx.get(TOPOLOGY)
        if topology is None:
            raise ReportError("kind", "the meter topology is not running; retry shortly", 503)
        return topology.usage_source()

    return usage


class ReportsComponent(Component):
    """Provides :class:`ReportService` (with the losses report when the meter topology runs);
    folds the ledger into the day rollup the energy report reads; runs the configured scheduled
    reports."""

    name = "reports"
    requires = (CONFIG, DATABASE, ASSETS)
    optional = (HISTORY, TOPOLOGY)
    provides = (REPORTS,)

    def __init__(self, *, labels: Callable[[str], Mapping[str, str]] | None = None) -> None:
        """``labels(language)``: the columns' labels for scheduled workbooks (the HMI's catalogs)."""
        super().__init__()
        self.labels = labels

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        history = ctx.get(HISTORY)
        usage = topology_usage(ctx) if ctx.get(TOPOLOGY) is not None else None
        service = ReportService(sources_for(config, ctx[DATABASE], ctx[ASSETS], history_runner(history) if history else None, usage))
        ctx[REPORTS] = service
        rollup = LedgerRollup(ctx[DATABASE], config.site.tz)
        self.tasks.spawn(lambda: run_every(config.reports.ledger_rollup_every_s, rollup.fold, name="ledger rollup", first_delay_s=5.0),
                         "ledger rollup", restart=Restart.ON_FAILURE)
        if config.reports.schedules:
            from scada.reports.schedule import ReportScheduler  # noqa: PLC0415 - only with schedules (loads the e-mail channel)

            scheduler = ReportScheduler(service, config, labels=self.labels)
            self.tasks.spawn(scheduler.run, "schedules", restart=Restart.ON_FAILURE)
        yield
