"""The ``arrears`` report: accounts below zero or with unpaid bills, what they owe aged in the
buckets ``0-30``, ``31-60``, ``61-90``, ``90+`` days past the due dates of their bills, by room,
floor, building or customer, with totals.

It is a picture at one moment: the end of ``to`` (default: now); ``from`` and ``interval`` are not
used. The computation is the back office's (:func:`scada.billing.dunning.arrears_rows`): a credit
pays the oldest bills first, what no bill shows yet is 0–30 days old; at a past moment the
balances are the ledger's at that moment and the bills those issued before it.
"""

from __future__ import annotations

import pandas as pd

from scada.billing.dunning import BUCKETS, arrears_rows
from scada.core.limits import check_answer_size
from scada.reports.params import ReportRequest
from scada.reports.sources import Sources
from scada.reports.table import Column, Report

__all__ = ["arrears_report"]

VALUES = [Column("accounts", "count"), Column("unpaid_bills", "count"), Column("balance", "money"), Column("outstanding", "money"),
          *(Column(f"aged_{b.replace('-', '_').replace('+', '_plus')}", "money") for b in BUCKETS), Column("arrears", "money")]


async def arrears_report(src: Sources, request: ReportRequest) -> Report:
    src.started += 1
    now = src.clock()
    as_of = None if request.end >= now else request.end
    moment = request.end if as_of is not None else now
    async with src.db.reads() as s:
        rows = await arrears_rows(s, moment.astimezone(src.tz).date(), src.tz, as_of)
    check_answer_size(len(rows), src.row_limit(request), field="group", hint="group by floor, building or customer")
    snap = src.snapshot()
    out: dict[str, list[object]] = {request.group: [], **{c.name: [] for c in VALUES}}
    names: dict[str, str] = {}
    for r in rows:
        room = snap.rooms.get(r.room)
        if request.group == "room":
            key: str | None = r.room
        elif request.group == "customer":
            key = None if r.customer is None else str(r.customer)
            if key is not None:
                names[key] = r.customer_name
        elif room is None:
            key = None
        else:
            key = room.floor_id if request.group == "floor" else room.building_id
        out[request.group].append(key)
        values = [1, r.unpaid_bills, r.balance_minor, r.outstanding_minor, *(r.buckets[b] for b in BUCKETS), r.total_minor]
        for c, v in zip(VALUES, values, strict=True):
            out[c.name].append(v)
    frame = pd.DataFrame(out)
    frame[request.group] = frame[request.group].astype(object)
    grouped = frame.groupby(request.group, dropna=False, sort=True)[[c.name for c in VALUES]].sum().reset_index()
    for c in VALUES:
        grouped[c.name] = grouped[c.name].astype("Int64")
    keys = [Column(request.group)]
    if request.group == "customer":
        grouped.insert(1, "customer_name", grouped["customer"].map(names).astype(object))
        keys.append(Column("customer_name"))
    report = Report(request, keys, list(VALUES), grouped, src.minor_units, src.currency, group_key=request.group)
    report.meta["as_of"] = moment.astimezone(src.tz).isoformat()
    return report.finish()
