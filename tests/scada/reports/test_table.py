"""A report's rows are formatted a column at a time (``format_column``, ``Report.texts``): the
text equals the value-at-a-time reference (``format_scaled``, ``Report.text``) on random
integers (negative, zero, int64's extremes, every scale, trimmed or not) and on random report
frames (missing values, text keys, integer columns of every dtype, Python integers beyond int64,
floats), in JSON, CSV and the CSV with its totals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scada.reports.params import ReportRequest
from scada.reports.table import Column, Report, format_column, format_scaled

INT64 = st.integers(-(2**63), 2**63 - 1)
# small, round (trailing zeros to trim) and huge values, so every branch is drawn often
VALUE = st.one_of(st.integers(-10**7, 10**7), st.builds(lambda v, e: v * 10**e, st.integers(-999, 999), st.integers(0, 15)), INT64,
                  st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 10**18, -(10**18)]))
KINDS = ("money", "energy", "volume", "percent", "count")


@settings(max_examples=400, deadline=None)
@given(values=st.lists(VALUE, max_size=40), decimals=st.one_of(st.sampled_from([0, 2, 3, 6]), st.integers(0, 22)), trim=st.booleans())
def test_format_column_is_format_scaled(values: list[int], decimals: int, trim: bool) -> None:
    assert format_column(np.asarray(values, dtype=np.int64), decimals, trim=trim) == [format_scaled(v, decimals, trim=trim) for v in values]


def _reference_rows(report: Report) -> list[list[str | None]]:
    """The rows as the report rendered them a value at a time."""
    frame = report.frame
    arrays = [frame[c.name].astype(object).where(frame[c.name].notna(), None).to_numpy() for c in report.columns]
    return [[report.text(c, v) for c, v in zip(report.columns, row, strict=True)] for row in zip(*arrays, strict=True)]


def _reference_totals(report: Report) -> list[list[str]]:
    out = []
    for level, keys, frame in report.levels()[1:]:
        if level == report.interval_key:
            continue
        names = [k.name for k in keys]
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records"):
            head = ["total" if k.name not in names else ("" if row[k.name] is None else str(row[k.name])) for k in report.keys]
            out.append(head + ["" if (v := report.text(c, row[c.name])) is None else v for c in report.values])
    out.append(["total"] * len(report.keys) + ["" if (v := report.text(c, report.totals.get(c.name))) is None else v for c in report.values])
    return out


DTYPES = ("Int64", "int64", "int32", "Int16", "uint32", "object_big", "float")


def _column(values: list[int | None], dtype: str) -> pd.Series:
    if dtype == "object_big":  # Python integers, some beyond int64, None for missing
        return pd.Series([None if v is None else v * 10**12 for v in values], dtype=object)
    if dtype == "float":
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    if dtype in ("int64", "int32", "uint32"):
        lo, hi = (0, 2**32 - 1) if dtype == "uint32" else (-(2**31), 2**31 - 1)
        return pd.Series([0 if v is None else min(max(v, lo), hi) for v in values], dtype=dtype)
    if dtype == "Int16":
        return pd.Series([None if v is None else min(max(v, -(2**15)), 2**15 - 1) for v in values], dtype="Int16")
    return pd.Series([None if v is None else min(max(v, -(2**62)), 2**62) for v in values], dtype="Int64")


columns = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(DTYPES)), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), kinds=columns, rows=st.integers(0, 30), minor_units=st.sampled_from([0, 2, 3]), size=st.integers(1, 12))
def test_chunks_equal_value_at_a_time(data: Any, kinds: list[tuple[str, str]], rows: int, minor_units: int, size: int) -> None:
    day = st.sampled_from(["2026-06-01", "2026-06-02", "2026-06-03"])
    room = st.one_of(st.none(), st.sampled_from(["R1", "R2", "房间3"]))
    frame = pd.DataFrame({"day": data.draw(st.lists(day, min_size=rows, max_size=rows)),
                          "room": pd.Series(data.draw(st.lists(room, min_size=rows, max_size=rows)), dtype=object)})
    values = []
    for i, (kind, dtype) in enumerate(kinds):
        name = f"v{i}"
        frame[name] = _column(data.draw(st.lists(st.one_of(st.none(), VALUE), min_size=rows, max_size=rows)), dtype)
        values.append(Column(name, kind))
    request = ReportRequest("energy", dt.datetime(2026, 6, 1, tzinfo=dt.UTC), dt.datetime(2026, 6, 4, tzinfo=dt.UTC), "day", "room")
    report = Report(request, [Column("day"), Column("room")], values, frame, minor_units, "CNY", interval_key="day", group_key="room")
    expected = _reference_rows(report)
    names = [c.name for c in report.columns]
    assert [row for chunk in report.json_chunks(size) for row in chunk] == [dict(zip(names, r, strict=True)) for r in expected]
    assert [row for chunk in report.csv_chunks(size) for row in chunk] == [["" if v is None else v for v in r] for r in expected]
    if all(dtype not in ("float", "object_big") for _, dtype in kinds):  # the levels' sums need integers in int64
        report.finish()
        totals = [row for chunk in report.csv_chunks_with_totals() for row in chunk]
        assert totals[len(expected):] == _reference_totals(report)
