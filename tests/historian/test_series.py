"""One point's series a page at a time, on each backend against its real server: pages in either
direction with a limit, where the next page starts, register consumption in exact millionths with
the gap and reset flags as uncertain, analog statistics, intervals without a value left out, raw
samples with their quality."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from historian import Backend, IntervalRecord, RawPoint
from historian.series import read_interval_series, read_raw_series

T0 = int(datetime(2024, 5, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
US = 1_000_000


def interval(meter: str, k: int, **values: int | float) -> IntervalRecord:
    return IntervalRecord(meter, T0 + 900 * k, 900, {"samples": 3, "good_samples": 3, **values})


async def test_backend_pages_walk_one_series_in_either_direction(backend: Backend) -> None:
    await backend.write_intervals([interval("E-1", k, energy_total=k) for k in range(10)] + [interval("E-2", k, energy_total=99) for k in range(10)])
    page = await backend.fetch_interval_page("E-1", ["energy_total"], T0 + 900, T0 + 9000, limit=3)
    assert list(page["time"]) == [T0 + 900, T0 + 1800, T0 + 2700] and [int(v) for v in page["energy_total"]] == [1, 2, 3]
    page = await backend.fetch_interval_page("E-1", ["energy_total"], T0, T0 + 2700, limit=10, descending=True)
    assert list(page["time"]) == [T0 + 1800, T0 + 900, T0]
    assert len(await backend.fetch_interval_page("E-3", ["energy_total"], T0, T0 + 9000, limit=5)) == 0
    await backend.write_raw([RawPoint("room:R1.balance", T0 * US + i, 10.0 - i, 2) for i in range(5)] + [RawPoint("room:R2.balance", T0 * US, 1.0, 2)])
    raw = await backend.fetch_raw_page("room:R1.balance", T0 * US + 1, T0 * US + 5, limit=2, descending=True)
    assert list(raw["time"]) == [T0 * US + 4, T0 * US + 3] and list(raw["value"]) == [6.0, 7.0]


async def test_interval_series_of_registers_and_analogs(backend: Backend) -> None:
    await backend.write_intervals([
        interval("E-1", 0, energy_total=1_234_567, flag_gap=0, flag_reset=0, power_min=1.0, power_avg=1.5, power_max=2.0),
        interval("E-1", 1, energy_total=10, flag_gap=1, gap_from=T0 - 900),
        interval("E-1", 2, samples=2, good_samples=0),  # no good reading: no value, not part of the series
        interval("E-1", 3, energy_total=20, flag_reset=1, power_min=0.5, power_avg=0.75, power_max=1.0),
        interval("E-1", 4, energy_total=30),
    ])
    page = await read_interval_series(backend, "E-1", "energy_total", T0 * US, (T0 + 5 * 900) * US, limit=10)
    assert list(page.times_us) == [(T0 + 900 * k) * US for k in (0, 1, 3, 4)]
    assert list(page.values) == [1.234567, 0.00001, 0.00002, 0.00003]  # exact millionths, divided once
    assert list(page.quality) == [2, 1, 1, 2]  # gap and reset: uncertain
    assert page.exhausted and page.resume_us is None
    # a full page says where the next one starts, in read direction
    page = await read_interval_series(backend, "E-1", "energy_total", T0 * US, (T0 + 5 * 900) * US, limit=2)
    assert not page.exhausted and page.resume_us == (T0 + 900) * US + 1
    page = await read_interval_series(backend, "E-1", "energy_total", T0 * US, (T0 + 5 * 900) * US, limit=2, descending=True)
    assert list(page.times_us) == [(T0 + 3600) * US, (T0 + 2700) * US] and page.resume_us == (T0 + 2700) * US - 1
    for stat, expected in (("value", [1.5, 0.75]), ("min", [1.0, 0.5]), ("max", [2.0, 1.0])):
        page = await read_interval_series(backend, "E-1", "power", T0 * US, (T0 + 5 * 900) * US, limit=10, stat=stat)  # type: ignore[arg-type]
        assert list(page.values) == expected and list(page.times_us) == [T0 * US, (T0 + 2700) * US]
    with pytest.raises(ValueError, match="no interval series"):
        await read_interval_series(backend, "E-1", "comm_ok", 0, 1, limit=1)


async def test_raw_series_keeps_the_stored_quality(backend: Backend) -> None:
    await backend.write_raw([
        RawPoint("room:R1.balance", T0 * US, 50.0, 2), RawPoint("room:R1.balance", T0 * US + 10, None, 0),
        RawPoint("room:R1.balance", T0 * US + 20, 49.5, 1),
    ])
    page = await read_raw_series(backend, "room:R1.balance", T0 * US, T0 * US + 21, limit=10)
    assert list(page.times_us) == [T0 * US, T0 * US + 10, T0 * US + 20]
    assert page.values[0] == 50.0 and np.isnan(page.values[1]) and page.values[2] == 49.5
    assert list(page.quality) == [2, 0, 1] and page.exhausted
