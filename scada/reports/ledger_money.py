"""The money the ledger charged for consumption, read from its deductions and added up per key:
what the energy report shows (keyed by bucket and group) and what the ledger day rollup keeps
(keyed by local day and meter, :mod:`scada.reports.rollup`).

A deduction counts where its reading falls (its ``reading_ts``, in the site's calendar); a
reversal of a deduction counts against the original's reading, meter and lines. A cell holds
what was charged (the deductions' rounded amounts, minor units), the exact amounts of their
priced lines per time-of-use slot (``sharp`` … ``valley``, ``other`` for lines without one of
those periods and for deductions without lines), as integers of 10⁻²⁰, and what was charged on
water meters. The report splits the charged money over the slots in proportion to those exact
amounts; sums of cells are cells, so a rollup's cells and the ledger's later entries add up to
what every entry at once gives.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Text, cast, literal, select, type_coerce, union_all
from sqlalchemy.orm import aliased

from scada.prepaid.models import LedgerEntry

__all__ = ["PERIODS", "SLOTS", "WATER", "Cell", "LocalDays", "add_deductions", "day_start", "deductions_query", "new_cell", "scaled", "split_minor"]

PERIODS = ("sharp", "peak", "flat", "valley")
SLOTS = (*PERIODS, "other")
_SLOT = {p: i for i, p in enumerate(PERIODS, start=1)}
_OTHER = len(SLOTS)  # a cell: [charged, sharp, peak, flat, valley, other, water charged]
WATER = _OTHER + 1
SCALE = 20  # exact line amounts as integers of 10⁻²⁰ (the ledger keeps costs to 20 decimals)

Cell = list[int]
KeyOf = Callable[[Any, str], Any]


def new_cell() -> Cell:
    return [0] * (WATER + 1)


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


def day_start(day: dt.date, tz: Any) -> dt.datetime:
    """The first instant of ``day`` in ``tz``'s calendar: local midnight, or where a clock change
    at midnight makes the day begin (the instant after the gap; after a repeated hour)."""
    start = dt.datetime.combine(day, dt.time(), tz)
    if start.astimezone(dt.UTC).astimezone(tz).date() != day:  # midnight comes twice: the day starts at the later one
        start = start.replace(fold=1)
    return start


def deductions_query(*, start: dt.datetime | None = None, end: dt.datetime | None = None,
                     after_id: int | None = None, through_id: int | None = None) -> Any:
    """(reading time, meter, amount, detail text, sign) of the deductions read in ``[start, end)``,
    and of the reversals of those deductions (with the original's reading, meter and lines);
    ``after_id``/``through_id`` bound the id of the entry itself (the reversal's, for a reversal)."""
    e = LedgerEntry
    orig = aliased(LedgerEntry)
    # the reading time as the driver gives it (SQLite: text), not parsed into a datetime per row:
    # that was a third of the energy report's CPU; LocalDays parses each distinct minute once
    direct = select(type_coerce(e.reading_ts, String), e.meter_id, e.amount_minor, cast(e.detail, Text), literal(1)).where(
        e.kind == "deduction")
    undone = select(type_coerce(orig.reading_ts, String), orig.meter_id, e.amount_minor, cast(orig.detail, Text), literal(-1)).join(
        orig, e.reverses_id == orig.id).where(e.kind == "reversal", orig.kind == "deduction")
    if start is not None:
        direct, undone = direct.where(e.reading_ts >= start), undone.where(orig.reading_ts >= start)
    if end is not None:
        direct, undone = direct.where(e.reading_ts < end), undone.where(orig.reading_ts < end)
    if after_id is not None:
        direct, undone = direct.where(e.id > after_id), undone.where(e.id > after_id)
    if through_id is not None:
        direct, undone = direct.where(e.id <= through_id), undone.where(e.id <= through_id)
    return union_all(direct, undone)


class LocalDays:
    """The local date of a reading time as the driver gives it (text from SQLite, a datetime
    from PostgreSQL), looked up by its minute: zone offsets are whole minutes, so the minute
    fixes the day, and a month's million readings fall on a few thousand minutes."""

    def __init__(self, tz: Any) -> None:
        self.tz = tz
        self._days: dict[Any, dt.date] = {}

    def __call__(self, ts: Any) -> dt.date:
        key = ts[:16] if isinstance(ts, str) else ts.replace(second=0, microsecond=0)
        day = self._days.get(key)
        if day is None:
            when = dt.datetime.fromisoformat(ts) if isinstance(ts, str) else ts
            if when.tzinfo is None:  # SQLite keeps UTC without its offset
                when = when.replace(tzinfo=dt.UTC)
            day = self._days[key] = when.astimezone(self.tz).date()
        return day


def scaled(amount: Any) -> int:
    """``int(Decimal(amount).scaleb(20))``: a line amount in 10⁻²⁰, cut toward zero. Plain
    decimal text of up to 20 decimals (what the ledger writes) is read as digits, several times
    faster than a Decimal over a month's five million lines; anything else goes through Decimal."""
    if isinstance(amount, str):
        whole, _, frac = amount.partition(".")
        digits = whole[1:] if whole[:1] == "-" else whole
        if (len(frac) <= SCALE and (digits or frac) and digits.isascii() and frac.isascii()
                and (not digits or digits.isdigit()) and (not frac or frac.isdigit())):
            return int(whole + frac.ljust(SCALE, "0")) if digits or whole[:1] != "-" else -int(frac.ljust(SCALE, "0"))
    return int(Decimal(amount).scaleb(SCALE))


def _line_weights(detail: str | None, sign: int) -> list[tuple[int, int]]:
    """(slot index in a cell, signed exact amount) of a deduction's priced lines."""
    if not detail or '"lines"' not in detail:
        return []
    lines = json.loads(detail).get("lines") or []
    return [(_SLOT.get(ln.get("period"), _OTHER), sign * scaled(ln["amount"])) for ln in lines]


def add_deductions(cells: dict[Any, Cell], rows: Iterable[Any], key_of: KeyOf, water: set[str] | frozenset[str]) -> None:
    """Add rows of :func:`deductions_query` to ``cells`` under ``key_of(reading time, meter)``
    (``None``: the row counts nowhere); a water meter's money goes to the water column alone."""
    for ts, meter, amount, detail, sign in rows:
        if ts is None or meter is None:
            continue
        key = key_of(ts, meter)
        if key is None:
            continue
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = new_cell()
        charged = -int(amount)
        if meter in water:
            cell[WATER] += charged
            continue
        cell[0] += charged
        found = False
        for slot, w in _line_weights(detail, int(sign)):
            cell[slot] += w
            found = True
        if not found:
            cell[_OTHER] += int(sign) * abs(charged) * 10**SCALE
