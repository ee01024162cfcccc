"""History answers as CSV or JSON-able rows: times in ISO 8601 with the site's offset, numbers in
their shortest exact form (an energy sum of 12.34 kWh is written ``12.34``), missing as empty /
null."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pandas as pd

__all__ = ["to_csv", "to_rows"]


def _number(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return value
    x = float(value)
    return None if math.isnan(x) else x


def to_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict per row; ``time`` as an ISO 8601 string, NaN as None."""
    columns = list(frame.columns)
    out: list[dict[str, Any]] = []
    for values in frame.itertuples(index=False, name=None):
        row: dict[str, Any] = {}
        for col, v in zip(columns, values, strict=False):
            if isinstance(v, pd.Timestamp):
                row[col] = v.isoformat()
            elif isinstance(v, float):  # numpy's float64 too: made a plain float
                row[col] = None if math.isnan(v) else float(v)
            elif hasattr(v, "item"):  # numpy scalars
                row[col] = _number(v.item()) if not isinstance(v.item(), str) else v.item()
            else:
                row[col] = v
        out.append(row)
    return out


def to_csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in to_rows(frame):
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row.values()])
    return buf.getvalue()
