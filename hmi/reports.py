"""Reports as documents: XLSX with the columns' labels in the report's language, and the printable
PDF (``hmi/templates/print/report.html``, replaceable through ``[reports] templates_dir``) with
the report's chart drawn on the server, its totals, and a page per group.

Rendering is CPU work: both run in an executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path
from typing import Any

from scada.reports.charts import bar_svg, chart_data
from scada.reports.table import Report
from scada.reports.xlsx import write_xlsx

from .i18n import Catalogs, Translator
from .printing import PrintTemplates, html_to_pdf

__all__ = ["MAX_PDF_GROUPS", "report_labels", "report_pdf", "report_xlsx"]

# a printed report has a page per group: more groups than this are refused (use XLSX or CSV)
MAX_PDF_GROUPS = 300


def report_labels(t: Translator) -> dict[str, str]:
    """Every ``report.*`` message of the catalog in ``t``'s language (English where it has none)."""
    keys = {k for k in t.fallback if k.startswith("report.")} | {k for k in t.messages if k.startswith("report.")}
    return {k: t(k) for k in sorted(keys)}


def labels_for(language: str) -> dict[str, str]:
    """The labels of a language from the shipped catalogs (for the scheduled reports and the CLI)."""
    return report_labels(Catalogs.load().translator(language))


async def report_xlsx(report: Report, t: Translator, *, energy_decimals: int, volume_decimals: int) -> bytes:
    labels = report_labels(t)
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: write_xlsx(report, labels=labels, energy_decimals=energy_decimals, volume_decimals=volume_decimals,
                                 generated_at=dt.datetime.now(dt.UTC)))


def _pages(report: Report) -> list[dict[str, Any]]:
    """A page per group: its rows (text as in the JSON answer) and its totals."""
    if report.group_key is None or report.interval_key is None:
        return []
    key = report.group_key
    frame = report.frame
    totals = report.aggregate([k.name for k in report.keys if k.name != report.interval_key]).set_index(key, drop=False)
    pages = []
    for group, part in frame.groupby(key, sort=False, dropna=False):
        rows = [[report.text(c, v) for c, v in zip(report.columns, row, strict=True)]
                for row in part[[c.name for c in report.columns]].astype(object).where(part.notna(), None).itertuples(index=False)]
        total_row = totals.loc[group] if group in totals.index else None
        total = [report.text(c, None if total_row is None else total_row[c.name]) for c in report.values]
        pages.append({"group": group, "rows": rows, "totals": total})
    return pages


def report_html(report: Report, t: Translator, templates: PrintTemplates, *, site: str, tz: Any) -> str:
    chart = chart_data(report)
    title = t(f"report.kind.{report.request.kind}")
    svg = bar_svg(chart, label=lambda s: t.maybe(f"report.col.{s}") or s, title=title)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    totals = report.totals_json()
    summary = report.rows_json() if report.group_key is not None and report.interval_key is None else []
    return templates.render(
        "report.html", t, site=site, report=report.head(), title=title, chart=uri, columns=[c.name for c in report.columns],
        values=[c.name for c in report.values], keys=[c.name for c in report.keys], totals=totals, pages=_pages(report),
        summary=summary, generated=dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M"),
    )


async def pdf_for_command_line(report: Report, config: Any) -> bytes:
    """The printable report for ``scada report --format pdf`` (the shipped catalogs, the configured templates)."""
    folder = config.reports.templates_dir
    t = Catalogs.load().translator(report.request.language)
    return await report_pdf(report, t, site=config.site.name, tz=config.site.tz, templates_dir=config.path(folder) if folder else None)


async def report_pdf(report: Report, t: Translator, *, site: str, tz: Any, templates_dir: Path | None = None) -> bytes:
    loop = asyncio.get_running_loop()
    html = await loop.run_in_executor(None, lambda: report_html(report, t, PrintTemplates(templates_dir), site=site, tz=tz))
    return await html_to_pdf(html, "report.html")
