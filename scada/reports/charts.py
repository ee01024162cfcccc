"""The chart of a report: what it shows (:func:`chart_data`, also in the JSON answer, drawn by the
HMI), and the same as an SVG bar chart (:func:`bar_svg`) for printed reports, drawn on the server
(xhtml2pdf lays SVG out through svglib as vector graphics).

- ``energy``: consumption per interval over every group, stacked by time-of-use period (kWh);
  the total register when the meters have no period registers;
- ``compare``: per interval the consumption beside the year before and the previous range;
- ``finance``: per interval recharges, payments, deductions and refunds (money);
- ``arrears``: what is owed per aging bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from scada.reports.table import Column, Report

__all__ = ["COLORS", "bar_svg", "chart_data"]

COLORS = ("#c0392b", "#e67e22", "#2e86c1", "#27ae60", "#8e44ad", "#7f8c8d")
_AGED = ("aged_0_30", "aged_31_60", "aged_61_90", "aged_90_plus")


def _series(report: Report, frame: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    by_name = {c.name: c for c in report.values}
    out = []
    for n in names:
        col = by_name[n]
        values = [None if v is None else float(report.decimal(col, v) or 0) for v in frame[n].astype(object).where(frame[n].notna(), None)]
        out.append({"name": n, "values": values})
    return out


def chart_data(report: Report) -> dict[str, Any]:
    """``{"type": "stacked"|"grouped", "unit", "categories": [...], "series": [{"name", "values"}]}``."""
    kind = report.request.kind
    if kind == "arrears":
        totals = report.totals
        values = [float(report.decimal(Column(n, "money"), totals.get(n)) or 0) for n in _AGED]
        return {"type": "grouped", "unit": report.currency, "categories": [n.removeprefix("aged_") for n in _AGED],
                "series": [{"name": "arrears", "values": values}]}
    key = report.interval_key
    assert key is not None
    frame = report.aggregate([key])
    categories = [str(v) for v in frame[key]]
    if kind == "energy":
        periods = ["energy_sharp", "energy_peak", "energy_flat", "energy_valley"]
        has_periods = any(frame[p].notna().any() for p in periods)
        series = _series(report, frame, periods if has_periods else ["energy"])
        return {"type": "stacked", "unit": "kWh", "categories": categories, "series": series}
    if kind == "compare":
        unit = str(report.meta.get("unit", "kWh"))
        return {"type": "grouped", "unit": unit, "categories": categories,
                "series": _series(report, frame, ["consumption", "year_ago", "previous"])}
    return {"type": "grouped", "unit": report.currency, "categories": categories,
            "series": _series(report, frame, ["recharges", "payments", "deductions", "refunds"])}


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    exp = 10 ** len(str(int(top))) / 10 if top >= 1 else 1.0
    while exp > top:
        exp /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= top:
            return step * exp
    return 10 * exp


def bar_svg(chart: dict[str, Any], *, label: Callable[[str], str] = lambda s: s, title: str = "", width: int = 680,
            height: int = 260) -> str:
    """The chart as a standalone SVG document (bars from zero, ticks, a legend)."""
    cats: list[str] = chart["categories"]
    series: list[dict[str, Any]] = chart["series"]
    stacked = chart["type"] == "stacked"
    font = 'font-family="STSong-Light" font-size="8"'
    m_left, m_right, m_top, m_bottom = 58, 10, 28, 44
    plot_w, plot_h = width - m_left - m_right, height - m_top - m_bottom
    if stacked:
        tops = [sum(max(0.0, s["values"][i] or 0.0) for s in series) for i in range(len(cats))]
    else:
        tops = [max((s["values"][i] or 0.0) for s in series) if series else 0.0 for i in range(len(cats))]
    lows = [min([0.0] + [(s["values"][i] or 0.0) for s in series]) for i in range(len(cats))]
    top = _nice(max(tops, default=0.0))
    low = -_nice(-min(lows, default=0.0)) if min(lows, default=0.0) < 0 else 0.0
    span = top - low or 1.0

    def y(v: float) -> float:
        return m_top + plot_h - (v - low) / span * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    if title:
        parts.append(f'<text x="{m_left}" y="14" font-family="STSong-Light" font-size="10">{escape(title)}</text>')
    parts.append(f'<text x="4" y="{m_top - 6}" {font}>{escape(chart["unit"])}</text>')
    for i in range(5):
        v = low + span * i / 4
        parts.append(f'<line x1="{m_left}" x2="{width - m_right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#dddddd" stroke-width="0.5"/>')
        parts.append(f'<text x="{m_left - 4}" y="{y(v) + 3:.1f}" text-anchor="end" {font}>{v:,.6g}</text>')
    n = max(1, len(cats))
    step = plot_w / n
    every = max(1, -(-n // 14))
    for i, cat in enumerate(cats):
        x0 = m_left + i * step
        base = 0.0
        inner = step * 0.8 / (1 if stacked else max(1, len(series)))
        for j, s in enumerate(series):
            v = s["values"][i]
            if v is None:
                continue
            color = COLORS[j % len(COLORS)]
            if stacked:
                y1, y2 = y(base + max(v, 0.0)), y(base)
                base += max(v, 0.0)
                x = x0 + step * 0.1
            else:
                y1, y2 = (y(v), y(0.0)) if v >= 0 else (y(0.0), y(v))
                x = x0 + step * 0.1 + j * inner
            parts.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{max(inner, 0.5):.1f}" height="{max(y2 - y1, 0.0):.1f}" fill="{color}"/>')
        if i % every == 0:
            parts.append(f'<text x="{x0 + step / 2:.1f}" y="{height - m_bottom + 12}" text-anchor="middle" {font}>{escape(cat)}</text>')
    parts.append(f'<line x1="{m_left}" x2="{width - m_right}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" stroke="#333333" stroke-width="0.8"/>')
    lx = m_left
    for j, s in enumerate(series):
        name = label(s["name"])
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="8" height="8" fill="{COLORS[j % len(COLORS)]}"/>')
        parts.append(f'<text x="{lx + 11}" y="{height - 9}" {font}>{escape(name)}</text>')
        lx += 20 + 7 * max(4, len(name))
    parts.append("</svg>")
    return "".join(parts)
