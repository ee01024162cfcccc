"""The ``compare`` report: each group's consumption in the range against the same range a year
earlier (year-on-year, 同比) and the range just before (period-on-period, 环比).

``commodity`` says what is compared: ``electricity`` (kWh, the total register, default) or
``water`` (m³). Per bucket and group: ``consumption``, ``year_ago`` (the bucket holding the same
day a year earlier; 29 February compares with 28 February), ``previous`` (the bucket at the same
place in the previous range: as many whole months before when the range is whole months, else
as many days before), the changes ``yoy_change`` and ``pop_change`` and the changes in per cent
of the earlier value, ``yoy_pct`` and ``pop_pct`` (to 0.01 %, half up; none when the earlier
value is zero).

Buckets without data are counted (``current_missing``, ``year_ago_missing``,
``previous_missing``: how many buckets had no stored interval) and named in ``missing``; a
change is shown only when both sides have every bucket — so a group total never compares a
year with a missing month against a whole one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pandas as pd

from scada.core.limits import check_answer_size
from scada.reports.energy import history_frame
from scada.reports.params import ReportRequest, bucket_label, bucket_of, bucket_starts, count_buckets, year_earlier
from scada.reports.sources import Sources, meter_grouping
from scada.reports.table import Column, Report

__all__ = ["compare_report", "pct_hundredths", "previous_range"]

UNIT = {"electricity": ("energy", "energy"), "water": ("water", "volume")}
VALUES_OF = ["consumption", "year_ago", "yoy_change", "yoy_pct", "previous", "pop_change", "pop_pct",
             "current_missing", "year_ago_missing", "previous_missing", "missing"]


def pct_hundredths(change: int, base: int) -> int | None:
    """``change / base`` in hundredths of a per cent, rounded half up (away from zero); None
    when ``base`` is zero."""
    if base == 0:
        return None
    num, den = change * 10_000, abs(base)
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def previous_range(request: ReportRequest) -> tuple[dt.datetime, dt.datetime]:
    tz = request.tz
    a, b = request.local(request.start), request.local(request.end)
    midnights = a.time() == dt.time() and b.time() == dt.time()
    if midnights and a.day == 1 and b.day == 1:
        months = (b.year - a.year) * 12 + b.month - a.month
        total = a.year * 12 + a.month - 1 - months
        start = dt.datetime(total // 12, total % 12 + 1, 1, tzinfo=tz)
        return start.astimezone(dt.UTC), request.start
    if midnights:
        days = (b.date() - a.date()).days
        start = dt.datetime.combine(a.date() - dt.timedelta(days=days), dt.time(), tz)
        return start.astimezone(dt.UTC), request.start
    return request.start - (request.end - request.start), request.start


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    yoy_c: list[Any] = []
    yoy_p: list[Any] = []
    pop_c: list[Any] = []
    pop_p: list[Any] = []
    missing: list[str] = []
    cols = zip(frame["consumption"], frame["year_ago"], frame["previous"], frame["current_missing"], frame["year_ago_missing"],
               frame["previous_missing"], strict=True)
    for cur, ya, prev, m_cur, m_ya, m_prev in cols:
        names = [n for n, m in (("current", m_cur), ("year_ago", m_ya), ("previous", m_prev)) if m is not pd.NA and m]
        missing.append(",".join(names))
        for base, m_base, change_out, pct_out in ((ya, m_ya, yoy_c, yoy_p), (prev, m_prev, pop_c, pop_p)):
            if cur is pd.NA or base is pd.NA or m_cur or m_base:
                change_out.append(pd.NA)
                pct_out.append(pd.NA)
                continue
            change = int(cur) - int(base)
            change_out.append(change)
            pct = pct_hundredths(change, int(base))
            pct_out.append(pd.NA if pct is None else pct)
    frame = frame.copy()
    frame["yoy_change"] = pd.array(yoy_c, dtype="Int64")
    frame["yoy_pct"] = pd.array(yoy_p, dtype="Int64")
    frame["pop_change"] = pd.array(pop_c, dtype="Int64")
    frame["pop_pct"] = pd.array(pop_p, dtype="Int64")
    frame["missing"] = pd.Series(missing, index=frame.index, dtype=object)
    return frame


async def compare_report(src: Sources, request: ReportRequest) -> Report:
    snap = src.snapshot()
    grouping = await meter_grouping(src.db, snap, request.group)
    check_answer_size(count_buckets(request) * len(grouping.groups), src.row_limit(request), field="to",
                      hint="narrow the range, use a longer interval or a coarser group")
    src.started += 1
    point, kind = UNIT[request.commodity]
    ya_start, ya_end = year_earlier(request.start, request.tz), year_earlier(request.end, request.tz)
    pv_start, pv_end = previous_range(request)
    ranges = [request, request.with_range(ya_start, ya_end), request.with_range(pv_start, pv_end)]
    frames = []
    for i, r in enumerate(ranges):
        src.step("history", i * 0.25)
        frames.append(await history_frame(src, r, grouping))
    src.step("grouping", 0.75)

    def build() -> pd.DataFrame:
        starts = bucket_starts(request)
        labels = [bucket_label(d, request.interval) for d in starts]
        ya_labels = [bucket_label(bucket_of(year_earlier(dt.datetime.combine(d, dt.time(), request.tz), request.tz)
                                            .astimezone(request.tz).date(), request.interval), request.interval) for d in starts]
        pv_labels = [bucket_label(d, request.interval) for d in bucket_starts(ranges[2])]
        pv_labels = (pv_labels + [""] * len(labels))[: len(labels)]

        def lookup(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
            if frame.empty:
                return pd.Series(pd.array([pd.NA] * (len(keys) * len(grouping.groups)), dtype="Int64"))
            s = frame.set_index(["label", "group"])[point]
            index = pd.MultiIndex.from_product([keys, grouping.groups])
            return pd.Series(s.reindex(index).to_numpy(), dtype="Int64").reset_index(drop=True)

        cur, ya, pv = lookup(frames[0], labels), lookup(frames[1], ya_labels), lookup(frames[2], pv_labels)
        out = pd.DataFrame({
            request.interval: [lab for lab in labels for _ in grouping.groups],
            request.group: list(grouping.groups) * len(labels),
            "consumption": cur, "year_ago": ya, "previous": pv,
            "current_missing": cur.isna().astype("Int64"), "year_ago_missing": ya.isna().astype("Int64"),
            "previous_missing": pv.isna().astype("Int64"),
        })
        return _derive(out)

    frame = await asyncio.to_thread(build)
    values = [Column("consumption", kind), Column("year_ago", kind), Column("yoy_change", kind, "derived"),
              Column("yoy_pct", "percent", "derived"), Column("previous", kind), Column("pop_change", kind, "derived"),
              Column("pop_pct", "percent", "derived"), Column("current_missing", "count"), Column("year_ago_missing", "count"),
              Column("previous_missing", "count"), Column("missing", "text", "derived")]
    keys = [Column(request.interval), Column(request.group)]
    if request.group == "customer":
        frame.insert(2, "customer_name", frame["customer"].map(grouping.names).astype(object))
        keys.append(Column("customer_name"))
    frame = frame[[k.name for k in keys] + [c.name for c in values]]
    report = Report(request, keys, values, frame, src.minor_units, src.currency, derive=_derive,
                    interval_key=request.interval, group_key=request.group)
    meta: dict[str, Any] = {"year_ago": {"from": ya_start.astimezone(request.tz).isoformat(), "to": ya_end.astimezone(request.tz).isoformat()},
                            "previous": {"from": pv_start.astimezone(request.tz).isoformat(), "to": pv_end.astimezone(request.tz).isoformat()},
                            "unit": "kWh" if kind == "energy" else "m3"}
    report.meta.update(meta)
    return report.finish()
