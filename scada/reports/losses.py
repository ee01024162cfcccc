"""The ``losses`` report: per parent meter (a utility, feeder or common meter with children) and
interval, the parent's consumption, its children's, the loss (parent − children) and the loss in
per cent — the numbers of the meter topology's own loss computation
(:func:`scada.topology.losses.compute_losses`, what ``GET /api/v1/losses`` answers), one call
per bucket.

``commodity`` says which meters: ``electricity`` (kWh, default) or ``water`` (m³). A bucket's
parents are those with children in it; the tree in force at each moment counts (a child moved
during the bucket counts below each parent for its part). Per row: ``children`` (how many
meters were below the parent), ``children_missing`` (how many of them had no data),
``consumption_missing`` (1 when the parent had none), ``estimated`` (1 when a manual meter's
readings were interpolated) and ``missing`` naming the meters without data. A loss is unknown
when the parent's or any child's consumption is; so is a total over buckets or parents that
holds one (its ``*_missing`` counts say how many). The overall total sums the parents' losses
(a feeder's loss counts once, under the feeder; its consumption is also its parent's child's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pandas as pd

from scada.core.limits import check_answer_size
from scada.reports.params import ReportError, ReportRequest, bucket_label, bucket_starts, count_buckets
from scada.reports.sources import Sources
from scada.reports.table import Column, Report
from scada.topology.losses import LossRow, compute_losses, loss_pct

__all__ = ["bucket_bounds", "losses_report"]

KIND_OF = {"electricity": "energy", "water": "volume"}
UNIT_OF = {"electricity": "kWh", "water": "m3"}


def _micro(d: Decimal | None) -> Any:
    if d is None:
        return pd.NA
    return int((d * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))


def _hundredths(d: Decimal | None) -> Any:
    return pd.NA if d is None else int(d * 100)


def bucket_bounds(request: ReportRequest) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """Each bucket's label and its ``[start, end)`` in UTC, clipped to the request's range."""
    starts = bucket_starts(request)
    edges = [dt.datetime.combine(d, dt.time(), request.tz).astimezone(dt.UTC) for d in starts[1:]]
    out = []
    for i, day in enumerate(starts):
        a = request.start if i == 0 else edges[i - 1]
        b = edges[i] if i < len(edges) else request.end
        out.append((bucket_label(day, request.interval), max(a, request.start), min(b, request.end)))
    return out


def _row(label: str, row: LossRow) -> dict[str, Any]:
    children = sorted({c.meter_id for c in row.children})
    without = sorted({c.meter_id for c in row.children if c.usage.quantity is None})
    parent_missing = row.consumption.quantity is None
    return {
        "label": label, "meter": row.meter_id,
        "consumption": _micro(row.consumption.quantity), "children_consumption": _micro(row.children_total),
        "loss": _micro(row.loss), "loss_pct": _hundredths(row.loss_pct),
        "children": len(children), "children_missing": len(without), "consumption_missing": int(parent_missing),
        "estimated": int(row.estimated), "missing": ",".join(([row.meter_id] if parent_missing else []) + without),
    }


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Totals over buckets or parents: a consumption known only when no bucket lacked it, the
    loss and its per cent (the topology's :func:`loss_pct`) only when both sides are known."""
    frame = frame.copy()
    parent_missing = frame["consumption_missing"].fillna(0).astype(int) > 0
    children_missing = frame["children_missing"].fillna(0).astype(int) > 0
    consumption = frame["consumption"].mask(parent_missing)
    children = frame["children_consumption"].mask(children_missing)
    losses: list[Any] = []
    pcts: list[Any] = []
    for c, k in zip(consumption.astype(object), children.astype(object), strict=True):
        if c is pd.NA or k is pd.NA:
            losses.append(pd.NA)
            pcts.append(pd.NA)
            continue
        loss = int(c) - int(k)
        losses.append(loss)
        pct = loss_pct(Decimal(loss), Decimal(int(c)))
        pcts.append(pd.NA if pct is None else int(pct * 100))
    frame["consumption"] = consumption.astype("Int64")
    frame["children_consumption"] = children.astype("Int64")
    frame["loss"] = pd.array(losses, dtype="Int64")
    frame["loss_pct"] = pd.array(pcts, dtype="Int64")
    frame["missing"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


async def losses_report(src: Sources, request: ReportRequest) -> Report:
    if src.usage is None:
        raise ReportError("kind", "the losses report needs the meter topology, which is disabled on this server", 404)
    snap = src.snapshot()
    kind = request.commodity
    parents = sorted(p for p in snap.tree.parents_within(request.start, request.end)
                     if (m := snap.meters.get(p)) is not None and m.kind == kind)
    check_answer_size(count_buckets(request) * len(parents), src.row_limit(request), field="to",
                      hint="narrow the range or use a longer interval")
    src.started += 1
    source = src.usage()
    buckets = bucket_bounds(request)
    found: list[tuple[str, LossRow]] = []
    for i, (label, start, end) in enumerate(buckets):
        src.step("losses", 0.8 * i / max(1, len(buckets)))
        meters = sorted(p for p in snap.tree.parents_within(start, end) if p in parents)
        if meters:
            found.extend((label, row) for row in await compute_losses(source, snap, start, end, meters))
    src.step("grouping", 0.8)
    unit = KIND_OF[kind]
    values = [Column("consumption", unit), Column("children_consumption", unit), Column("loss", unit, "derived"),
              Column("loss_pct", "percent", "derived"), Column("children", "count", "last"), Column("children_missing", "count"),
              Column("consumption_missing", "count"), Column("estimated", "count"), Column("missing", "text", "derived")]

    def build() -> pd.DataFrame:
        rows = [_row(label, row) for label, row in found]
        frame = pd.DataFrame(rows, columns=["label", "meter", *(c.name for c in values)])
        out = pd.DataFrame({request.interval: frame["label"].astype(object), "meter": frame["meter"].astype(object)})
        for c in values:
            out[c.name] = frame[c.name].astype(object) if c.kind == "text" else pd.array(frame[c.name].tolist(), dtype="Int64")
        return out

    frame = await asyncio.to_thread(build)
    report = Report(request, [Column(request.interval), Column("meter")], values, frame, src.minor_units, src.currency,
                    derive=_derive, interval_key=request.interval, group_key="meter")
    report.meta["unit"] = UNIT_OF[kind]
    return await asyncio.to_thread(report.finish)
