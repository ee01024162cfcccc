"""The reports page: a report kind, a date range, an interval and a grouping; the report's chart
(uPlot, served from the project) and its table from ``GET /api/v1/reports/{kind}``, and downloads
as CSV, XLSX and PDF. A user sees the kinds their role may read."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from scada.config import CONFIG
from scada.reports.params import DEFAULT_GROUP, GROUPS, INTERVALS
from scada.reports.service import REPORTS
from scada.users.auth import Permission

from ..api.reports import PERMISSIONS
from ..render import render, translator
from . import PageCall, PageSet, error_page

__all__ = ["pages"]

pages = PageSet("reports", requires=(REPORTS,))


@pages.get("/reports", permission=Permission.VIEW, nav=("nav.reports", 75), nav_permission=frozenset(PERMISSIONS.values()))
async def reports(call: PageCall) -> web.StreamResponse:
    service = call.ctx[REPORTS]
    kinds = [k for k in service.available if call.user.can(PERMISSIONS[k])]
    if not kinds:  # a role with no report permission (viewer) gets the page the others are refused with
        needed = ", ".join(sorted({p.value for p in PERMISSIONS.values()}))
        return error_page(call.request, 403, translator(call.request)("error.forbidden", permission=needed))
    today = dt.datetime.now(call.ctx[CONFIG].site.tz).date()
    return render(call.request, "reports.html", kinds=kinds, groups={k: list(GROUPS[k]) for k in kinds},
                  default_groups={k: DEFAULT_GROUP[k] for k in kinds}, intervals=list(INTERVALS),
                  start=today.replace(day=1).isoformat(), end=today.isoformat())
