"""The ``energy`` report: consumption per group and interval, split by time-of-use period, with
the money charged for it.

Consumption comes from the historian's interval data (its day rollups for whole days):
``energy`` (kWh, the total register) and ``energy_sharp`` … ``energy_valley`` (the period
registers), ``water`` (m³). A missing value means no stored interval in that bucket.

Money comes from the ledger, never re-priced: every deduction whose reading falls in the bucket
(its ``reading_ts``, in the site's calendar), net of the reversals of those deductions. The
money charged in a bucket and group (the deductions' rounded amounts, exact to the minor unit)
is split over the periods in proportion to the exact amounts of the deductions' priced lines
(largest remainder), so the periods add up to what was charged: ``money_sharp`` …
``money_valley``; ``money_other`` holds lines without one of those four periods (a single-price
or tiered tariff, another period name); ``money_water`` the water deductions; ``money`` all.
The whole days of a range are read from the ledger's day rollup (:mod:`scada.reports.rollup`)
with the entries it has not folded in yet, the same figures at a fraction of the reading.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from historian.backends.base import DAY
from historian.query import HistoryQuery, Resample
from scada.core.limits import check_answer_size
from scada.db.bulk import driver_rows
from scada.reports.ledger_money import (
    PERIODS,
    SLOTS,
    WATER,
    Cell,
    LocalDays,
    add_deductions,
    day_start,
    deductions_query,
    new_cell,
    split_minor,
)
from scada.reports.params import ReportError, ReportRequest, bucket_label, bucket_of, bucket_starts, count_buckets
from scada.reports.rollup import add_stored, day_rows_query, rollup_state, stored_day, stored_split
from scada.reports.sources import Grouping, Sources, meter_grouping
from scada.reports.table import Column, Report

__all__ = ["ENERGY_VALUES", "PERIODS", "energy_report", "history_frame", "ledger_deductions", "money_frame", "money_rows"]

POINTS = {"energy_total": "energy", "energy_sharp": "energy_sharp", "energy_peak": "energy_peak",
          "energy_flat": "energy_flat", "energy_valley": "energy_valley", "volume_total": "water"}
MONEY = tuple(f"money_{p}" for p in PERIODS) + ("money_other", "money_water")
ENERGY_VALUES = [Column(name, "volume" if name == "water" else "energy") for name in POINTS.values()] + [
    Column(name, "money") for name in (*MONEY, "money")
]
_MONEY_BATCH = 20_000  # ledger rows (deductions or stored days) read and added up at a time
_HISTORY_CELLS = 50_000  # (bucket, group) cells a history query answers, at least one bucket's
_RESAMPLE = {"day": Resample("1d", DAY), "week": Resample("1w", DAY, "week"), "month": Resample("1mo", DAY, "month"),
             "year": Resample("1mo", DAY, "month")}


def _labeller(request: ReportRequest) -> Any:
    cache: dict[dt.date, str] = {}

    def label(day: dt.date) -> str:
        out = cache.get(day)
        if out is None:
            out = cache[day] = bucket_label(bucket_of(day, request.interval), request.interval)
        return out

    return label


async def history_frame(src: Sources, request: ReportRequest, grouping: Grouping) -> pd.DataFrame:
    """(label, group) → the consumption columns in millionths (nullable: no data)."""
    members = {g: sorted(ms) for g, ms in grouping.members().items() if ms}
    if not members:
        return pd.DataFrame(columns=["label", "group", *POINTS.values()])
    if src.history is None:
        raise ReportError("kind", "the historian is disabled in this server's configuration", 503)
    label = _labeller(request)
    # a query per run of whole buckets (the historian's wide answer: a row per bucket and group,
    # a column per point), so that only a slice of the answer is held at a time
    per_slice = max(1, _HISTORY_CELLS // len(members))
    starts = bucket_starts(request)
    edges = [max(request.start, dt.datetime.combine(d, dt.time(), request.tz)) for d in starts[::per_slice]] + [request.end]
    edges[0] = request.start
    wides = []
    for a, b in zip(edges, edges[1:], strict=False):
        if a >= b:
            continue
        query = HistoryQuery(members, list(POINTS), a, b, _RESAMPLE[request.interval], "sum", "group", wide=True)
        frame = await src.history(query)
        wides.append(await asyncio.to_thread(_wide, frame, label))
        del frame
    if not wides:
        return pd.DataFrame(columns=["label", "group", *POINTS.values()])
    return wides[0] if len(wides) == 1 else pd.concat(wides, ignore_index=True)


def _wide(frame: pd.DataFrame, label: Any) -> pd.DataFrame:
    """The historian's wide answer (time, group, a column per point in kWh/m³) as (label,
    group) → points in millionths, in the order of label and group. Buckets that share a label
    (the months of a year) are added up; a label without any value stays missing."""
    time, times = pd.factorize(frame["time"])
    label_of_time, labels = pd.factorize(np.asarray([label(t.date()) for t in times], dtype=object), sort=True)
    group, groups = pd.factorize(frame["group"], sort=True)
    cell = label_of_time[time] * len(groups) + group  # (label, group) as one number, in their order
    points = {}
    for point, name in POINTS.items():
        values = frame[point].to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        points[name] = pd.array(np.where(missing, 0, np.rint(values * 1_000_000)).astype("int64"), dtype="Int64")
        points[name][missing] = pd.NA
    data = pd.DataFrame(points)
    if len(np.unique(cell)) == len(cell):  # a row per cell already (a bucket per label): no sums to take
        order = np.argsort(cell, kind="stable")
        data, cell = data.take(order).reset_index(drop=True), cell[order]
    else:
        data = data.groupby(cell, sort=True).sum(min_count=1)
        cell = data.index.to_numpy(dtype="int64")
        data = data.reset_index(drop=True)
    out = pd.concat([pd.DataFrame({"label": np.asarray(labels, dtype=object)[cell // len(groups)],
                                   "group": np.asarray(groups, dtype=object)[cell % len(groups)]}), data], axis=1)
    out.columns.name = "point"
    return out


class _Money:
    """(label, group) → cell (:mod:`scada.reports.ledger_money`) of the report's money, added
    up from the rollup's stored days and from ledger entries, a batch at a time.

    A stored day that is a bucket's only money (a report by meter or room and day: nearly every
    bucket) keeps the split the rollup stored with it — what splitting the bucket would give —
    and its amounts are not parsed; only buckets with more than one share of money are added up
    and split here."""

    def __init__(self, request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> None:
        self.label = _labeller(request)
        self.days = LocalDays(request.tz)
        self.by_meter = by_meter
        self.water = water
        self.cells: dict[Any, Cell] = {}
        self.singles: dict[Any, Sequence[Any]] = {}  # (label, group) → its one stored day's row

    def _key(self, ts: Any, meter: str) -> Any:
        group = self.by_meter.get(meter)
        return None if group is None else (self.label(self.days(ts)), group)

    def add_entries(self, rows: Iterable[Any]) -> None:
        add_deductions(self.cells, rows, self._key, self.water)

    def add_days(self, rows: Iterable[Any]) -> None:
        """Add stored days (:func:`scada.reports.rollup.day_rows_query` rows, as the driver gives
        them: a day as a date or its text, the slots' amounts as text)."""
        labels: dict[Any, str] = {}
        cells, singles, by_meter, water = self.cells, self.singles, self.by_meter, self.water
        for row in rows:
            day, meter = row[0], row[1]
            group = by_meter.get(meter)
            if group is None:
                continue
            label = labels.get(day)
            if label is None:
                label = labels[day] = self.label(stored_day(day))
            key = (label, group)
            if meter in water:
                cell = cells.get(key)
                if cell is None:
                    cell = cells[key] = new_cell()
                cell[WATER] += int(row[2])
            elif key in cells:
                add_stored(cells[key], row)
            elif key in singles:
                cell = cells[key] = new_cell()
                add_stored(cell, singles.pop(key))
                add_stored(cell, row)
            else:
                singles[key] = row

    def frame(self) -> pd.DataFrame:
        """The cells' money columns in minor units: what was charged split over the slots."""
        cells, singles = self.cells, self.singles
        for key in singles.keys() & cells.keys():  # a stored day with entries or water in its bucket
            add_stored(cells[key], singles.pop(key))
        keys = [*singles, *cells]
        parts = [stored_split(row) for row in singles.values()] + [split_minor(c[0], c[1:WATER]) for c in cells.values()]
        out: dict[str, Any] = {"label": [k[0] for k in keys], "group": [k[1] for k in keys]}
        for i, slot in enumerate(SLOTS):
            out[f"money_{slot}"] = pd.array([int(p[i]) for p in parts], dtype="Int64")
        out["money_water"] = pd.array([0] * len(singles) + [c[WATER] for c in cells.values()], dtype="Int64")
        return pd.DataFrame(out)


async def ledger_deductions(src: Sources, request: ReportRequest) -> list[Any]:
    """Every deduction of the range (and reversal of one) straight from the ledger, at once:
    the reference that tests compare :func:`money_frame` with."""
    async with src.db.reads() as s:
        return list((await s.execute(deductions_query(start=request.start, end=request.end))).all())


def money_rows(rows: Iterable[Any], request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> pd.DataFrame:
    """(label, group) → money columns in minor units of ledger rows (see the module docstring)."""
    money = _Money(request, by_meter, water)
    money.add_entries(rows)
    return money.frame()


def _whole_days(request: ReportRequest) -> tuple[dt.date, dt.date]:
    """The first and last local day wholly inside the range (first > last: none)."""
    first = request.start.astimezone(request.tz).date()
    if day_start(first, request.tz) < request.start:
        first += dt.timedelta(days=1)
    last = request.end.astimezone(request.tz).date()
    if day_start(last + dt.timedelta(days=1), request.tz) > request.end:
        last -= dt.timedelta(days=1)
    return first, last


async def money_frame(src: Sources, request: ReportRequest, grouping: Grouping) -> pd.DataFrame:
    """The range's money (see the module docstring): the whole days from the ledger rollup with
    the entries it has not folded yet, the partial days at the edges from the ledger, all in one
    snapshot; read and added up a batch at a time (a month of 10,000 meters is over a million
    deductions, or 310,000 stored days)."""
    snap = src.snapshot()
    water = {m.id for m in snap.meters.values() if m.kind == "water"}
    money = _Money(request, grouping.by_member, water)
    parts: list[tuple[dt.datetime, dt.datetime, int | None]] = [(request.start, request.end, None)]
    async with src.db.reads() as s:
        if src.db.dialect == "postgresql":  # the rollup's position, its days and the ledger as of one moment
            await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        through = await rollup_state(s, request.tz)
        first, last = _whole_days(request)
        if through is not None and first <= last:
            async for rows in driver_rows(s, day_rows_query(first, last), _MONEY_BATCH):
                await asyncio.to_thread(money.add_days, rows)
            a, b = day_start(first, request.tz), day_start(last + dt.timedelta(days=1), request.tz)
            parts = [(request.start, a, None), (a, b, through), (b, request.end, None)]
        for start, end, after in parts:
            if start >= end:
                continue
            result = await s.stream(deductions_query(start=start, end=end, after_id=after))
            async for rows in result.partitions(_MONEY_BATCH):
                await asyncio.to_thread(money.add_entries, rows)
    return await asyncio.to_thread(money.frame)


def assemble(request: ReportRequest, grouping: Grouping, history: pd.DataFrame, money: pd.DataFrame) -> pd.DataFrame:
    """Every bucket × group (in order), consumption and money side by side."""
    labels = list(dict.fromkeys(bucket_label(d, request.interval) for d in bucket_starts(request)))
    index = pd.MultiIndex.from_product([labels, grouping.groups], names=["label", "group"])
    h = history.set_index(["label", "group"]).reindex(index) if len(history) else pd.DataFrame(index=index, columns=list(POINTS.values()))
    m = money.set_index(["label", "group"]).reindex(index) if len(money) else pd.DataFrame(index=index, columns=list(MONEY))
    frame = pd.concat([h, m], axis=1).reset_index()
    for name in POINTS.values():
        frame[name] = frame[name].astype("Int64")
    for name in MONEY:
        frame[name] = frame[name].astype("Int64").fillna(0)
    frame["money"] = frame[list(MONEY)].sum(axis=1).astype("Int64")
    return frame.rename(columns={"label": request.interval, "group": request.group})


def keys_for(request: ReportRequest, grouping: Grouping, frame: pd.DataFrame) -> list[Column]:
    keys = [Column(request.interval), Column(request.group)]
    if request.group == "customer":
        frame.insert(2, "customer_name", frame["customer"].map(grouping.names).astype(object))
        keys.append(Column("customer_name"))
    return keys


async def energy_report(src: Sources, request: ReportRequest) -> Report:
    snap = src.snapshot()
    grouping = await meter_grouping(src.db, snap, request.group)
    check_answer_size(count_buckets(request) * len(grouping.groups), src.row_limit(request), field="to",
                      hint="narrow the range, use a longer interval or a coarser group")
    src.started += 1
    src.step("history", 0.0)
    history = await history_frame(src, request, grouping)
    src.step("ledger", 0.4)
    money = await money_frame(src, request, grouping)
    src.step("grouping", 0.7)
    frame = await asyncio.to_thread(assemble, request, grouping, history, money)
    keys = keys_for(request, grouping, frame)
    report = Report(request, keys, list(ENERGY_VALUES), frame, src.minor_units, src.currency,
                    interval_key=request.interval, group_key=request.group)
    return report.finish()
