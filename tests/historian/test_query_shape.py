"""The query's answer is built from integer codes (``_cells``) in its final order, not merged,
grouped and sorted on strings: on random backend frames (meters in several groups, in none,
times outside the buckets asked, missing values, every kind of point and aggregation, calendar
weeks and months) the long answer equals the former implementation's (kept below as the
reference), and the wide answer is the long one's values side by side. The SQLite backend's
day rollups and intervals still come in (time, meter) order."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from historian import HistoryQuery, IntervalRecord, SqliteSettings
from historian.backends.base import DAY, Aggregate
from historian.backends.sqlite import SqliteBackend
from historian.grid import IntervalGrid, local_midnight
from historian.query import (
    _ALLOWED,
    _REGISTERS,
    Resample,
    _calendar_starts,
    _flags,
    _plan,
    _point_value,
    _reduce,
    _shape,
    bucket_starts,
    default_agg,
)
from historian.rollup import DAY_INT_FIELDS

TZ = ZoneInfo("Europe/Berlin")  # a DST change inside the range
T0 = datetime(2024, 3, 25, tzinfo=TZ)
GRID = IntervalGrid(900, TZ)


def reference_shape(frame: pd.DataFrame, query: HistoryQuery, aggregates: list[Aggregate], starts: list[int], tz: Any) -> pd.DataFrame:
    """``_shape`` as it was (merge on the meter strings, group, reindex, concat, sort)."""
    key = query.group_by
    groups = sorted(query.groups)
    cols = [a.column for a in aggregates]
    if len(frame):
        frame = frame.copy()
        for c in cols:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        frame["time"] = frame["time"].astype("int64")
        r = query.resample
        if r is not None and r.calendar is not None:
            frame["time"] = _calendar_starts(frame["time"], r.calendar, tz)
        membership = pd.DataFrame(
            [(m, g) for g, ms in query.groups.items() for m in ms], columns=["meter", "_group"]
        ).astype({"meter": "object", "_group": "object"})
        frame["meter"] = frame["meter"].astype("object")
        frame = frame.merge(membership, on="meter", how="inner")
        grouped = frame.groupby(["time", "_group"]).agg({a.column: _reduce(a.func) for a in aggregates})
    else:
        grouped = pd.DataFrame(columns=cols, index=pd.MultiIndex.from_arrays([[], []], names=["time", "_group"]))
    index = pd.MultiIndex.from_product([starts, groups], names=["time", "_group"])
    grouped = grouped.reindex(index)
    times = pd.to_datetime(np.repeat(np.asarray(starts, dtype="int64"), len(groups)), unit="s", utc=True).tz_convert(tz)
    group_col = np.tile(np.asarray(groups, dtype=object), len(starts))
    parts: list[pd.DataFrame] = []
    flags = _flags(grouped) if any(p in _REGISTERS for p in query.points) else None
    for p in query.points:
        value, count = _point_value(grouped, p, query.agg or default_agg(p))
        parts.append(pd.DataFrame({
            "time": times, key: group_col, "point": p, "value": value.to_numpy(dtype="float64", na_value=np.nan),
            "intervals": count.fillna(0).to_numpy(dtype="int64"), "flags": flags if p in _REGISTERS else "",
        }))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values([key, "point", "time"], kind="stable", ignore_index=True)


METERS = ["E-1", "E-2", "E-3", "W-1", "M-9"]
RESAMPLES = {"1d": Resample("1d", DAY), "1w": Resample("1w", DAY, "week"), "1mo": Resample("1mo", DAY, "month"),
             "1h": Resample("1h", 3600)}
value = st.one_of(st.none(), st.integers(-5, 10**9), st.just(float("nan")))


@st.composite
def cases(draw: Any) -> tuple[pd.DataFrame, HistoryQuery, list[Aggregate], list[int]]:
    resample = RESAMPLES[draw(st.sampled_from(sorted(RESAMPLES)))]
    days = draw(st.integers(1, 40 if resample.seconds == DAY else 2))
    start, end = T0 + timedelta(days=draw(st.integers(0, 3))), T0 + timedelta(days=days + 3)
    names = draw(st.lists(st.sampled_from(["G1", "G2", "G3", "G10"]), min_size=1, max_size=4, unique=True))
    groups = {g: draw(st.lists(st.sampled_from(METERS[:4]), max_size=3)) for g in names}  # M-9: in no group
    points = draw(st.lists(st.sampled_from(sorted(_ALLOWED)), min_size=1, max_size=4))
    agg = draw(st.one_of(st.none(), st.sampled_from(["sum", "mean", "min", "max"])))
    if agg is not None:
        points = [p for p in points if agg in _ALLOWED[p]] or (["energy_total"] if agg != "mean" else ["good_share"])
    query = HistoryQuery(groups, points, start, end, resample, agg, "room")
    starts = bucket_starts(query, GRID)
    aggregates = _plan(points, agg)
    if resample.calendar is not None:  # a backend answers day buckets; the query turns them into weeks or months
        times = [local_midnight(start.date() + timedelta(days=d), TZ) for d in range((end - start).days)]
    else:
        times = list(starts)
    times += [int(end.timestamp()) + 7 * DAY]  # outside the buckets asked
    rows = draw(st.lists(st.tuples(st.sampled_from(times), st.sampled_from(METERS), st.lists(value, min_size=len(aggregates),
                                                                                              max_size=len(aggregates))), max_size=60))
    frame = pd.DataFrame({"time": pd.Series([t for t, _, _ in rows], dtype="int64"), "meter": pd.Series([m for _, m, _ in rows], dtype=object),
                          **{a.column: pd.Series([vs[i] for _, _, vs in rows], dtype=object) for i, a in enumerate(aggregates)}})
    return frame, query, aggregates, starts


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_answer_equals_the_former_shaping(case: tuple[pd.DataFrame, HistoryQuery, list[Aggregate], list[int]]) -> None:
    frame, query, aggregates, starts = case
    long = _shape(frame, query, aggregates, starts, TZ)
    pd.testing.assert_frame_equal(long, reference_shape(frame, query, aggregates, starts, TZ))
    wide = _shape(frame, HistoryQuery(**{**query.__dict__, "wide": True}), aggregates, starts, TZ)
    points = list(dict.fromkeys(query.points))
    assert list(wide.columns) == ["time", "room", *points]
    side = long.drop_duplicates(["room", "point", "time"]).pivot(index=["room", "time"], columns="point", values="value")
    assert len(wide) == len(side)
    for p in points:
        np.testing.assert_array_equal(wide[p].to_numpy(), side[p].to_numpy())
    assert list(zip(wide["room"], wide["time"], strict=True)) == list(side.index)


async def test_sqlite_days_come_by_time_then_meter(tmp_path: Path) -> None:
    backend = SqliteBackend(SqliteSettings(tmp_path / "h.db"))
    await backend.open()
    try:
        day0 = local_midnight(date(2024, 5, 1), TZ)
        meters = ["E-10", "E-2", "E-1", "B-7"]
        await backend.write_days([IntervalRecord(m, day0 + d * DAY, DAY, {"energy_total__sum": i * 10 + d, "energy_total__count": 96})
                                  for d in (2, 0, 1) for i, m in enumerate(meters)])
        aggs = [Aggregate("energy_total", "sum"), Aggregate("energy_total", "count")]
        got = await backend.fetch_days(meters[:3], aggs, day0, day0 + 2 * DAY)
        assert list(got.columns) == ["time", "meter", "energy_total__sum", "energy_total__count"]
        assert got.index.tolist() == list(range(6))
        assert [tuple(r) for r in got.itertuples(index=False, name=None)] == [
            (day0 + d * DAY, m, meters.index(m) * 10 + d, 96) for d in (0, 1) for m in sorted(meters[:3])]
        assert got["energy_total__sum"].dtype == "int64" and "energy_total__sum" in DAY_INT_FIELDS
        assert len(await backend.fetch_days([], aggs, day0, day0 + DAY)) == 0
        assert len(await backend.fetch_days(["E-1"], aggs, day0 + 5 * DAY, day0 + 6 * DAY)) == 0
        # the stored intervals likewise
        await backend.write_intervals([IntervalRecord(m, day0 + k * 900, 900, {"energy_total": i * 10 + k})
                                       for k in (3, 0, 2, 1) for i, m in enumerate(meters)])
        got = await backend.fetch_intervals(meters[:3], ["energy_total"], day0, day0 + 3 * 900)
        assert got.index.tolist() == list(range(9))
        assert [tuple(r) for r in got.itertuples(index=False, name=None)] == [
            (day0 + k * 900, m, meters.index(m) * 10 + k) for k in (0, 1, 2) for m in sorted(meters[:3])]
    finally:
        await backend.close()
