"""Each backend against its real server: keyed writes, reads, buckets in the site's calendar,
raw points, retention, failures."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from historian import (
    Backend,
    BackendRejected,
    BackendUnavailable,
    InfluxSettings,
    IntervalRecord,
    RawPoint,
    make_backend,
)
from historian.backends.base import DAY, Aggregate, Bucketing
from historian.backends.sqlite import SqliteBackend, offset_segments
from historian.grid import phase_for

from ..services import InfluxServer, free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = int(datetime(2024, 5, 1, tzinfo=SHANGHAI).timestamp())


def record(meter: str, start: int, energy: int | None, **extra: int | float) -> IntervalRecord:
    values: dict[str, int | float] = {"samples": 3, "good_samples": 3, "flag_gap": 0, "flag_reset": 0, "flag_first": 0}
    if energy is not None:
        values["energy_total"] = energy
    values.update(extra)
    return IntervalRecord(meter, start, 900, values)


def rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    out = []
    for row in frame.itertuples(index=False, name=None):
        out.append(tuple(None if isinstance(v, float) and v != v else (int(v) if isinstance(v, float) and v.is_integer() else v) for v in row))
    return sorted(out, key=lambda r: (r[0], r[1]))


async def test_write_read_and_rewrite_replaces(backend: Backend) -> None:
    recs = [
        record("E-1", T0, 1_230_000, power_min=1.0, power_avg=1.5, power_max=2.25),
        record("E-1", T0 + 900, None, samples=2, good_samples=0),  # no good reading: no delta
        record("E-2", T0, 7, flag_gap=1, gap_from=T0 - 3600, energy_peak=7),
        record("E-1", T0 + 1800, 999_999_999_999, flag_reset=1),
    ]
    await backend.write_intervals(recs)
    fields = ["energy_total", "energy_peak", "samples", "good_samples", "flag_gap", "flag_reset", "gap_from", "power_avg"]
    got = await backend.fetch_intervals(["E-1", "E-2"], fields, T0, T0 + 3600)
    assert rows(got) == [
        (T0, "E-1", 1_230_000, None, 3, 3, 0, 0, None, 1.5),
        (T0, "E-2", 7, 7, 3, 3, 1, 0, T0 - 3600, None),
        (T0 + 900, "E-1", None, None, 2, 0, 0, 0, None, None),
        (T0 + 1800, "E-1", 999_999_999_999, None, 3, 3, 0, 1, None, None),
    ]
    # the same keys again (a retried batch, a corrected record) replace, never duplicate
    await backend.write_intervals([record("E-1", T0, 1_240_000, power_avg=1.5), *recs[1:]])
    got = await backend.fetch_intervals(["E-1", "E-2"], ["energy_total"], T0, T0 + 3600)
    assert len(got) == 4
    assert rows(got)[0] == (T0, "E-1", 1_240_000)
    # range and meter filters
    assert len(await backend.fetch_intervals(["E-2"], ["samples"], T0, T0 + 3600)) == 1
    assert len(await backend.fetch_intervals(["E-1"], ["samples"], T0 + 900, T0 + 1800)) == 1
    assert len(await backend.fetch_intervals(["nope"], ["samples"], T0, T0 + 3600)) == 0


async def test_buckets_follow_the_site_calendar(backend: Backend) -> None:
    # two local days of 15-minute intervals; interval k consumes k µkWh
    recs = [record("E-1", T0 + 900 * k, k, power_avg=float(k % 7)) for k in range(192)]
    recs += [record("E-2", T0 + 900 * k, 10) for k in range(96, 192)]
    await backend.write_intervals(recs)
    aggs = [Aggregate("energy_total", "sum"), Aggregate("energy_total", "count"), Aggregate("energy_total", "max"), Aggregate("power_avg", "min")]
    daily = await backend.fetch_buckets(["E-1", "E-2"], aggs, T0, T0 + 2 * DAY, Bucketing(DAY, SHANGHAI, 0))
    assert rows(daily) == [
        (T0, "E-1", sum(range(96)), 96, 95, 0.0),
        (T0 + DAY, "E-1", sum(range(96, 192)), 96, 191, 0.0),
        (T0 + DAY, "E-2", 960, 96, 10, None),
    ]
    hourly = await backend.fetch_buckets(["E-1"], aggs[:2], T0 + 3600, T0 + 3 * 3600, Bucketing(3600, SHANGHAI, phase_for(SHANGHAI, 3600)))
    assert rows(hourly) == [(T0 + 3600, "E-1", 4 + 5 + 6 + 7, 4), (T0 + 7200, "E-1", 8 + 9 + 10 + 11, 4)]
    # a bucket starting before the range holds only the intervals inside it
    part = await backend.fetch_buckets(["E-1"], aggs[:2], T0 + 1800, T0 + 3600, Bucketing(3600, SHANGHAI, 0))
    assert rows(part) == [(T0, "E-1", 2 + 3, 2)]


async def test_raw_points(backend: Backend) -> None:
    us = T0 * 1_000_000
    pts = [RawPoint("E-1.power", us + 1, 1.5, 2), RawPoint("E-1.power", us + 2_000_000, None, 0), RawPoint("system:x.y", us, 7.0, 2)]
    await backend.write_raw(pts)
    await backend.write_raw(pts[:1])  # replaces
    got = await backend.fetch_raw(["E-1.power"], us, us + 10_000_000)
    assert rows(got) == [(us + 1, "E-1.power", 1.5, 2), (us + 2_000_000, "E-1.power", None, 0)]
    assert rows(await backend.fetch_raw(["system:x.y"], us, us + 1)) == [(us, "system:x.y", 7, 2)]


async def test_reading_what_was_never_written_is_empty(backend: Backend) -> None:
    assert len(await backend.fetch_intervals(["E-1"], ["samples"], T0, T0 + 60)) == 0
    assert len(await backend.fetch_buckets(["E-1"], [Aggregate("samples", "sum")], T0, T0 + DAY, Bucketing(DAY, SHANGHAI, 0))) == 0
    assert len(await backend.fetch_raw(["E-1.power"], 0, 10)) == 0


@pytest.mark.influx
@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_unreachable_influx_is_unavailable(api: str) -> None:
    port = free_port()  # nothing listens there
    settings = InfluxSettings(url=f"http://127.0.0.1:{port}", api=api, token="t", org="o", bucket="b", timeout_s=2)  # type: ignore[arg-type]
    backend = make_backend(settings)
    await backend.open()
    try:
        with pytest.raises(BackendUnavailable):
            await backend.prepare() if api == "v1" else await backend.write_intervals([record("E-1", T0, 1)])
        with pytest.raises(BackendUnavailable):
            await backend.write_intervals([record("E-1", T0, 1)])
        with pytest.raises(BackendUnavailable):
            await backend.fetch_intervals(["E-1"], ["samples"], T0, T0 + 900)
    finally:
        await backend.close()


@pytest.mark.influx
async def test_influx_refusals(influx_server: InfluxServer, influx_db: str) -> None:
    backend = make_backend(InfluxSettings(url=influx_server.url, database=influx_db, username="someone", password="pw"))
    await backend.open()
    try:
        await backend.prepare()
        # a field that already holds another type: refused for good, not retried for ever
        influx_server.query(f'CREATE DATABASE "{influx_db}"')
        body = f"interval,meter=E-9 power_avg=1i {T0}"
        import urllib.request

        req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}&rp=scada_intervals&precision=s", data=body.encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).close()
        with pytest.raises(BackendRejected, match="conflict"):
            await backend.write_intervals([record("E-9", T0 + 900, 1, power_avg=1.5)])
    finally:
        await backend.close()


@pytest.mark.influx
async def test_influx_v1_retention_policies(influx_server: InfluxServer, influx_db: str) -> None:
    settings = InfluxSettings(url=influx_server.url, database=influx_db, interval_retention_days=0, raw_retention_days=7)
    backend = make_backend(settings)
    await backend.open()
    try:
        await backend.prepare()
        await backend.prepare()  # idempotent
    finally:
        await backend.close()
    answer = influx_server.query(f'SHOW RETENTION POLICIES ON "{influx_db}"')
    policies = {row[0]: row[1] for row in answer["results"][0]["series"][0]["values"]}
    assert policies["scada_intervals"] == "0s" and policies["scada_raw"] == "168h0m0s"
    # a changed setting changes the policy
    backend = make_backend(InfluxSettings(url=influx_server.url, database=influx_db, raw_retention_days=2))
    await backend.open()
    try:
        await backend.prepare()
    finally:
        await backend.close()
    answer = influx_server.query(f'SHOW RETENTION POLICIES ON "{influx_db}"')
    assert {row[0]: row[1] for row in answer["results"][0]["series"][0]["values"]}["scada_raw"] == "48h0m0s"


async def test_sqlite_retention(tmp_path: object) -> None:
    from pathlib import Path

    from historian import SqliteSettings

    backend = SqliteBackend(SqliteSettings(Path(str(tmp_path)) / "h.db", interval_retention_days=2, raw_retention_days=1))
    await backend.open()
    try:
        now = T0 + 10 * DAY
        await backend.write_intervals([record("E-1", now - 3 * DAY, 1), record("E-1", now - DAY, 2)])
        await backend.write_raw([RawPoint("a.b", (now - 2 * DAY) * 1_000_000, 1.0, 2), RawPoint("a.b", (now - 3600) * 1_000_000, 2.0, 2)])
        await backend.apply_retention(now)
        assert rows(await backend.fetch_intervals(["E-1"], ["energy_total"], 0, now)) == [(now - DAY, "E-1", 2)]
        assert len(await backend.fetch_raw(["a.b"], 0, now * 1_000_000)) == 1
    finally:
        await backend.close()


def test_offset_segments_find_dst_changes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = int(datetime(2024, 3, 1, tzinfo=berlin).timestamp())
    end = int(datetime(2024, 11, 30, tzinfo=berlin).timestamp())
    segs = offset_segments(berlin, start, end)
    assert [off for _, off in segs] == [3600, 7200, 3600]
    assert datetime.fromtimestamp(segs[1][0], berlin) == datetime(2024, 3, 31, 3, 0, tzinfo=berlin)
    assert datetime.fromtimestamp(segs[2][0] - 1, berlin).utcoffset() == timedelta(hours=2)
    assert offset_segments(SHANGHAI, start, end) == [(start, 8 * 3600)]


async def test_sqlite_days_across_dst(tmp_path: object) -> None:
    from pathlib import Path

    from historian import SqliteSettings

    berlin = ZoneInfo("Europe/Berlin")
    backend = SqliteBackend(SqliteSettings(Path(str(tmp_path)) / "h.db"))
    await backend.open()
    try:
        day0 = int(datetime(2024, 3, 30, tzinfo=berlin).timestamp())
        end = int(datetime(2024, 4, 1, tzinfo=berlin).timestamp())
        await backend.write_intervals([record("E-1", t, 1) for t in range(day0, end, 900)])
        got = await backend.fetch_buckets(["E-1"], [Aggregate("energy_total", "count")], day0, end, Bucketing(DAY, berlin, 0))
        # 31 March has 23 hours: 92 quarter hours
        assert rows(got) == [(day0, "E-1", 96), (int(datetime(2024, 3, 31, tzinfo=berlin).timestamp()), "E-1", 92)]
    finally:
        await backend.close()
