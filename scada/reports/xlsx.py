"""A report as an XLSX workbook (XlsxWriter): one sheet per level of grouping (the rows; per
group; per interval; the totals) and a sheet of the report's parameters.

Numbers are numbers: money with the currency's decimals in a currency format, energy and water
with the meters' resolution (``[reports] energy_decimals``, ``volume_decimals``), per cents as
per cents, counts as integers; the header row stays frozen. XLSX numbers are binary doubles:
amounts to the cent and energy to the resolution are exact at these magnitudes (below 2⁵³ of
their unit). Headers are the columns' labels in the report's language when the caller gives
them (``labels``), else the column names of the JSON answer.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping
from typing import Any

from scada.reports.table import Column, Report

__all__ = ["write_xlsx"]

SYMBOLS = {"CNY": "¥", "JPY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$", "ZAR": "R"}
_BAD = re.compile(r"[\[\]:*?/\\]")


def _sheet_name(text: str, taken: set[str]) -> str:
    name = _BAD.sub("_", text)[:31] or "sheet"
    base, n = name, 2
    while name.lower() in taken:
        suffix = f" {n}"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(name.lower())
    return name


def write_xlsx(report: Report, *, labels: Mapping[str, str] | None = None, energy_decimals: int = 2, volume_decimals: int = 3,
               generated_at: dt.datetime | None = None) -> bytes:
    """The workbook's bytes (CPU work: call it in a worker thread)."""
    import xlsxwriter  # noqa: PLC0415 - loaded on the first export

    def label(key: str, fallback: str) -> str:
        return labels.get(key, fallback) if labels else fallback

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    bold = book.add_format({"bold": True, "bottom": 1})
    m = report.minor_units
    zeros = "0" * m
    symbol = SYMBOLS.get(report.currency)
    money_pattern = f"#,##0{'.' + zeros if m else ''}"
    money_fmt = f'"{symbol}"{money_pattern};-"{symbol}"{money_pattern}' if symbol else f'{money_pattern} "{report.currency}"'
    formats = {
        "money": book.add_format({"num_format": money_fmt}),
        "energy": book.add_format({"num_format": "#,##0" + ("." + "0" * energy_decimals if energy_decimals else "")}),
        "volume": book.add_format({"num_format": "#,##0" + ("." + "0" * volume_decimals if volume_decimals else "")}),
        "percent": book.add_format({"num_format": "0.00%"}),
        "count": book.add_format({"num_format": "0"}),
    }
    taken: set[str] = set()

    def value_of(col: Column, v: Any) -> float | int | None:
        if v is None:
            return None
        if col.kind == "count":
            return int(v)
        if col.kind == "percent":
            return int(v) / 10_000  # hundredths of a per cent → a fraction
        return float(int(v) / 10 ** report.scale(col))

    def sheet(title: str, columns: list[Column], rows: Any) -> None:
        ws = book.add_worksheet(_sheet_name(title, taken))
        ws.write_row(0, 0, [label(f"report.col.{c.name}", c.name) for c in columns], bold)
        ws.freeze_panes(1, 0)
        for r, row in enumerate(rows, start=1):
            for c, (col, v) in enumerate(zip(columns, row, strict=True)):
                if v is None:
                    continue
                if col.numeric:
                    ws.write_number(r, c, value_of(col, v), formats[col.kind])
                else:
                    ws.write_string(r, c, str(v))
        for c, col in enumerate(columns):
            ws.set_column(c, c, 14 if col.numeric else 18)

    for level, keys, frame in report.levels():
        columns = keys + report.values
        arrays = [frame[c.name].astype(object).where(frame[c.name].notna(), None).to_numpy() for c in columns]
        title = label("report.sheet.rows", "rows") if level == "rows" else label(f"report.key.{level}", level)
        sheet(title, columns, zip(*arrays, strict=True))
    totals = [report.totals.get(c.name) for c in report.values]
    extra = [k for k in report.totals if k not in {c.name for c in report.values}]
    sheet(label("report.sheet.totals", "totals"), report.values + [Column(k, "money") for k in extra], [totals + [report.totals[k] for k in extra]])
    ws = book.add_worksheet(_sheet_name(label("report.sheet.parameters", "parameters"), taken))
    ws.freeze_panes(1, 0)
    ws.write_row(0, 0, [label("report.parameter", "parameter"), label("report.value", "value")], bold)
    params = {**report.request.as_json(), "currency": report.currency, "rows": report.row_count}
    for k in ("as_of", "reconciled", "unit"):
        if k in report.meta:
            params[k] = report.meta[k]
    if generated_at is not None:
        params["generated_at"] = generated_at.isoformat()
    for r, (k, v) in enumerate(params.items(), start=1):
        ws.write_string(r, 0, label(f"report.param.{k}", k))
        ws.write(r, 1, v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
    ws.set_column(0, 0, 24)
    ws.set_column(1, 1, 40)
    book.close()
    return out.getvalue()
