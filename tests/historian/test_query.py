"""Queries on every backend, from interval data the aggregator made out of a real tag stream:
sums equal register differences over any range, time-of-use periods, gaps, groups, calendar
resampling, CSV and JSON export, and clear errors for bad parameters."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from historian import (
    Backend,
    HistoryQuery,
    IntervalAggregator,
    IntervalGrid,
    IntervalRecord,
    QueryError,
    parse_interval,
    parse_time,
    run_query,
)
from historian.backends.base import DAY, Aggregate, Bucketing
from historian.export import to_csv, to_rows
from tags import TagDB

from .producers import SyntheticMeter, tou_period

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, tzinfo=TZ)
GRID = IntervalGrid(900, TZ)
POLL = timedelta(minutes=5)
DAYS = 3


@dataclass
class Site:
    """Three meters polled every 5 minutes for three days. E-2 is offline 10:00-12:00 on day 1;
    E-3 is in the same room as E-2."""

    meters: dict[str, SyntheticMeter]
    polls: dict[str, list[tuple[datetime, dict[str, Decimal]]]] = field(default_factory=dict)
    intervals: list[IntervalRecord] = field(default_factory=list)

    def reading(self, meter: str, register: str, before: datetime) -> Decimal:
        """The last reading polled before ``before`` (the first one if there is none)."""
        taken = [r for ts, r in self.polls[meter] if ts < before]
        return (taken[-1] if taken else self.polls[meter][0][1])[register]


@pytest.fixture
async def site(backend: Backend) -> Site:
    db = TagDB()
    sub = db.subscribe(include_reported=True, maxsize=1_000_000)
    agg = IntervalAggregator(GRID, T0.timestamp(), delay_s=10)
    s = Site({m: SyntheticMeter(db, m, start_kwh=k) for m, k in (("E-1", "100.00"), ("E-2", "2000.50"), ("E-3", "7.77"))})
    s.polls = {m: [] for m in s.meters}
    t = T0 + timedelta(seconds=20)
    step = 0
    while t < T0 + timedelta(days=DAYS):
        for n, (mid, m) in enumerate(s.meters.items()):
            m.online = not (mid == "E-2" and T0 + timedelta(hours=10) <= t < T0 + timedelta(hours=12))
            m.consume(Decimal((step * (n + 3)) % 17) / 100, t.hour)
            m.poll(t, power=float((step + n) % 9), voltage=220.0 + n)
            if m.online:
                s.polls[mid].append((t, dict(m.registers)))
        step += 1
        t += POLL
        for change in sub.drain():
            agg.feed(change)
    records = agg.close_due((T0 + timedelta(days=DAYS, minutes=1)).timestamp())
    assert len(records) == 3 * 96 * DAYS
    for k in range(0, len(records), 500):
        await backend.write_intervals(records[k:k + 500])
    days = agg.take_days()
    assert len(days) == 3 * DAYS
    await backend.write_days(days)
    s.intervals = records
    return s


def q(groups: dict[str, list[str]], points: list[str], start: datetime, end: datetime, interval: str | None = None, agg: str | None = None, group_by: str = "meter") -> HistoryQuery:
    return HistoryQuery(groups, points, start, end, parse_interval(interval, 900), agg, group_by)


def dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


async def test_daily_energy_equals_register_difference(backend: Backend, site: Site) -> None:
    day1 = T0 + timedelta(days=1)
    frame = await run_query(backend, q({m: [m] for m in site.meters}, ["energy_total"], day1, T0 + timedelta(days=DAYS), "1d"), GRID)
    assert list(frame.columns) == ["time", "meter", "point", "value", "intervals", "flags"]
    assert len(frame) == 3 * (DAYS - 1)
    for row in frame.itertuples():
        end = row.time + timedelta(days=1)
        expected = site.reading(row.meter, "energy_total", end) - site.reading(row.meter, "energy_total", row.time)
        assert dec(row.value) == expected, row
        assert row.intervals == 96 and row.flags == ""
    assert frame["time"].iloc[0] == pd.Timestamp(day1)  # local midnight, in the site's zone


@pytest.mark.parametrize(("start_h", "end_h"), [(0, 72), (13, 14), (11, 37), (26, 71)])
async def test_any_range_sums_to_the_register_difference(backend: Backend, site: Site, start_h: int, end_h: int) -> None:
    start, end = T0 + timedelta(hours=start_h), T0 + timedelta(hours=end_h)
    frame = await run_query(backend, q({"E-1": ["E-1"], "E-3": ["E-3"]}, ["energy_total", "energy_valley"], start, end), GRID)
    for (meter, point), rows in frame.groupby(["meter", "point"]):
        got = sum(dec(v) for v in rows["value"])
        before = site.reading(meter, point, start) if start_h else site.polls[meter][0][1][point]
        assert got == site.reading(meter, point, end) - before, (meter, point)
        assert len(rows) == (end_h - start_h) * 4


async def test_tou_deltas_land_in_their_periods(backend: Backend, site: Site) -> None:
    day = T0 + timedelta(days=1)
    points = ["energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley"]
    frame = await run_query(backend, q({"E-1": ["E-1"]}, points, day, day + timedelta(days=1), "1h"), GRID)
    wide = frame.pivot(index="time", columns="point", values="value")
    for hour_start, row in wide.iterrows():
        period = f"energy_{tou_period(hour_start.hour)}"
        # consumption of an hour sits in that hour's period register only (the poll at :00:20
        # still belongs to the hour)
        others = [p for p in points[1:] if p != period]
        assert all(row[p] == 0 for p in others), (hour_start, row.to_dict())
        assert dec(row[period]) == dec(row["energy_total"])


async def test_gap_is_empty_then_lands_flagged(backend: Backend, site: Site) -> None:
    frame = await run_query(
        backend, q({"E-2": ["E-2"]}, ["energy_total", "good_share"], T0 + timedelta(hours=9), T0 + timedelta(hours=13)), GRID
    )
    energy = frame[frame.point == "energy_total"].set_index("time")
    offline = energy.loc[pd.Timestamp(T0 + timedelta(hours=10)):pd.Timestamp(T0 + timedelta(hours=11, minutes=45))]
    assert len(offline) == 8 and offline["value"].isna().all() and (offline["intervals"] == 0).all()
    back = energy.loc[pd.Timestamp(T0 + timedelta(hours=12))]
    assert back["flags"] == "gap"
    expected = site.reading("E-2", "energy_total", T0 + timedelta(hours=12, minutes=15)) - site.reading(
        "E-2", "energy_total", T0 + timedelta(hours=10)
    )
    assert dec(back["value"]) == expected
    share = frame[frame.point == "good_share"].set_index("time")["value"]
    assert share.loc[pd.Timestamp(T0 + timedelta(hours=9))] == 1.0
    assert share.loc[pd.Timestamp(T0 + timedelta(hours=10, minutes=30))] == 0.0
    # a day bucket that holds a gap says so
    daily = await run_query(backend, q({"E-2": ["E-2"]}, ["energy_total"], T0, T0 + timedelta(days=1), "1d"), GRID)
    assert set(daily["flags"].iloc[0].split(",")) == {"gap", "first"}


async def test_groups_analogs_and_aggregations(backend: Backend, site: Site) -> None:
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=2)
    room = await run_query(backend, q({"R-1": ["E-2", "E-3"], "R-2": ["E-1"]}, ["energy_total"], start, end, "1d", group_by="room"), GRID)
    assert list(room.columns)[1] == "room" and list(room["room"]) == ["R-1", "R-2"]
    r1 = room.set_index("room").loc["R-1"]
    expected = sum(site.reading(m, "energy_total", end) - site.reading(m, "energy_total", start) for m in ("E-2", "E-3"))
    assert dec(r1["value"]) == expected and r1["intervals"] == 192

    hourly = await run_query(backend, q({"E-1": ["E-1"]}, ["power"], start, start + timedelta(hours=2), "1h"), GRID)
    stored = await run_query(backend, q({"E-1": ["E-1"]}, ["power"], start, start + timedelta(hours=2)), GRID)
    assert math.isclose(hourly["value"].iloc[0], stored["value"].iloc[:4].mean())
    hi = await run_query(backend, q({"E-1": ["E-1"]}, ["power", "energy_total"], start, end, "1d", agg="max"), GRID)
    assert hi.set_index("point").loc["power", "value"] == 8.0
    interval_max = (await run_query(backend, q({"E-1": ["E-1"]}, ["energy_total"], start, end), GRID))["value"].max()
    assert hi.set_index("point").loc["energy_total", "value"] == interval_max
    samples = await run_query(backend, q({"E-1": ["E-1"]}, ["samples"], start, end, "1d"), GRID)
    assert samples["value"].iloc[0] == 288  # a poll every 5 minutes


async def test_weeks_and_months_follow_the_local_calendar(backend: Backend, site: Site) -> None:
    end = T0 + timedelta(days=DAYS)
    total = site.reading("E-1", "energy_total", end) - site.polls["E-1"][0][1]["energy_total"]
    month = await run_query(backend, q({"E-1": ["E-1"]}, ["energy_total"], T0, end, "1mo"), GRID)
    assert len(month) == 1 and month["time"].iloc[0] == pd.Timestamp(T0) and dec(month["value"].iloc[0]) == total
    week = await run_query(backend, q({"E-1": ["E-1"]}, ["energy_total"], T0, end, "1w"), GRID)
    # 1 May 2024 is a Wednesday: the week starts on Monday 29 April
    assert week["time"].iloc[0] == pd.Timestamp(datetime(2024, 4, 29, tzinfo=TZ))
    assert dec(week["value"].sum()) == total


@pytest.mark.parametrize("interval", ["1d", "1mo", "1h"])
async def test_wide_answer_is_the_long_one_side_by_side(backend: Backend, site: Site, interval: str) -> None:
    """``wide=True``: a row per bucket and group, a value column per point (no flags to read: the
    backend is not asked for them), the same values as the long answer."""
    start, end = T0 + timedelta(hours=5), T0 + timedelta(days=DAYS, hours=-3) if interval != "1h" else T0 + timedelta(hours=7)
    groups = {"R-1": ["E-2", "E-3"], "R-2": ["E-1"], "R-3": []}
    points = ["energy_total", "energy_peak", "power", "samples"]
    long = await run_query(backend, q(groups, points, start, end, interval, group_by="room"), GRID)
    query = q(groups, points, start, end, interval, group_by="room")
    wide = await run_query(backend, HistoryQuery(**{**query.__dict__, "wide": True}), GRID)
    assert list(wide.columns) == ["time", "room", *points]
    side = long.pivot(index=["room", "time"], columns="point", values="value")
    assert list(zip(wide["room"], wide["time"], strict=True)) == list(side.index)
    for p in points:
        assert wide[p].tolist() == pytest.approx(side[p].tolist(), nan_ok=True, rel=0, abs=0)
    assert wide["energy_total"].notna().sum() == 2 * len(wide) // 3  # R-3 has no meters: no values


async def test_empty_buckets_are_rows(backend: Backend, site: Site) -> None:
    later = T0 + timedelta(days=10)
    frame = await run_query(backend, q({"E-1": ["E-1"]}, ["energy_total"], later, later + timedelta(days=2), "1d"), GRID)
    assert len(frame) == 2 and frame["value"].isna().all() and list(frame["intervals"]) == [0, 0]


async def test_csv_and_json_export(backend: Backend, site: Site) -> None:
    day = T0 + timedelta(days=1)
    frame = await run_query(backend, q({"E-1": ["E-1"]}, ["energy_total", "power"], day, day + timedelta(hours=2), "1h"), GRID)
    text = to_csv(frame)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 4 and list(parsed[0]) == ["time", "meter", "point", "value", "intervals", "flags"]
    assert parsed[0]["time"] == "2024-05-02T00:00:00+08:00"
    energy = [r for r in parsed if r["point"] == "energy_total"]
    assert Decimal(energy[0]["value"]) == site.reading("E-1", "energy_total", day + timedelta(hours=1)) - site.reading("E-1", "energy_total", day)
    rows = json.loads(json.dumps(to_rows(frame)))
    assert rows[0]["time"] == "2024-05-02T00:00:00+08:00" and isinstance(rows[0]["intervals"], int)
    assert {r["point"] for r in rows} == {"energy_total", "power"}
    assert Decimal(repr(rows[0]["value"])) == Decimal(energy[0]["value"])


async def test_bad_parameters_name_themselves(backend: Backend) -> None:
    end = T0 + timedelta(days=1)
    cases = [
        (lambda: q({"E-1": ["E-1"]}, ["energy"], T0, end), "point"),
        (lambda: q({"E-1": ["E-1"]}, ["power"], T0, end, agg="sum"), "agg"),
        (lambda: q({"E-1": ["E-1"]}, ["good_share"], T0, end, agg="max"), "agg"),
        (lambda: q({"E-1": ["E-1"]}, ["power"], end, T0), "end"),
        (lambda: q({"E-1": ["E-1"]}, [], T0, end), "point"),
    ]
    for make, param in cases:
        with pytest.raises(QueryError) as err:
            await run_query(backend, make(), GRID)
        assert err.value.param == param
    with pytest.raises(QueryError, match="rows") as err:
        await run_query(backend, q({f"M{i}": [f"M{i}"] for i in range(100)}, ["energy_total"], T0, T0 + timedelta(days=365)), GRID, max_rows=100_000)
    assert err.value.param == "interval"


@pytest.mark.parametrize(
    ("text", "message"),
    [("7min", "does not divide a day"), ("5min", "not a multiple"), ("2d", "does not divide a day"), ("1y", "expected e.g."), ("2w", "one at a time"), ("0h", "at least 1")],
)
def test_parse_interval_errors(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as err:
        parse_interval(text, 900)
    assert err.value.param == "interval"


def test_parse_interval_and_time() -> None:
    assert parse_interval("15min", 900).seconds == 900  # type: ignore[union-attr]
    assert parse_interval("1H", 900).seconds == 3600  # type: ignore[union-attr]
    assert parse_interval("", 900) is None and parse_interval(None, 900) is None
    assert parse_time("2024-05-01", TZ, "start") == T0
    assert parse_time("2024-05-01T00:00:00Z", TZ, "start").utcoffset() == timedelta(0)
    assert parse_time("2024-05-01T08:00:00+08:00", TZ, "start") == datetime(2024, 5, 1, 0, tzinfo=ZoneInfo("UTC"))
    for bad, msg in (("2024-05-01T00:00:00", "no UTC offset"), ("yesterday", "not an ISO 8601"), ("", "missing"), ("2024-13-01", "not a date")):
        with pytest.raises(QueryError, match=msg) as err:
            parse_time(bad, TZ, "start")
        assert err.value.param == "start"


class WithoutRollups:
    """The same backend, with days computed from the intervals instead of read from rollups."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    async def fetch_days(self, meters: list[str], aggregates: list[Aggregate], start: int, end: int) -> pd.DataFrame:
        return await self.backend.fetch_buckets(meters, aggregates, start, end, Bucketing(DAY, TZ, 0))


