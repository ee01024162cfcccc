"""The energy report reads the historian's wide answer (``_wide``): on random day rollups of
random groups, for every interval (the months of a year added up), the table equals the one the
report built from the long answer before (kept below as the reference)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from historian import HistoryQuery
from historian.grid import IntervalGrid, local_midnight
from historian.query import _plan, _shape, bucket_starts
from scada.reports.energy import _RESAMPLE, POINTS, _labeller, _wide
from scada.reports.params import ReportRequest

TZ = ZoneInfo("Asia/Shanghai")
GRID = IntervalGrid(900, TZ)


def reference_wide(frame: pd.DataFrame, label: Any) -> pd.DataFrame:
    """``_wide`` as it was, from the long answer."""
    codes, times = pd.factorize(frame["time"])
    labels = np.asarray([label(t.date()) for t in times], dtype=object)
    values = frame["value"].to_numpy(dtype="float64")
    micro = pd.array(np.where(np.isnan(values), 0, np.rint(values * 1_000_000)).astype("int64"), dtype="Int64")
    micro[np.isnan(values)] = pd.NA
    long = pd.DataFrame({"label": labels[codes], "group": frame["group"].to_numpy(dtype=object),
                         "point": frame["point"].map(POINTS).to_numpy(dtype=object), "v": micro})
    wide = long.groupby(["label", "group", "point"], sort=False)["v"].sum(min_count=1).unstack("point")
    wide = wide.reindex(columns=list(POINTS.values()))
    return wide.reset_index()


METERS = ["E-1", "E-2", "E-3", "W-1"]
amount = st.one_of(st.none(), st.integers(0, 10**10))


@settings(max_examples=150, deadline=None)
@given(interval=st.sampled_from(["day", "week", "month", "year"]), first=st.integers(0, 400), days=st.integers(1, 80),
       groups=st.dictionaries(st.sampled_from(["R1", "R2", "R10", "F-1"]), st.lists(st.sampled_from(METERS), min_size=1, max_size=3),
                              min_size=1, max_size=4),
       data=st.data())
def test_wide_equals_the_long_way(interval: str, first: int, days: int, groups: dict[str, list[str]], data: Any) -> None:
    day0 = dt.date(2025, 12, 1) + dt.timedelta(days=first)
    start = dt.datetime.combine(day0, dt.time(), TZ)
    end = start + dt.timedelta(days=days)
    request = ReportRequest("energy", start, end, interval, "room", tz=TZ)
    query = HistoryQuery(groups, list(POINTS), start, end, _RESAMPLE[interval], "sum", "group")
    aggregates = _plan(query.points, "sum")
    rows = data.draw(st.lists(st.tuples(st.integers(0, days - 1), st.sampled_from(METERS), st.lists(amount, min_size=len(aggregates),
                                                                                                     max_size=len(aggregates))), max_size=40))
    frame = pd.DataFrame({"time": pd.Series([local_midnight(day0 + dt.timedelta(days=d), TZ) for d, _, _ in rows], dtype="int64"),
                          "meter": pd.Series([m for _, m, _ in rows], dtype=object),
                          **{a.column: pd.Series([vs[i] for _, _, vs in rows], dtype=object) for i, a in enumerate(aggregates)}})
    starts = bucket_starts(query, GRID)
    long = _shape(frame, query, aggregates, starts, TZ)
    wide_query = HistoryQuery(**{**query.__dict__, "wide": True})
    wide = _shape(frame, wide_query, _plan(query.points, "sum", flags=False), starts, TZ)
    pd.testing.assert_frame_equal(_wide(wide, _labeller(request)), reference_wide(long, _labeller(request)))
