"""Historian: interval aggregation, SQLite and InfluxDB backends, store-and-forward, queries
returning pandas DataFrames. Depends only on ``tags`` (and third-party libraries)."""

from .aggregate import IntervalAggregator
from .backends.base import Backend, BackendError, BackendRejected, BackendUnavailable
from .grid import IntervalGrid
from .query import (
    AGGREGATIONS,
    QUERY_POINTS,
    HistoryQuery,
    QueryError,
    Resample,
    default_agg,
    parse_interval,
    parse_time,
    run_query,
    run_raw_query,
)
from .rawlog import RawRule
from .records import ANALOGS, REGISTERS, IntervalRecord, RawPoint
from .service import Historian
from .settings import HistorianSettings, InfluxSettings, SqliteSettings

__all__ = [
    "AGGREGATIONS",
    "ANALOGS",
    "Backend",
    "BackendError",
    "BackendRejected",
    "BackendUnavailable",
    "Historian",
    "HistorianSettings",
    "HistoryQuery",
    "InfluxSettings",
    "IntervalAggregator",
    "IntervalGrid",
    "IntervalRecord",
    "QUERY_POINTS",
    "QueryError",
    "REGISTERS",
    "RawPoint",
    "RawRule",
    "Resample",
    "SqliteSettings",
    "default_agg",
    "make_backend",
    "parse_interval",
    "parse_time",
    "run_query",
    "run_raw_query",
]


def make_backend(settings: SqliteSettings | InfluxSettings) -> Backend:
    """The backend for ``settings``."""
    if isinstance(settings, SqliteSettings):
        from .backends.sqlite import SqliteBackend

        return SqliteBackend(settings)
    from .backends.influx import InfluxBackend

    return InfluxBackend(settings)
