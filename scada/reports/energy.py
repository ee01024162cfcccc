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
from sqlalchemy import Text, bindparam, cast, literal, select, text, union_all
from sqlalchemy.orm import aliased

from historian.backends.base import DAY
from historian.query import HistoryQuery, Resample
from scada.core.limits import check_answer_size
from scada.db.types import UtcDateTime
from scada.prepaid.models import LedgerEntry
from scada.reports.params import ReportError, ReportRequest, bucket_label, bucket_of, bucket_starts, count_buckets
from scada.reports.sources import Grouping, Sources, meter_grouping
from scada.reports.table import Column, Report

__all__ = ["ENERGY_VALUES", "PERIODS", "energy_report", "history_frame", "money_cells", "money_frame", "money_rows", "split_many", "split_minor"]

PERIODS = ("sharp", "peak", "flat", "valley")
POINTS = {"energy_total": "energy", "energy_sharp": "energy_sharp", "energy_peak": "energy_peak",
          "energy_flat": "energy_flat", "energy_valley": "energy_valley", "volume_total": "water"}
MONEY = tuple(f"money_{p}" for p in PERIODS) + ("money_other", "money_water")
ENERGY_VALUES = [Column(name, "volume" if name == "water" else "energy") for name in POINTS.values()] + [
    Column(name, "money") for name in (*MONEY, "money")
]
_SCALE = 20  # exact line amounts as integers of 10⁻²⁰ (the ledger keeps costs to 20 decimals)
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
    # a query per run of whole buckets: the historian's long answer (a row per bucket, group and
    # point) is several times the size of the wide table it becomes, so only a slice of it is
    # held at a time. Sliced by time, not by groups: the historian reads the day rollups of a
    # range through its index on time, so slices of the groups would each read the whole range.
    per_slice = max(1, _HISTORY_CELLS // len(members))
    starts = bucket_starts(request)
    edges = [max(request.start, dt.datetime.combine(d, dt.time(), request.tz)) for d in starts[::per_slice]] + [request.end]
    edges[0] = request.start
    wides = []
    for a, b in zip(edges, edges[1:], strict=False):
        if a >= b:
            continue
        query = HistoryQuery(members, list(POINTS), a, b, _RESAMPLE[request.interval], "sum", "group")
        frame = await src.history(query)
        wides.append(await asyncio.to_thread(_wide, frame, label))
        del frame
    if not wides:
        return pd.DataFrame(columns=["label", "group", *POINTS.values()])
    return wides[0] if len(wides) == 1 else pd.concat(wides, ignore_index=True)


def _wide(frame: pd.DataFrame, label: Any) -> pd.DataFrame:
    """The historian's long answer (time, group, point, value) as (label, group) → points in millionths."""
    codes, times = pd.factorize(frame["time"])
    labels = np.asarray([label(t.date()) for t in times], dtype=object)
    values = frame["value"].to_numpy(dtype="float64")
    micro = pd.array(np.where(np.isnan(values), 0, np.rint(values * 1_000_000)).astype("int64"), dtype="Int64")
    micro[np.isnan(values)] = pd.NA
    long = pd.DataFrame({"label": labels[codes], "group": frame["group"].to_numpy(dtype=object),
                         "point": frame["point"].map(POINTS).to_numpy(dtype=object), "v": micro})
    wide = long.groupby(["label", "group", "point"], sort=False)["v"].sum(min_count=1).unstack("point")
    wide = wide.reindex(columns=list(POINTS.values()))
    return wide.reset_index()


async def _deductions(src: Sources, request: ReportRequest) -> list[Any]:
    """(reading time, meter, amount, detail text, sign) of the deductions read in the range, and
    of the reversals of those deductions (with the original's reading, meter and lines)."""
    e = LedgerEntry
    orig = aliased(LedgerEntry)
    direct = select(e.reading_ts, e.meter_id, e.amount_minor, cast(e.detail, Text), literal(1)).where(
        e.kind == "deduction", e.reading_ts >= request.start, e.reading_ts < request.end)
    undone = select(orig.reading_ts, orig.meter_id, e.amount_minor, cast(orig.detail, Text), literal(-1)).join(
        orig, e.reverses_id == orig.id).where(
        e.kind == "reversal", orig.kind == "deduction", orig.reading_ts >= request.start, orig.reading_ts < request.end)
    async with src.db.sessions() as s:
        return list((await s.execute(union_all(direct, undone))).all())


def _weights(detail: str | None, sign: int) -> Iterable[tuple[str, int]]:
    if not detail or '"lines"' not in detail:
        return ()
    lines = json.loads(detail).get("lines") or []
    out = []
    for ln in lines:
        period = ln.get("period")
        slot = period if period in PERIODS else "other"
        out.append((slot, sign * int(Decimal(ln["amount"]).scaleb(_SCALE))))
    return out


def money_rows(rows: Iterable[Any], request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> pd.DataFrame:
    """(label, group) → money columns in minor units (see the module docstring)."""
    label = _labeller(request)
    tz = request.tz
    slots = (*PERIODS, "other")
    cells: dict[tuple[str, str], list[Any]] = {}
    for ts, meter, amount, detail, sign in rows:
        group = by_meter.get(meter)
        if group is None or ts is None:
            continue
        key = (label(ts.astimezone(tz).date()), group)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = [0, dict.fromkeys(slots, 0), 0]
        charged = -int(amount)
        if meter in water:
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
    out: dict[str, list[Any]] = {"label": [], "group": [], **{m: [] for m in MONEY}}
    for (lab, group), (elec, weights, wat) in cells.items():
        out["label"].append(lab)
        out["group"].append(group)
        parts = split_minor(elec, [weights[s] for s in slots])
        for s, part in zip(slots, parts, strict=True):
            out[f"money_{s}"].append(part)
        out["money_water"].append(wat)
    frame = pd.DataFrame(out)
    for m in MONEY:
        frame[m] = frame[m].astype("Int64")
    return frame


async def money_frame(src: Sources, request: ReportRequest, grouping: Grouping) -> pd.DataFrame:
    snap = src.snapshot()
    water = {m.id for m in snap.meters.values() if m.kind == "water"}
    frame = await _money_sums(src, request)
    if frame["odd"].any():
        # an amount the database's arithmetic does not read: every deduction through Python
        del frame
        rows = await _deductions(src, request)
        return await asyncio.to_thread(money_rows, rows, request, grouping.by_member, water)
    return await asyncio.to_thread(money_cells, frame, request, grouping.by_member, water)


# ---- money summed in the database ------------------------------------------------------------

# Each deduction of the range (sign 1) and each reversal of one (sign -1, with the original's
# reading, meter and lines), summed by meter and local day in the database: what was charged,
# what rows without lines charged (``bare``: :func:`money_rows` weighs them as "other"), and the
# exact amounts of the priced lines per slot as two integers, ``hi`` in 10⁻⁸ and ``lo`` the
# 10⁻²⁰ below that (``hi`` × 10¹² + ``lo`` is the amount in 10⁻²⁰, cut as :func:`_weights`
# cuts), so that the sums are exact in 64-bit integers (SQLite has no exact decimal type).
# ``odd`` counts lines whose amount is not plain decimal text: the report then falls back to
# :func:`money_rows`, which reads them as Python does.
_SLOTS = (*PERIODS, "other")
_SUM_COLUMNS = ["meter", "day", "charged", "bare", *(f"hi_{s}" for s in _SLOTS), *(f"lo_{s}" for s in _SLOTS), "odd"]
_LO = 10**12
_SPLIT_CHUNK = 20_000
_SUM_BATCH = 20_000  # rows of the database's sums converted at a time


def _sum_by_slot(hi: str, lo: str) -> str:
    slot = "CASE WHEN period IN ('sharp', 'peak', 'flat', 'valley') THEN period ELSE 'other' END"
    return ",\n  ".join([f"sum(CASE WHEN {slot} = '{s}' THEN {hi} ELSE 0 END)" for s in _SLOTS]
                        + [f"sum(CASE WHEN {slot} = '{s}' THEN {lo} ELSE 0 END)" for s in _SLOTS])


def _rows_sql(day: str, oday: str) -> str:
    return f"""
  SELECT e.meter_id AS meter, {day} AS day, -e.amount_minor AS charged, e.detail AS detail, 1 AS sign
  FROM prepaid_ledger e
  WHERE e.kind = 'deduction' AND e.reading_ts >= :start AND e.reading_ts < :end
  UNION ALL
  SELECT o.meter_id, {oday}, -e.amount_minor, o.detail, -1
  FROM prepaid_ledger e JOIN prepaid_ledger o ON e.reverses_id = o.id
  WHERE e.kind = 'reversal' AND o.kind = 'deduction' AND o.reading_ts >= :start AND o.reading_ts < :end"""


_HEAD = """SELECT meter, day,
  sum(CASE WHEN k IS NULL OR k = 0 THEN charged ELSE 0 END),
  sum(CASE WHEN k IS NULL THEN sign * abs(charged) ELSE 0 END),
  """

# SQLite: the amount's text split at its point into the integer part and 20 decimals (cut, not
# rounded). "LIMIT -1 OFFSET 0" keeps each inner query from being flattened into the next,
# which would extract the amount from the line's JSON once per use instead of once.
_SQLITE_MONEY = (
    "WITH d AS (" + _rows_sql("date(e.reading_ts, :shift)", "date(o.reading_ts, :shift)") + """
), x AS (
  SELECT d.meter AS meter, d.day AS day, d.sign AS sign, d.charged AS charged, j.key AS k,
         json_extract(j.value, '$.period') AS period, json_extract(j.value, '$.amount') AS a
  FROM d LEFT JOIN json_each(CASE WHEN json_type(d.detail, '$.lines') = 'array' THEN d.detail END, '$.lines') AS j
  LIMIT -1 OFFSET 0
), y AS (
  SELECT meter, day, sign, charged, k, period, typeof(a) = 'text' AS txt,
         CASE WHEN substr(a, 1, 1) = '-' THEN -sign ELSE sign END AS s, ltrim(a, '-') AS t
  FROM x LIMIT -1 OFFSET 0
), z AS (
  SELECT meter, day, sign, charged, k, period, s,
         CASE WHEN instr(t, '.') = 0 THEN t ELSE substr(t, 1, instr(t, '.') - 1) END AS ip,
         substr(CASE WHEN instr(t, '.') = 0 THEN '' ELSE substr(t, instr(t, '.') + 1) END || '00000000000000000000', 1, 20) AS f20,
         CASE WHEN k IS NULL THEN 0
              WHEN NOT txt OR t = '' OR t = '.' OR t GLOB '*[^0-9.]*' OR t GLOB '*.*.*' OR instr(t || '.', '.') > 11
              THEN 1 ELSE 0 END AS odd
  FROM y LIMIT -1 OFFSET 0
)
""" + _HEAD + _sum_by_slot(
        "CASE WHEN k IS NULL OR odd THEN 0 ELSE s * (CAST(ip AS INTEGER) * 100000000 + CAST(substr(f20, 1, 8) AS INTEGER)) END",
        "CASE WHEN k IS NULL OR odd THEN 0 ELSE s * CAST(substr(f20, 9) AS INTEGER) END") + """,
  sum(odd)
FROM z GROUP BY meter, day""")

# PostgreSQL: numeric is exact; the same two integers, cut toward zero as on SQLite (amounts of
# 10¹⁰ or more count as odd there too, so that both engines fall back alike).
_PG_MONEY = (
    "WITH d AS (" + _rows_sql("CAST(timezone('UTC', e.reading_ts) + make_interval(secs => :shift) AS date)",
                              "CAST(timezone('UTC', o.reading_ts) + make_interval(secs => :shift) AS date)") + """
), x AS (
  SELECT d.meter AS meter, d.day AS day, d.sign AS sign, d.charged AS charged, j.k - 1 AS k, j.v ->> 'period' AS period,
         CAST(j.v ->> 'amount' AS numeric) AS a
  FROM d LEFT JOIN LATERAL json_array_elements(CASE WHEN json_typeof(d.detail -> 'lines') = 'array' THEN d.detail -> 'lines' END)
       WITH ORDINALITY AS j(v, k) ON true
), z AS (
  SELECT meter, day, sign, charged, k, period,
         CASE WHEN k IS NULL OR abs(a) >= 10000000000 THEN 0 ELSE sign * trunc(a * 100000000) END AS h,
         CASE WHEN k IS NULL OR abs(a) >= 10000000000 THEN 0 ELSE sign * trunc(a * 100000000000000000000) END AS w,
         CASE WHEN k IS NOT NULL AND abs(a) >= 10000000000 THEN 1 ELSE 0 END AS odd
  FROM x
)
""" + _HEAD + _sum_by_slot("CAST(h AS bigint)", "CAST(w - h * 1000000000000 AS bigint)") + """,
  sum(odd)
FROM z GROUP BY meter, day""")


def _offset_spans(start: dt.datetime, end: dt.datetime, tz: Any) -> list[tuple[dt.datetime, dt.datetime, int]]:
    """[start, end) cut where the site's UTC offset changes: (from, to, offset in seconds). Steps
    of six hours find every change (no zone changes twice that fast); bisection finds the second."""
    def offset(t: dt.datetime) -> int:
        off = t.astimezone(tz).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    out = []
    a, a_off = start, offset(start)
    t = start
    step = dt.timedelta(hours=6)
    while t < end:
        nxt = min(t + step, end)
        if offset(nxt) != a_off and nxt < end or nxt == end and offset(end - dt.timedelta(seconds=1)) != a_off:
            lo, hi = t, nxt  # offset(lo) == a_off, the change lies in (lo, hi]
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid <= lo:
                    break
                lo, hi = (mid, hi) if offset(mid) == a_off else (lo, mid)
            out.append((a, hi, a_off))
            a, a_off = hi, offset(hi)
        t = nxt
    out.append((a, end, a_off))
    return [s for s in out if s[0] < s[1]]


async def _money_sums(src: Sources, request: ReportRequest) -> pd.DataFrame:
    """The sums described above, one row per meter and local day of the range (a query per span
    of one UTC offset), streamed: each batch of rows becomes 64-bit columns as it arrives."""
    sqlite = src.db.dialect == "sqlite"
    stmt = text(_SQLITE_MONEY if sqlite else _PG_MONEY).bindparams(
        bindparam("start", type_=UtcDateTime()), bindparam("end", type_=UtcDateTime()))
    frames = []
    async with src.db.reads() as s:
        for a, b, off in _offset_spans(request.start.astimezone(dt.UTC), request.end.astimezone(dt.UTC), request.tz):
            shift = f"{off:+d} seconds" if sqlite else float(off)
            result = await s.stream(stmt, {"start": a, "end": b, "shift": shift})
            async for rows in result.partitions(_SUM_BATCH):
                frames.append(await asyncio.to_thread(_sums_batch, rows))
    if not frames:
        frames.append(_sums_batch([]))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _sums_batch(rows: Sequence[Any]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(list(rows), columns=_SUM_COLUMNS, coerce_float=False)
    ints = _SUM_COLUMNS[2:]
    frame[ints] = frame[ints].astype("int64")  # PostgreSQL's sums are numeric (exact) and fit
    frame["day"] = frame["day"].astype(str)
    return frame


def money_cells(sums: pd.DataFrame, request: ReportRequest, by_meter: dict[str, str], water: set[str]) -> pd.DataFrame:
    """:func:`money_rows` from the database's sums (the same figures)."""
    frame = sums.assign(group=sums["meter"].map(by_meter))
    frame = frame[frame["group"].notna()]
    if not len(frame):
        return money_rows((), request, by_meter, water)
    label = _labeller(request)
    days = {d: label(dt.date.fromisoformat(d)) for d in frame["day"].unique()}
    frame = frame.assign(label=frame["day"].map(days), is_water=frame["meter"].isin(water))
    for s in _SLOTS:  # carry, so that each lo is within [0, 10¹²) and their sums cannot overflow
        carry, frame[f"lo_{s}"] = np.divmod(frame[f"lo_{s}"].to_numpy(), _LO)
        frame[f"hi_{s}"] = frame[f"hi_{s}"].to_numpy() + carry
    # rows without lines weigh as "other": their charged minor units × 10²⁰ (as money_rows does)
    frame["hi_other"] = frame["hi_other"] + frame["bare"] * 100_000_000
    frame["water_charged"] = frame["charged"].where(frame["is_water"], 0)
    frame["elec_charged"] = frame["charged"].where(~frame["is_water"], 0)
    for s in _SLOTS:
        for part in ("hi", "lo"):
            frame[f"{part}_{s}"] = frame[f"{part}_{s}"].where(~frame["is_water"], 0)
    cols = ["elec_charged", "water_charged", *(f"hi_{s}" for s in _SLOTS), *(f"lo_{s}" for s in _SLOTS)]
    cells = frame.groupby(["label", "group"], sort=False)[cols].sum()
    weights = [[int(h) * _LO + int(lo) for h, lo in zip(cells[f"hi_{s}"].tolist(), cells[f"lo_{s}"].tolist(), strict=True)]
               for s in _SLOTS]
    parts = split_many(cells["elec_charged"].tolist(), weights)
    out: dict[str, Any] = {"label": cells.index.get_level_values(0).to_numpy(dtype=object)}
    out["label"] = cells.index.get_level_values(0).to_numpy(dtype=object)
    out["group"] = cells.index.get_level_values(1).to_numpy(dtype=object)
    for s, col in zip(_SLOTS, parts, strict=True):
        out[f"money_{s}"] = col
    out["money_water"] = cells["water_charged"].to_numpy()
    result = pd.DataFrame(out)
    for m in MONEY:
        result[m] = result[m].astype("Int64")
    return result


def split_many(totals: list[int], weights: list[list[int]]) -> list[list[int]]:
    """:func:`split_minor` of many totals at once: ``weights[j][i]`` is slot j's weight in cell
    i; the answer ``[slot][cell]``. Cells whose weights are all zero or not all of one sign go
    through :func:`split_minor`; the rest (nearly all) in numpy over Python integers, same result."""
    n, k = len(totals), len(weights)
    if n > _SPLIT_CHUNK:  # the Python integers of the arithmetic below, a chunk at a time
        parts = [split_many(totals[i:i + _SPLIT_CHUNK], [col[i:i + _SPLIT_CHUNK] for col in weights]) for i in range(0, n, _SPLIT_CHUNK)]
        return [[x for part in parts for x in part[j]] for j in range(k)]
    if n == 0:
        return [[] for _ in range(k)]
    w = np.empty((n, k), dtype=object)
    for j, col in enumerate(weights):
        w[:, j] = col
    t = np.empty(n, dtype=object)
    t[:] = totals
    wsum = w.sum(axis=1)
    plain = (w >= 0).all(axis=1) & (wsum > 0)
    out = np.zeros((n, k), dtype=object)
    if plain.any():
        wp, tp, sp = w[plain], t[plain][:, None], wsum[plain][:, None]
        scaled = tp * wp
        q, r = scaled // sp, scaled % sp
        rest = (t[plain] - q.sum(axis=1)).astype("int64")  # 0 <= rest < k
        # largest remainder first, ties to the earlier slot: a stable sort on the negated remainders
        order = np.argsort(-r, axis=1, kind="stable")
        bump = np.zeros(q.shape, dtype="int64")
        np.put_along_axis(bump, order, (np.arange(k)[None, :] < rest[:, None]).astype("int64"), axis=1)
        out[plain] = q + bump
    for i in np.flatnonzero(~plain):
        out[i] = split_minor(totals[i], [col[i] for col in weights])
    return [out[:, j].tolist() for j in range(k)]


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
    # the ledger's sums run in the database's thread while history is read in the historian's
    money_task = asyncio.create_task(money_frame(src, request, grouping), name="energy report money")
    try:
        history = await history_frame(src, request, grouping)
        src.step("ledger", 0.4)
        money = await money_task
    finally:
        if not money_task.done():
            money_task.cancel()
            await asyncio.wait([money_task])
        if money_task.done() and not money_task.cancelled():
            money_task.exception()  # retrieved (raised above when history succeeded)
    src.step("grouping", 0.7)
    frame = await asyncio.to_thread(assemble, request, grouping, history, money)
    keys = keys_for(request, grouping, frame)
    report = Report(request, keys, list(ENERGY_VALUES), frame, src.minor_units, src.currency,
                    interval_key=request.interval, group_key=request.group)
    return report.finish()