@pytest.mark.parametrize("agg", [None, "mean", "min", "max"])
async def test_days_from_rollups_equal_days_from_intervals(backend: Backend, site: Site, agg: str | None) -> None:
    """Whole days come from the day rollups (partial days from the intervals): same answers as
    aggregating the intervals, for every kind of point and aggregation."""
    points = ["energy_total", "energy_peak", "power", "voltage", "samples"] + (["good_share"] if agg == "mean" else [])
    groups = {"E-1": ["E-1"], "R": ["E-2", "E-3"]}
    for start, end, interval in (
        (T0, T0 + timedelta(days=DAYS), "1d"),
        (T0 + timedelta(hours=5), T0 + timedelta(days=DAYS) - timedelta(hours=3), "1d"),
        (T0, T0 + timedelta(days=DAYS), "1mo"),
    ):
        query = q(groups, points, start, end, interval, agg)
        fast = await run_query(backend, query, GRID)
        slow = await run_query(WithoutRollups(backend), query, GRID)  # type: ignore[arg-type]
        assert len(fast) == len(slow) == len(groups) * len(points) * (1 if interval == "1mo" else DAYS)
        assert list(fast["intervals"]) == list(slow["intervals"])
        assert list(fast["flags"]) == list(slow["flags"])
        for a, b in zip(fast["value"], slow["value"], strict=False):
            assert a == b or math.isclose(a, b, rel_tol=1e-12)
        energy = fast[fast.point == "energy_total"]["value"]
        assert energy.notna().all()


async def test_rollups_are_what_the_aggregator_made(backend: Backend, site: Site) -> None:
    from historian.rollup import day_rollups

    assert sorted(day_rollups(site.intervals, TZ), key=lambda r: (r.meter, r.start)) == sorted(
        await _stored_days(backend), key=lambda r: (r.meter, r.start)
    )


async def _stored_days(backend: Backend) -> list[IntervalRecord]:
    from historian.rollup import ROLLUP

    aggs = [Aggregate(f, fn) for f, fn, _ in ROLLUP]  # type: ignore[arg-type]
    frame = await backend.fetch_days(["E-1", "E-2", "E-3"], aggs, int(T0.timestamp()), int((T0 + timedelta(days=DAYS)).timestamp()))
    out = []
    for row in frame.to_dict("records"):
        values = {k: v for k, v in row.items() if k not in ("time", "meter") and v is not None and v == v}
        values = {k: int(v) if float(v).is_integer() and not k.endswith(("_avg__sum", "_min__min", "_max__max")) else float(v) for k, v in values.items()}
        out.append(IntervalRecord(row["meter"], int(row["time"]), 86400, values))
    return out
