"""Reports as one object: :class:`ReportService` (``ctx[REPORTS]``), what the API, the pages, the
scheduled reports and the command line ask.

``parse`` checks a request (no work); ``run`` computes the report: its size is checked against
``[reports] max_rows`` from the request before anything is read, the database is read through
SQL, history through the historian (within its query slots), losses through the meter
topology's loss computation, and the grouping runs in pandas on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from scada.core.context import Key
from scada.reports.arrears import arrears_report
from scada.reports.compare import compare_report
from scada.reports.energy import energy_report
from scada.reports.finance import finance_report
from scada.reports.losses import losses_report
from scada.reports.params import KINDS, ReportError, ReportRequest, parse_request
from scada.reports.sources import Sources
from scada.reports.table import Report

__all__ = ["REPORTS", "ReportService"]


class ReportService:
    """Parses and runs reports (energy, compare, finance, arrears, losses) for the API, pages, schedules and CLI."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.cfg = sources.cfg

    @property
    def available(self) -> tuple[str, ...]:
        """The kinds this server can compute: ``losses`` needs the meter topology."""
        return KINDS if self.sources.usage is not None else tuple(k for k in KINDS if k != "losses")

    def parse(self, kind: str, params: Mapping[str, str]) -> ReportRequest:
        """The request checked; :class:`ReportError` names the wrong parameter. Reads nothing."""
        return parse_request(kind, params, self.sources.tz, now=self.sources.clock(), available=self.available)

    async def run(self, request: ReportRequest) -> Report:
        if request.kind == "energy":
            return await energy_report(self.sources, request)
        if request.kind == "compare":
            return await compare_report(self.sources, request)
        if request.kind == "finance":
            return await finance_report(self.sources, request)
        if request.kind == "arrears":
            return await arrears_report(self.sources, request)
        if request.kind == "losses":
            return await losses_report(self.sources, request)
        raise ReportError("kind", f"the {request.kind} report is not available on this server", 404)

    async def report(self, kind: str, params: Mapping[str, str]) -> Report:
        return await self.run(self.parse(kind, params))

    def now(self) -> dt.datetime:
        return self.sources.clock()


REPORTS: Key[ReportService] = Key("reports", ReportService)
