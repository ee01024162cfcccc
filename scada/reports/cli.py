"""``scada report KIND --from --to --format csv|xlsx|pdf --out FILE``: a report straight from the
configured database and historian (the server need not run), written to a file.

On a terminal a progress bar on stderr follows the work (reading history, the ledger, grouping,
writing); otherwise nothing but errors is printed. A wrong option is named (``--group: …``) with
exit status 2, before anything is read.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from historian import make_backend
from historian.backends.base import BackendError
from historian.grid import IntervalGrid
from historian.query import HistoryQuery, run_query
from scada.config import ScadaConfig, config_from_args
from scada.core.limits import AnswerTooLarge
from scada.db.component import open_database
from scada.history.service import QueryRegisters
from scada.history.settings import backend_settings
from scada.reports.finance import LedgerMismatch
from scada.reports.params import FORMATS, GROUPS, INTERVALS, KINDS, ReportError
from scada.reports.service import ReportService
from scada.reports.sources import Sources
from scada.reports.table import Report
from scada.reports.xlsx import write_xlsx
from scada.site.assets import AssetRegistry
from scada.topology.usage import UsageSource

__all__ = ["Progress", "register"]

PdfRenderer = Callable[[Report, ScadaConfig], Awaitable[bytes]]
Labels = Callable[[str], Mapping[str, str]]


class Progress:
    """A one-line progress bar on a terminal (``stream.isatty()``), silent otherwise."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.on = stream.isatty()

    def __call__(self, step: str, done: float) -> None:
        if not self.on:
            return
        filled = int(self.width * max(0.0, min(1.0, done)))
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {int(done * 100):3d}% {step:<12}")
        self.stream.flush()

    def close(self) -> None:
        if self.on:
            self.stream.write("\n")
            self.stream.flush()


def register(sub: Any, *, pdf: PdfRenderer | None = None, labels: Labels | None = None) -> None:
    """Add ``scada report`` (``pdf`` renders the printable report; ``labels`` names the columns)."""
    p = sub.add_parser("report", help="write a report (energy, compare, finance, arrears, losses) to a file",
                       description="Dates are YYYY-MM-DD (site time; --to includes that day) or ISO 8601 times with an offset.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--from", dest="start", metavar="FROM", help="first day (not needed for arrears)")
    p.add_argument("--to", dest="end", metavar="TO", help="last day (arrears: the day it is taken at; default now)")
    p.add_argument("--interval", choices=INTERVALS, default="day")
    p.add_argument("--group", help=f"energy/compare: {', '.join(GROUPS['energy'])}; finance also channel, cashier; losses: meter")
    p.add_argument("--commodity", choices=["electricity", "water"], help="compare: what is compared; losses: which meters")
    p.add_argument("--format", choices=[f for f in FORMATS if f != "json"], default="csv")
    p.add_argument("--lang", choices=["en", "zh-CN"], default="en")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--config", help="server config (default: the demo's)")
    p.set_defaults(handler=lambda args: cmd_report(args, pdf=pdf, labels=labels))


def cmd_report(args: argparse.Namespace, *, pdf: PdfRenderer | None = None, labels: Labels | None = None) -> int:
    """``scada report``: compute a report and write it to ``--out``; 2 on a bad request, 1 when the ledger or the historian fails."""
    config = config_from_args(args)
    params = {k: v for k, v in (("from", args.start), ("to", args.end), ("interval", args.interval), ("group", args.group),
                                ("commodity", args.commodity), ("format", args.format), ("lang", args.lang)) if v}
    progress = Progress(sys.stderr)
    try:
        rows = asyncio.run(_report(config, args.kind, params, Path(args.out), progress, pdf, labels))
    except (ReportError, AnswerTooLarge) as exc:
        progress.close()
        name = exc.param if isinstance(exc, ReportError) else exc.field
        message = exc.message
        sys.stderr.write(f"error: --{name}: {message}\n")
        return 2
    except LedgerMismatch as exc:
        progress.close()
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except BackendError as exc:
        progress.close()
        sys.stderr.write(f"error: the historian backend is not available: {exc}\n")
        return 1
    progress.close()
    sys.stderr.write(f"{args.out}: {rows} rows\n")
    return 0


async def _report(config: ScadaConfig, kind: str, params: dict[str, str], out: Path, progress: Progress,
                  pdf: PdfRenderer | None, labels: Labels | None) -> int:
    db = open_database(config)
    backend = make_backend(backend_settings(config)) if config.historian.enabled else None
    try:
        grid = IntervalGrid(config.historian.interval_min * 60, config.site.tz)

        async def history(query: HistoryQuery) -> Any:
            assert backend is not None
            return await run_query(backend, query, grid, max_rows=50_000_000)

        def usage() -> UsageSource:
            # the meter topology's consumption source, its register sums straight from the backend
            sums = QueryRegisters(history, grid) if backend is not None else None
            return UsageSource(db, registry.snapshot, sums, manual_resolution=config.topology.manual_resolution)

        sources = Sources(db, lambda: registry.snapshot, history if backend is not None else None, config.site.tz,
                          config.site.currency_minor_units, config.site.currency, config.reports, progress=progress,
                          usage=usage if config.topology.enabled else None)
        service = ReportService(sources)
        request = service.parse(kind, params)  # every option checked before anything is opened
        await db.upgrade()
        registry = AssetRegistry(db)
        await registry.load()
        if backend is not None:
            await backend.open()
        report = await service.run(request)
        progress("writing", 0.9)
        if request.format == "csv":
            await asyncio.to_thread(_write_csv, report, out, progress)
        elif request.format == "xlsx":
            cfg = config.reports
            data = await asyncio.to_thread(lambda: write_xlsx(report, labels=labels(request.language) if labels else None,
                                                              energy_decimals=cfg.energy_decimals, volume_decimals=cfg.volume_decimals))
            out.write_bytes(data)
        else:
            if pdf is None:
                raise ReportError("format", "PDF needs the HMI's print templates, which this command line does not have")
            out.write_bytes(await pdf(report, config))
        progress("done", 1.0)
        return report.row_count
    finally:
        if backend is not None:
            await backend.close()
        await db.dispose()


def _write_csv(report: Report, out: Path, progress: Progress) -> None:
    total = max(1, report.row_count)
    done = 0
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(report.csv_header())
        for chunk in report.csv_chunks_with_totals():
            w.writerows(chunk)
            done += len(chunk)
            progress("writing", 0.9 + 0.1 * done / total)
