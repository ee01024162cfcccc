"""History answers as CSV or JSON-able rows: times in ISO 8601 with the site's offset, numbers in
their shortest exact form (an energy sum of 12.34 kWh is written ``12.34``), missing as empty /
null."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

__all__ = ["csv_chunks", "row_chunks", "to_csv", "to_rows"]


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


def _csv_row(row: dict[str, Any]) -> list[Any]:
    return ["" if v is None else repr(v) if isinstance(v, float) else v for v in row.values()]


def to_csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in to_rows(frame):
        writer.writerow(_csv_row(row))
    return buf.getvalue()


def row_chunks(frame: pd.DataFrame, size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """:func:`to_rows` a slice at a time (for streaming a large answer)."""
    for i in range(0, len(frame), size):
        yield to_rows(frame.iloc[i : i + size])


def csv_chunks(frame: pd.DataFrame, size: int = 10_000) -> Iterator[list[list[Any]]]:
    """The CSV rows of :func:`to_csv` (without the header) a slice at a time."""
    for rows in row_chunks(frame, size):
        yield [_csv_row(r) for r in rows]
