"""Splitting an apportioned quantity and its price among parties, exactly.

The largest-remainder (Hamilton) method: each party gets the whole units of its exact share
rounded down, and the units left over go one by one to the largest remainders, ties to the
party that comes first in a stable order (room id, then account). The parts therefore add up
to the total exactly and none is negative.

:func:`split` applies it twice: the quantity (in the source meter's register steps, so each
share has the meters' resolution) by the key's weights, then the money: each share's exact cost
(its quantity at its price) is summed and rounded once to the priced total, which is split by
those costs to the minor unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from scada.prepaid.money import Rounding

__all__ = ["Party", "Share", "Split", "largest_remainder", "split"]


def largest_remainder(total: int, weights: Sequence[Fraction]) -> list[int]:
    """``total`` (≥ 0 whole units) split in proportion to ``weights`` (≥ 0, not all zero), in the
    order given: ties of the remainder go to the earlier weight."""
    if total < 0:
        raise ValueError(f"a negative total ({total}) is not split")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    whole = sum(weights, Fraction(0))
    if whole == 0:
        if total == 0:
            return [0] * len(weights)
        raise ValueError("nothing to weigh the total by: every weight is zero")
    exact = [total * w / whole for w in weights]
    floors = [e.numerator // e.denominator for e in exact]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


@dataclass(frozen=True)
class Party:
    """Who shares: a room's account, with its weight (the key times its share of the period)."""

    room_id: str
    account_id: int
    weight: Fraction
    key: dict[str, Any] = field(default_factory=dict)  # what the weight is made of, for display
    days_open: int = 0


@dataclass(frozen=True)
class Share:
    party: Party
    quantity: Decimal
    cost: Decimal  # exact, before rounding
    amount_minor: int


@dataclass(frozen=True)
class Split:
    quantity: Decimal  # the source's quantity in whole register steps
    cost: Decimal  # the exact cost of the whole quantity
    total_minor: int  # rounded once
    shares: tuple[Share, ...]


def split(
    quantity: Decimal,
    step: Decimal,
    parties: Sequence[Party],
    price: Callable[[Party, Decimal], Decimal],
    rounding: Rounding,
) -> Split:
    """Split ``quantity`` (≥ 0) among ``parties`` (sorted by room and account) by their weights
    in whole ``step``\\ s, price each share with ``price(party, quantity)`` and split the rounded
    total by the exact costs."""
    if quantity < 0:
        raise ValueError(f"a negative quantity ({quantity}) is not apportioned")
    ordered = sorted(parties, key=lambda p: (p.room_id, p.account_id))
    units = int((quantity / step).to_integral_value(rounding=ROUND_HALF_EVEN))
    steps = largest_remainder(units, [p.weight for p in ordered])
    quantities = [step * n for n in steps]
    costs = [price(p, q) for p, q in zip(ordered, quantities, strict=True)]
    cost = sum(costs, Decimal(0))
    total = rounding.to_minor(cost)
    amounts = largest_remainder(total, [Fraction(c) for c in costs]) if cost > 0 else [0] * len(ordered)
    shares = tuple(Share(p, q, c, a) for p, q, c, a in zip(ordered, quantities, costs, amounts, strict=True))
    return Split(step * units, cost, total, shares)
