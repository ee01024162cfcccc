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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import String, Text, cast, literal, select, type_coerce, union_all
from sqlalchemy.orm import aliased

from historian.backends.base import DAY
from historian.query import HistoryQuery, Resample
from scada.core.limits import check_answer_size
from scada.prepaid.models import LedgerEntry
from scada.reports.params import ReportError, ReportRequest, bucket_label, bucket_of, bucket_starts, count_buckets
from scada.reports.sources import Grouping, Sources, meter_grouping
from scada.reports.table import Column, Report

__all__ = ["ENERGY_VALUES", "PERIODS", "energy_report", "history_frame", "money_frame", "money_rows", "split_minor"]

PERIODS = ("sharp", "peak", "flat", "valley")
POINTS = {"energy_total": "energy", "energy_sharp": "energy_sharp", "energy_peak": "energy_peak",
          "energy_flat": "energy_flat", "energy_valley": "energy_valley", "volume_total": "water"}
MONEY = tuple(f"money_{p}" for p in PERIODS) + ("money_other", "money_water")
ENERGY_VALUES = [Column(name, "volume" if name == "water" else "energy") for name in POINTS.values()] + [
    Column(name, "money") for name in (*MONEY, "money")
]
_SCALE = 20  # exact line amounts as integers of 10⁻²⁰ (the ledger keeps costs to 20 decimals)
_SLOTS = (*PERIODS, "other")
_MONEY_BATCH = 20_000  # deductions read and added up at a time
_HISTORY_CELLS = 50_000  # (bucket, group) cells a history query answers, at least one bucket's
_RESAMPLE = {"day": Resample("1d", DAY), "week": Resample("1w", DAY, "week"), "month": Resample("1mo", DAY, "month"),
             "year": Resample("1mo", DAY, "month")}


