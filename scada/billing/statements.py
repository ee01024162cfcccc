"""Statements: an account's ledger over any range, and the lines a bill is made of.

The balance at an instant ``t`` is the sum of the account's entries with ``ts < t``. A
statement of ``[from, to)`` is that balance at ``from`` (``opening_balance``), every entry in
the range signed as it moved the balance, and the balance at ``to`` (``closing_balance``):
opening plus the entries equals closing by construction, and closing is the ledger's balance at
``to``. Consumption is summed per commodity and time-of-use period from the deductions' lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.charges import tax_part
from scada.prepaid.models import LedgerEntry
from scada.prepaid.money import exact, format_minor
from scada.prepaid.pricing import plain

__all__ = ["Statement", "balance_at", "bill_lines", "entries_between", "statement_of"]

ZERO = Decimal(0)
UNITS = {"electricity": "kWh", "water": "m3"}


async def balance_at(s: AsyncSession, account_id: int, t: dt.datetime) -> int:
    total = await s.scalar(select(func.sum(LedgerEntry.amount_minor)).where(LedgerEntry.account_id == account_id, LedgerEntry.ts < t))
    return int(total or 0)


async def entries_between(s: AsyncSession, account_id: int, start: dt.datetime, end: dt.datetime) -> list[LedgerEntry]:
    return list((await s.scalars(
        select(LedgerEntry).where(LedgerEntry.account_id == account_id, LedgerEntry.ts >= start, LedgerEntry.ts < end)
        .order_by(LedgerEntry.ts, LedgerEntry.id)
    )).all())


@dataclass
class Statement:
    account_id: int
    room_id: str
    start: dt.datetime
    end: dt.datetime
    opening_minor: int
    entries: list[dict[str, Any]]
    closing_minor: int
    consumption: list[dict[str, Any]] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_json(self, minor_units: int) -> dict[str, Any]:
        return {
            "account": self.account_id, "room": self.room_id, "from": self.start.isoformat(), "to": self.end.isoformat(),
            "opening_balance": format_minor(self.opening_minor, minor_units),
            "entries": self.entries,
            "totals": {k: format_minor(v, minor_units) for k, v in sorted(self.by_kind.items())},
            "consumption": self.consumption,
            "closing_balance": format_minor(self.closing_minor, minor_units),
        }


def describe(e: LedgerEntry) -> str:
    return e.reason or e.kind


async def statement_of(
    s: AsyncSession, account_id: int, room_id: str, start: dt.datetime, end: dt.datetime, minor_units: int,
    commodity_of: Callable[[str | None, str | None], str],
) -> Statement:
    """The statement of ``[start, end)``; ``commodity_of(meter, tariff)`` names a deduction's commodity."""
    opening = await balance_at(s, account_id, start)
    rows = await entries_between(s, account_id, start, end)
    running = opening
    entries: list[dict[str, Any]] = []
    by_kind: dict[str, int] = {}
    use: dict[tuple[str, str], Decimal] = {}
    with exact():
        for e in rows:
            running += e.amount_minor
            by_kind[e.kind] = by_kind.get(e.kind, 0) + e.amount_minor
            item: dict[str, Any] = {
                "id": e.id, "ts": e.ts.isoformat(), "kind": e.kind, "amount": format_minor(e.amount_minor, minor_units),
                "balance": format_minor(running, minor_units), "description": describe(e),
            }
            for key in ("channel", "reference", "meter_id"):
                value = getattr(e, key)
                if value is not None:
                    item[key.removesuffix("_id")] = value
            if e.kind == "apportionment" and e.quantity is not None:  # a share of a common meter or a loss
                item["quantity"] = plain(e.quantity)
                item["unit"] = (e.detail or {}).get("unit") or UNITS.get(commodity_of(e.meter_id, None), "")
            if e.kind == "deduction" and e.quantity is not None:
                commodity = commodity_of(e.meter_id, e.tariff_id)
                item["quantity"] = plain(e.quantity)
                item["unit"] = UNITS.get(commodity, "")
                for ln in (e.detail or {}).get("lines", []):
                    if ln.get("kind", "energy") != "energy":
                        continue
                    k = (commodity, ln.get("period") or "total")
                    use[k] = use.get(k, ZERO) + Decimal(ln["quantity"])
            entries.append(item)
    closing = running  # the opening (every entry before ``start``) and every entry up to ``end``
    consumption = [{"commodity": c, "period": p, "quantity": plain(q), "unit": UNITS.get(c, "")} for (c, p), q in sorted(use.items())]
    return Statement(account_id, room_id, start, end, opening, entries, closing, consumption, by_kind)


# -- bill lines -------------------------------------------------------------------------------
def _apportion(total: int, weights: Sequence[Decimal]) -> list[int]:
    """Split the integer ``total`` in proportion to ``weights`` (largest remainder; ties to the
    earlier), so the parts add up to ``total`` exactly."""
    if not weights:
        return []
    wsum = sum(weights, ZERO)
    if wsum == 0:
        return [0] * (len(weights) - 1) + [total]
    from fractions import Fraction  # noqa: PLC0415 - only here

    shares = [Fraction(total) * Fraction(w) / Fraction(wsum) for w in weights]
    parts = [int(sh // 1) for sh in shares]
    rest = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - parts[i]), i))
    for i in order[:rest]:
        parts[i] += 1
    return parts


