"""``GET /api/v1/reports/{kind}``: energy, compare, finance and arrears reports as JSON, CSV, XLSX
or PDF (see :mod:`scada.reports`).

Parameters: ``from``, ``to`` (dates, ``to`` inclusive, or times with an offset, ``to``
exclusive), ``interval`` (``day``, ``week``, ``month``, ``year``), ``group`` (per kind: ``meter``,
``room``, ``floor``, ``building``, ``customer``; finance also ``channel`` and ``cashier``),
``format`` (``json``, ``csv``, ``xlsx``, ``pdf``), ``lang`` (``en``, ``zh-CN``: XLSX headers and
the PDF), ``commodity`` (compare: ``electricity`` or ``water``).

A wrong parameter is a 4xx naming it, answered before anything is read; a report whose rows
(computed from the request) exceed ``[reports] max_rows`` (``max_document_rows`` for XLSX and PDF)
is a 422 naming the limit. Large JSON and CSV answers are streamed. The energy and compare reports
need ``history_export``; finance and arrears ``account_manage``. A finance report whose totals do
not reconcile with the ledger is a 500 saying where, never an answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from historian import BackendError
from scada.config import CONFIG
from scada.history.service import HistoryBusy
from scada.reports.charts import chart_data
from scada.reports.finance import LedgerMismatch
from scada.reports.params import ReportError
from scada.reports.service import REPORTS, ReportService
from scada.users.auth import Permission

from ..keys import CONTEXT
from ..printing import TemplateFailed
from ..render import CATALOGS
from ..reports import MAX_PDF_GROUPS, report_pdf, report_xlsx
from .router import ApiCall, ApiError, ApiRouter
from .stream import stream_csv, stream_json

__all__ = ["PERMISSIONS", "router"]

router = ApiRouter("reports")

PERMISSIONS = {"energy": Permission.HISTORY_EXPORT, "compare": Permission.HISTORY_EXPORT, "losses": Permission.HISTORY_EXPORT,
               "finance": Permission.ACCOUNT_MANAGE, "arrears": Permission.ACCOUNT_MANAGE}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ReportQuery(BaseModel):
    """The query parameters (checked again, with the kind, by :func:`scada.reports.params.parse_request`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)
    from_: str | None = Field(default=None, alias="from", description="a date (local midnight) or a time with an offset")
    to: str | None = Field(default=None, description="a date (to the end of that day) or a time with an offset (exclusive)")
    interval: str | None = Field(default=None, description="day (default), week, month or year")
    group: str | None = Field(default=None, description="meter, room, floor, building, customer; finance also channel, cashier")
    format: str | None = Field(default=None, description="json (default), csv, xlsx or pdf")
    lang: str | None = Field(default=None, description="en or zh-CN (XLSX headers, PDF)")
    commodity: str | None = Field(default=None, description="compare: electricity (default) or water")


def _service(call: ApiCall[Any]) -> ReportService:
    svc = call.request.app[CONTEXT].get(REPORTS)
    if svc is None:
        raise ApiError(503, "reports are disabled in this server's configuration")
    return svc


@router.get(
    "/reports/{kind}",
    query=ReportQuery,
    permission=Permission.VIEW,
    summary="A report (energy, compare, finance, arrears) by interval and group, as JSON, CSV, XLSX or PDF",
)
async def report(call: ApiCall[Any]) -> Any:
    svc = _service(call)
    kind = call.params["kind"]
    params = {k: v for k, v in call.request.query.items()}
    try:
        request = svc.parse(kind, params)
    except ReportError as exc:
        raise ApiError(exc.status, str(exc), field=exc.param) from None
    permission = PERMISSIONS[request.kind]
    if not call.user.can(permission):
        raise ApiError(403, f"role {call.user.role.value} may not {permission.value}")
    catalogs = call.request.app[CATALOGS]
    t = catalogs.translator(request.language)
    try:
        result = await svc.run(request)
    except ReportError as exc:
        raise ApiError(exc.status, str(exc), field=exc.param) from None
    except LedgerMismatch as exc:
        raise ApiError(500, str(exc), problems=exc.problems[:50]) from None
    except HistoryBusy as exc:
        raise ApiError(503, str(exc), retry_after_s=1) from None
    except BackendError as exc:
        raise ApiError(503, f"historian backend unavailable: {exc}") from None
    name = f"report-{request.kind}-{request.group}-{request.local(request.start).date()}-{request.local(request.end).date()}"
    cfg = svc.cfg
    if request.format == "csv":
        return await stream_csv(call.request, f"{name}.csv", result.csv_header(), result.csv_chunks_with_totals())
    if request.format == "xlsx":
        body = await report_xlsx(result, t, energy_decimals=cfg.energy_decimals, volume_decimals=cfg.volume_decimals)
        return web.Response(body=body, content_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    if request.format == "pdf":
        groups = result.frame[result.group_key].nunique(dropna=False) if result.group_key and result.interval_key else 0
        if groups > MAX_PDF_GROUPS:
            raise ApiError(422, f"group: a printed report has a page per group, at most {MAX_PDF_GROUPS}; this one has {groups} "
                           "(group by something coarser, or download XLSX or CSV)", field="group", rows=int(groups), limit=MAX_PDF_GROUPS)
        config = call.request.app[CONTEXT][CONFIG]
        folder = config.reports.templates_dir
        try:
            pdf = await report_pdf(result, t, site=config.site.name, tz=config.site.tz, templates_dir=config.path(folder) if folder else None)
        except TemplateFailed as exc:
            raise ApiError(422, f"template: {exc}", field="template") from None
        return web.Response(body=pdf, content_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}.pdf"'})
    head = {**result.head(), "chart": await asyncio.to_thread(chart_data, result)}
    if result.row_count > cfg.stream_above_rows:
        return await stream_json(call.request, head, result.json_chunks())

    def render() -> str:
        return json.dumps({**head, "rows": result.rows_json()}, ensure_ascii=False, allow_nan=False)

    return web.Response(text=await asyncio.to_thread(render), content_type="application/json")