def split_minor(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to integer ``weights`` by largest remainder (ties to the
    earlier); the parts add up to ``total`` exactly."""
    wsum = sum(weights)
    if wsum == 0:
        return [0] * (len(weights) - 1) + [total] if weights else []
    if wsum < 0:
        return [-p for p in split_minor(-total, [-w for w in weights])]
    parts = []
    rems = []
    for w in weights:
        q, r = divmod(total * w, wsum)
        parts.append(q)
        rems.append(r)
    rest = total - sum(parts)  # 0 <= rest < len(weights) when every weight is >= 0
    order = sorted(range(len(weights)), key=lambda i: (-rems[i], i))
    for i in order[: max(rest, 0)]:
        parts[i] += 1
    leftover = total - sum(parts)  # only with weights of both signs (a reversal among the lines)
    if leftover:
        parts[max(range(len(weights)), key=lambda i: weights[i])] += leftover
    return parts


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


def _deductions_query(request: ReportRequest) -> Any:
    """(reading time, meter, amount, detail text, sign) of the deductions read in the range, and
    of the reversals of those deductions (with the original's reading, meter and lines)."""
    e = LedgerEntry
    orig = aliased(LedgerEntry)
    # the reading time as the driver gives it (SQLite: text), not parsed into a datetime per row:
    # that was a third of the report's CPU; _MoneyCells parses each distinct minute once
    direct = select(type_coerce(e.reading_ts, String), e.meter_id, e.amount_minor, cast(e.detail, Text), literal(1)).where(
        e.kind == "deduction", e.reading_ts >= request.start, e.reading_ts < request.end)
    undone = select(type_coerce(orig.reading_ts, String), orig.meter_id, e.amount_minor, cast(orig.detail, Text), literal(-1)).join(
        orig, e.reverses_id == orig.id).where(
        e.kind == "reversal", orig.kind == "deduction", orig.reading_ts >= request.start, orig.reading_ts < request.end)
    return union_all(direct, undone)


async def _deductions(src: Sources, request: ReportRequest) -> list[Any]:
    """Every row of :func:`_deductions_query` at once (tests compare the streamed sums with it)."""
    async with src.db.reads() as s:
        return list((await s.execute(_deductions_query(request))).all())


def _weights(detail: str | None, sign: int) -> Iterable[tuple[str, int]]:
    if not detail or '"lines"' not in detail:
        return ()
    lines = json.loads(detail).get("lines") or []
    out = []
    for ln in lines:
        period = ln.get("period")
        slot = period if period in PERIODS else "other"
        out.append((slot, sign * _scaled(ln["amount"])))
    return out


def _scaled(amount: Any) -> int:
    """``int(Decimal(amount).scaleb(20))``: the line amount in 10⁻²⁰, cut toward zero. Plain
    decimal text of up to 20 decimals (what the ledger writes) is read as digits, several times
    faster than a Decimal over a month's five million lines; anything else goes through Decimal."""
    if isinstance(amount, str):
        whole, _, frac = amount.partition(".")
        digits = whole[1:] if whole[:1] == "-" else whole
        if (len(frac) <= _SCALE and (digits or frac) and digits.isascii() and frac.isascii()
                and (not digits or digits.isdigit()) and (not frac or frac.isdigit())):
            return int(whole + frac.ljust(_SCALE, "0")) if digits or whole[:1] != "-" else -int(frac.ljust(_SCALE, "0"))
    return int(Decimal(amount).scaleb(_SCALE))


class _MoneyCells:
    """(label, group) → [electricity charged, exact line amounts per slot, water charged], added
    to a batch of deductions at a time, so that only the cells are held, not every deduction."""

    def __init__(self, request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> None:
        self.label = _labeller(request)
        self.tz = request.tz
        self.by_meter = by_meter
        self.water = water
        self.cells: dict[tuple[str, str], list[Any]] = {}
        self._labels: dict[Any, str] = {}

    def _label_of(self, ts: Any) -> str:
        """The bucket label of a reading time (text from SQLite, a datetime from PostgreSQL),
        looked up by its minute: zone offsets are whole minutes, so the minute fixes the day."""
        key = ts[:16] if isinstance(ts, str) else ts.replace(second=0, microsecond=0)
        label = self._labels.get(key)
        if label is None:
            when = dt.datetime.fromisoformat(ts) if isinstance(ts, str) else ts
            if when.tzinfo is None:  # SQLite keeps UTC without its offset
                when = when.replace(tzinfo=dt.UTC)
            label = self._labels[key] = self.label(when.astimezone(self.tz).date())
        return label

    def add(self, rows: Iterable[Any]) -> None:
        cells, label_of = self.cells, self._label_of
        for ts, meter, amount, detail, sign in rows:
            group = self.by_meter.get(meter)
            if group is None or ts is None:
                continue
            key = (label_of(ts), group)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = [0, dict.fromkeys(_SLOTS, 0), 0]
            charged = -int(amount)
            if meter in self.water:
                cell[2] += charged
                continue
            cell[0] += charged
            weights = cell[1]
            found = False
            for slot, w in _weights(detail, int(sign)):
                weights[slot] += w
                found = True
            if not found:
                weights["other"] += sign * abs(charged) * 10**_SCALE

    def frame(self) -> pd.DataFrame:
        """The cells' money columns in minor units: what was charged split over the slots."""
        out: dict[str, list[Any]] = {"label": [], "group": [], **{m: [] for m in MONEY}}
        for (lab, group), (elec, weights, wat) in self.cells.items():
            out["label"].append(lab)
            out["group"].append(group)
            parts = split_minor(elec, [weights[s] for s in _SLOTS])
            for s, part in zip(_SLOTS, parts, strict=True):
                out[f"money_{s}"].append(part)
            out["money_water"].append(wat)
        frame = pd.DataFrame(out)
        for m in MONEY:
            frame[m] = frame[m].astype("Int64")
        return frame


def money_rows(rows: Iterable[Any], request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> pd.DataFrame:
    """(label, group) → money columns in minor units (see the module docstring)."""
    cells = _MoneyCells(request, by_meter, water)
    cells.add(rows)
    return cells.frame()


async def money_frame(src: Sources, request: ReportRequest, grouping: Grouping) -> pd.DataFrame:
    """:func:`money_rows` of the range's deductions, read and added up a batch at a time: a
    month of 10,000 meters is over a million deductions with their priced lines."""
    snap = src.snapshot()
    water = {m.id for m in snap.meters.values() if m.kind == "water"}
    cells = _MoneyCells(request, grouping.by_member, water)
    async with src.db.reads() as s:
        result = await s.stream(_deductions_query(request))
        async for rows in result.partitions(_MONEY_BATCH):
            await asyncio.to_thread(cells.add, rows)
    return await asyncio.to_thread(cells.frame)


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