def bill_lines(
    rows: Sequence[LedgerEntry], minor_units: int, rounding: str, commodity_of: Callable[[str | None, str | None], str],
    tax_rates: dict[str, Decimal],
) -> list[dict[str, Any]]:
    """A bill's lines from the period's entries. Each line's ``amount_minor`` is what it adds to
    what is owed (a charge positive, a payment negative): the lines add up to the opening
    balance less the closing balance exactly. Energy is shown by commodity, tariff, time-of-use
    period and tier with exact quantities and prices; the deductions' rounded total is spread
    over those lines by largest remainder."""
    lines: list[dict[str, Any]] = []
    energy: dict[tuple[str, str, str, str, int | None, str], dict[str, Any]] = {}
    energy_total = 0
    two_part: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with exact():
        for e in rows:
            owed = -e.amount_minor
            if owed == 0 and e.kind != "deduction":
                continue  # an account opened with nothing, a zero adjustment: nothing to show
            if e.kind == "deduction":
                commodity = commodity_of(e.meter_id, e.tariff_id)
                energy_total += owed
                for ln in (e.detail or {}).get("lines", []):
                    kind = ln.get("kind", "energy")
                    key = (commodity, e.tariff_id or "", kind, ln.get("period") or "", ln.get("block"), ln["price"])
                    acc = energy.setdefault(key, {"quantity": ZERO, "exact": ZERO})
                    acc["quantity"] += Decimal(ln["quantity"])
                    acc["exact"] += Decimal(ln["amount"])
            elif e.kind == "charge" and (e.detail or {}).get("rule") is not None:
                d = e.detail
                rate = Decimal(d["tax_rate"]) if d.get("tax_rate") else None
                line = {"kind": "charge", "label": d.get("name") or e.reason, "rule": d["rule"], "period": d.get("period"),
                        "quantity": d.get("quantity"), "unit": "m2" if d.get("rule_kind") == "per_area" else "",
                        "unit_price": d.get("unit_price"), "amount_minor": owed, "entry": e.id}
                if d.get("days"):
                    line["days"] = d["days"]
                if rate is not None:
                    line["tax_rate"] = plain(rate)
                    line["tax_minor"] = tax_part(owed, rate, minor_units, rounding)
                lines.append(line)
            elif e.kind == "apportionment":
                # a room's share of a common meter (or of a loss): its rule, period, quantity and key
                d = e.detail or {}
                line = {"kind": "apportionment", "label": d.get("rule_name") or e.reason, "rule": d.get("rule"),
                        "period": d.get("period"), "source": d.get("source"), "method": d.get("method"),
                        "quantity": plain(e.quantity) if e.quantity is not None else None,
                        "unit": d.get("unit") or UNITS.get(commodity_of(e.meter_id, None), ""),
                        "unit_price": d.get("price"), "amount_minor": owed, "entry": e.id}
                lines.append(line)
            elif e.kind == "charge":
                d = e.detail or {}
                basis = d.get("basis", "charge")
                value = plain(Decimal(d["value"])) if d.get("value") else None  # NUMERIC(12,3) on PostgreSQL: 50.000
                key2 = (basis, e.tariff_id or "", value or "", d.get("price", ""))
                acc2 = two_part.setdefault(key2, {"kind": basis, "label": basis, "tariff": e.tariff_id, "quantity": value,
                                                  "unit": d.get("unit", ""), "unit_price": d.get("price"), "amount_minor": 0})
                acc2["amount_minor"] += owed
            else:
                line = {"kind": e.kind, "label": e.reason or e.kind, "amount_minor": owed, "entry": e.id}
                for k in ("channel", "reference"):
                    if getattr(e, k) is not None:
                        line[k] = getattr(e, k)
                lines.append(line)
    energy_lines: list[dict[str, Any]] = []
    keys = list(energy)
    for key, part in zip(keys, _apportion(energy_total, [energy[k]["exact"] for k in keys]), strict=True):
        commodity, tariff, kind, period, block, price = key
        acc = energy[key]
        line = {"kind": "energy" if kind == "energy" else "tier", "label": commodity, "commodity": commodity, "tariff": tariff,
                "period": period or None, "quantity": plain(acc["quantity"]), "unit": UNITS.get(commodity, ""),
                "unit_price": price, "exact_amount": plain(acc["exact"]), "amount_minor": part}
        if block is not None:
            line["block"] = block
        rate = tax_rates.get(commodity)
        if rate:
            line["tax_rate"] = plain(rate)
            line["tax_minor"] = tax_part(part, rate, minor_units, rounding)
        energy_lines.append(line)
    if energy_total and not energy_lines:  # deductions without lines (cannot happen today): one line
        energy_lines.append({"kind": "energy", "label": "energy", "amount_minor": energy_total})
    return energy_lines + list(two_part.values()) + lines
