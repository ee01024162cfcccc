"""Historian: interval aggregation, SQLite and InfluxDB backends, store-and-forward, queries
returning pandas DataFrames. Depends only on ``tags`` (and third-party libraries).

Names are loaded on first use, so that reading the configuration (``historian.settings``) does
not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aggregate import IntervalAggregator
    from .backends.base import (
        Backend,
        BackendError,
        BackendRejected,
        BackendUnavailable,
    )
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

_WHERE = {
    "IntervalAggregator": "aggregate",
    "Backend": "backends.base",
    "BackendError": "backends.base",
    "BackendRejected": "backends.base",
    "BackendUnavailable": "backends.base",
    "IntervalGrid": "grid",
    "AGGREGATIONS": "query",
    "QUERY_POINTS": "query",
    "HistoryQuery": "query",
    "QueryError": "query",
    "Resample": "query",
    "default_agg": "query",
    "parse_interval": "query",
    "parse_time": "query",
    "run_query": "query",
    "run_raw_query": "query",
    "RawRule": "rawlog",
    "ANALOGS": "records",
    "REGISTERS": "records",
    "IntervalRecord": "records",
    "RawPoint": "records",
    "Historian": "service",
    "HistorianSettings": "settings",
    "InfluxSettings": "settings",
    "SqliteSettings": "settings",
}

__all__ = sorted([*_WHERE, "make_backend"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'historian' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def make_backend(settings: SqliteSettings | InfluxSettings) -> Backend:
    """The backend for ``settings``."""
    # the lazy package loads a backend (and pandas) only when one is made
    from .settings import SqliteSettings  # noqa: PLC0415

    if isinstance(settings, SqliteSettings):
        from .backends.sqlite import SqliteBackend  # noqa: PLC0415

        return SqliteBackend(settings)
    from .backends.influx import InfluxBackend  # noqa: PLC0415

    return InfluxBackend(settings)
