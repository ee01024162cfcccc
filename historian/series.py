"""One historized point as a time series, read a page at a time (for OPC UA HistoryRead).

A point's series is what the historian stored for it, one value per time:

- a meter's **register** (``energy_*``, ``volume_total``): one value per stored interval, the
  consumption in it (kWh, m³: the interval's exact delta in millionths, divided once), timed at
  the interval's start, uncertain when the interval carries the ``gap`` or ``reset`` flag — the
  same rows as ``GET /api/v1/history`` without an ``interval``;
- a meter's **analog** (``power``, ``voltage``, ``current``): one value per stored interval,
  the interval's average (``stat="value"``), minimum (``"min"``) or maximum (``"max"``);
- a **raw-logged** tag (``[[historian.raw]]``, e.g. ``room:*.balance``): the logged samples with
  their stored quality.

Intervals without a value for the point (no good reading in them) are not part of the series.
Pages are read in time order (or in reverse) with a limit, so a reader walks a long series
without loading it whole; the arrays are built off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .backends.base import Backend
from .records import ANALOGS, MICRO, REGISTERS

__all__ = ["SeriesPage", "SeriesStat", "interval_point", "read_interval_series", "read_raw_series"]

SeriesStat = Literal["value", "min", "max"]

_REGISTERS = frozenset(REGISTERS)
_ANALOGS = frozenset(ANALOGS)
_QUALITY_GOOD, _QUALITY_UNCERTAIN = 2, 1
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)
_EMPTY_Q = np.empty(0, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class SeriesPage:
    """Values in read order: ``times_us`` (epoch µs), ``values`` (float; NaN: no value, only
    for bad raw samples), ``quality`` (0 bad, 1 uncertain, 2 good). ``exhausted``: the range
    holds nothing beyond this page; otherwise ``resume_us`` is where the next page starts
    (inclusive bound in read direction)."""

    times_us: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    exhausted: bool
    resume_us: int | None = None

    def __len__(self) -> int:
        return len(self.times_us)


def _empty() -> SeriesPage:
    return SeriesPage(_EMPTY_I, _EMPTY_F, _EMPTY_Q, True)


def interval_point(point: str) -> bool:
    """Whether ``point`` (of a meter) has an interval series."""
    return point in _REGISTERS or point in _ANALOGS


def _fields(point: str, stat: SeriesStat) -> list[str]:
    if point in _REGISTERS:
        return [point, "flag_gap", "flag_reset"]
    if point in _ANALOGS:
        return [f"{point}_{'avg' if stat == 'value' else stat}"]
    raise ValueError(f"{point!r} has no interval series (registers: {', '.join(REGISTERS)}; analogs: {', '.join(ANALOGS)})")


def _ceil_s(us: int) -> int:
    return -(-us // 1_000_000)


async def read_interval_series(
    backend: Backend,
    meter: str,
    point: str,
    start_us: int,
    end_us: int,
    *,
    limit: int,
    descending: bool = False,
    stat: SeriesStat = "value",
) -> SeriesPage:
    """At most ``limit`` values of the meter's point with ``start_us <= time < end_us``, oldest
    first (``descending``: newest first)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    fields = _fields(point, stat)
    start, end = _ceil_s(start_us), _ceil_s(end_us)  # interval starts are whole seconds
    if end <= start:
        return _empty()
    frame = await backend.fetch_interval_page(meter, fields, start, end, limit=limit, descending=descending)

    def shape() -> SeriesPage:
        times = frame["time"].to_numpy(dtype=np.int64, na_value=0) * 1_000_000
        raw = pd.to_numeric(frame[fields[0]], errors="coerce")
        keep = raw.notna().to_numpy()
        if point in _REGISTERS:
            values = raw.to_numpy(dtype=np.float64, na_value=np.nan) / MICRO
            flagged = np.zeros(len(frame), dtype=bool)
            for flag in fields[1:]:
                flagged |= pd.to_numeric(frame[flag], errors="coerce").fillna(0).to_numpy() > 0
            quality = np.where(flagged, _QUALITY_UNCERTAIN, _QUALITY_GOOD).astype(np.uint8)
        else:
            values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
            quality = np.full(len(frame), _QUALITY_GOOD, dtype=np.uint8)
        full = len(frame) >= limit
        resume = None
        if full:
            last = int(times[-1])
            resume = last - 1 if descending else last + 1
        return SeriesPage(times[keep], values[keep], quality[keep], not full, resume)

    return await asyncio.to_thread(shape)


async def read_raw_series(
    backend: Backend, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool = False
) -> SeriesPage:
    """At most ``limit`` logged samples of ``tag`` with ``start_us <= time < end_us``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if end_us <= start_us:
        return _empty()
    frame = await backend.fetch_raw_page(tag, start_us, end_us, limit=limit, descending=descending)

    def shape() -> SeriesPage:
        times = frame["time"].to_numpy(dtype=np.int64, na_value=0)
        values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        quality = pd.to_numeric(frame["quality"], errors="coerce").fillna(0).to_numpy().astype(np.uint8)
        full = len(frame) >= limit
        resume = None
        if full:
            last = int(times[-1])
            resume = last - 1 if descending else last + 1
        return SeriesPage(times, values, quality, not full, resume)

    return await asyncio.to_thread(shape)
