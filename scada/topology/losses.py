"""Losses down the meter tree: for each meter with children over a period, its consumption, the
sum of its children's, the loss in the unit and per cent.

The tree is the one in force at each moment of the period: a child moved during the period
counts below each parent for the part it spent there (past periods keep the tree they had).
A loss is unknown when the parent's or any child's consumption is; ``estimated`` when a manual
meter's readings had to be interpolated at the period's ends.

:func:`loss_records` turns a day's losses into day rollups of the pseudo-meters
``loss:<meter>`` (the loss in the register field of the meter's kind), which the historian
stores beside the meters' own, and :data:`LOSS_PCT_POINT` is the tag each parent's last whole
day is published on (the ``loss_high`` alarm class watches it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from historian.records import IntervalRecord
from scada.site.assets import AssetSnapshot
from scada.topology.usage import UNIT_OF_KIND, Span, Usage, UsageSource, point_of

__all__ = ["LOSS_PCT_POINT", "LOSS_PREFIX", "ChildUsage", "LossRow", "compute_losses", "loss_records", "loss_pct"]

LOSS_PCT_POINT = "loss_pct"
LOSS_PREFIX = "loss:"
PCT_STEP = Decimal("0.01")


def loss_pct(loss: Decimal, consumption: Decimal) -> Decimal | None:
    """``loss`` as a per cent of ``consumption``, to two decimals (None when nothing was used)."""
    if consumption == 0:
        return None
    return (loss * 100 / consumption).quantize(PCT_STEP, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class ChildUsage:
    meter_id: str
    start: dt.datetime
    end: dt.datetime
    usage: Usage


@dataclass(frozen=True)
class LossRow:
    meter_id: str
    kind: str
    start: dt.datetime
    end: dt.datetime
    consumption: Usage
    children: tuple[ChildUsage, ...]

    @property
    def unit(self) -> str:
        return UNIT_OF_KIND.get(self.kind, "")

    @property
    def children_total(self) -> Decimal | None:
        if any(c.usage.quantity is None for c in self.children):
            return None
        return sum((c.usage.quantity for c in self.children if c.usage.quantity is not None), Decimal(0))

    @property
    def loss(self) -> Decimal | None:
        total = self.children_total
        if self.consumption.quantity is None or total is None:
            return None
        return self.consumption.quantity - total

    @property
    def loss_pct(self) -> Decimal | None:
        loss = self.loss
        if loss is None or self.consumption.quantity is None:
            return None
        return loss_pct(loss, self.consumption.quantity)

    @property
    def estimated(self) -> bool:
        return self.consumption.estimated or any(c.usage.estimated for c in self.children)

    @property
    def known(self) -> bool:
        return self.loss is not None

    def notes(self) -> list[str]:
        out = list(self.consumption.notes)
        for c in self.children:
            out.extend(n for n in c.usage.notes if n not in out)
        return out

    def as_json(self, tz: dt.tzinfo | None = None) -> dict[str, Any]:
        """The row for the API; times in ``tz`` (the site's) when given."""

        def num(d: Decimal | None) -> str | None:
            return format(d, "f") if d is not None else None

        def t(ts: dt.datetime) -> str:
            return (ts.astimezone(tz) if tz is not None else ts).isoformat()

        return {
            "meter": self.meter_id,
            "kind": self.kind,
            "unit": self.unit,
            "from": t(self.start),
            "to": t(self.end),
            "consumption": num(self.consumption.quantity),
            "children_consumption": num(self.children_total),
            "loss": num(self.loss),
            "loss_pct": num(self.loss_pct),
            "estimated": self.estimated,
            "children": [
                {"meter": c.meter_id, "from": t(c.start), "to": t(c.end), "consumption": num(c.usage.quantity),
                 "estimated": c.usage.estimated}
                for c in self.children
            ],
            "intervals": self.consumption.intervals,
            "expected_intervals": self.consumption.expected,
            "notes": self.notes(),
        }


async def compute_losses(
    source: UsageSource, snapshot: AssetSnapshot, start: dt.datetime, end: dt.datetime, meters: Sequence[str] | None = None
) -> list[LossRow]:
    """The loss of every meter that had children during ``[start, end)`` (or of ``meters``)."""
    tree = snapshot.tree
    parents = sorted(meters if meters is not None else tree.parents_within(start, end))
    spans: list[Span] = []
    plan: list[tuple[str, list[tuple[str, dt.datetime, dt.datetime]]]] = []
    for parent in parents:
        children = [(c.meter_id, c.start, c.end) for c in tree.child_spans(parent, start, end)]
        plan.append((parent, children))
        spans.append(Span(parent, start, end))
        spans.extend(Span(m, s, e) for m, s, e in children)
    usages = iter(await source.usage(spans))
    out: list[LossRow] = []
    for parent, children in plan:
        own = next(usages)
        kids = tuple(ChildUsage(m, s, e, next(usages)) for m, s, e in children)
        info = snapshot.meters.get(parent)
        out.append(LossRow(parent, info.kind if info else "electricity", start, end, own, kids))
    return out


def loss_records(rows: Sequence[LossRow], day_start: int, day_length: int) -> list[IntervalRecord]:
    """Day rollups of ``loss:<meter>`` for the known losses of one day (exact millionths)."""
    out = []
    for row in rows:
        loss = row.loss
        if loss is None:
            continue
        micro = int((loss * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))
        point = point_of(row.kind)
        values: dict[str, int | float] = {
            f"{point}__sum": micro, f"{point}__count": 1, f"{point}__min": micro, f"{point}__max": micro,
        }
        out.append(IntervalRecord(LOSS_PREFIX + row.meter_id, day_start, day_length, values))
    return out
