"""History queries bounded before work is done: the answer's size is computed from the request
and a query over too many rows is refused before a bucket list is built or a backend is asked;
times outside 1970–2200 and intervals of thousands of digits are clear query errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historian import HistoryQuery, IntervalGrid, QueryError, parse_interval, parse_time, run_query
from historian import query as query_module
from historian.query import QueryTooLarge, bucket_starts, count_buckets

TZ = ZoneInfo("Asia/Shanghai")
GRID = IntervalGrid(900, TZ)


class NoBackend:
    """A backend that must not be asked: the refusal comes first."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the backend was asked ({name}) for a query that should have been refused")


def q(start: datetime, end: datetime, interval: str | None, meters: int = 1) -> HistoryQuery:
    return HistoryQuery({f"M{i}": [f"M{i}"] for i in range(meters)}, ["energy_total"], start, end, parse_interval(interval, 900))


@pytest.mark.parametrize(
    ("start", "end", "interval"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, tzinfo=UTC), "15min"),  # ~8 M buckets
        (datetime(2000, 1, 1, tzinfo=UTC), datetime(2199, 1, 1, tzinfo=UTC), None),
        (datetime(1970, 1, 1, tzinfo=UTC), datetime(2199, 1, 1, tzinfo=UTC), "1d"),
    ],
)
async def test_too_large_is_refused_before_the_bucket_list_is_built(
    monkeypatch: pytest.MonkeyPatch, start: datetime, end: datetime, interval: str | None
) -> None:
    def refuse(*_a: Any) -> list[int]:
        raise AssertionError("bucket_starts was called for a query over the row limit")

    monkeypatch.setattr(query_module, "bucket_starts", refuse)
    with pytest.raises(QueryTooLarge) as err:
        await run_query(NoBackend(), q(start, end, interval, meters=100), GRID, max_rows=50_000)  # type: ignore[arg-type]
    assert err.value.param == "interval" and err.value.limit == 50_000 and err.value.rows > 50_000
    assert "50,000" in str(err.value)


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2001, 12, 1)),
    span=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=120)),
    interval=st.sampled_from([None, "15min", "30min", "1h", "4h", "1d", "1w", "1mo"]),
)
def test_the_count_is_the_length_of_the_bucket_list(start: datetime, span: timedelta, interval: str | None) -> None:
    s = start.replace(tzinfo=TZ)
    query = q(s, s + span, interval)
    assert count_buckets(query, GRID) == len(bucket_starts(query, GRID))


def test_times_outside_the_supported_range_are_query_errors() -> None:
    for text in ("9999-12-31T23:59:59Z", "9999-12-31", "0001-01-01", "0001-01-01T00:00:00+14:00", "1969-12-31T23:00:00Z", "2200-01-02"):
        with pytest.raises(QueryError, match="supported range") as err:
            parse_time(text, TZ, "end")
        assert err.value.param == "end"
    for text in ("２０２４-05-01", "2024-05-01" + "0" * 5000):
        with pytest.raises(QueryError) as err:
            parse_time(text, TZ, "start")
        assert len(str(err.value)) < 200


async def test_run_query_refuses_times_out_of_range() -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(QueryError) as err:
        await run_query(NoBackend(), q(datetime(2024, 1, 1, tzinfo=UTC), far, "1d"), GRID)  # type: ignore[arg-type]
    assert err.value.param == "end"


def test_intervals_are_ascii_and_short() -> None:
    for text in ("1" * 5000 + "min", "１５min", "15" + "0" * 30 + "min"):
        with pytest.raises(QueryError) as err:
            parse_interval(text, 900)
        assert err.value.param == "interval" and len(str(err.value)) < 150
