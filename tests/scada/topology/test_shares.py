"""The largest-remainder split (pure): golden cases and properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scada.prepaid.money import Rounding
from scada.topology.apportion import days_open
from scada.topology.shares import Party, largest_remainder, split

from .conftest import TZ

ROUND = Rounding(2, "half_up")


def test_the_last_fen_goes_to_the_largest_remainder_then_the_first_room() -> None:
    """1.00 among three equal rooms: 33⅓ fen each; 33 + 33 + 33 = 99, the last fen goes to the
    first room (equal remainders: room order decides)."""
    assert largest_remainder(100, [Fraction(1)] * 3) == [34, 33, 33]
    # 10 fen by 1 : 2 : 3 = 1.666…, 3.333…, 5 → 1 + 3 + 5 = 9; the largest remainder (⅔) wins
    assert largest_remainder(10, [Fraction(1), Fraction(2), Fraction(3)]) == [2, 3, 5]
    assert largest_remainder(0, [Fraction(0), Fraction(0)]) == [0, 0]
    with pytest.raises(ValueError, match="every weight is zero"):
        largest_remainder(5, [Fraction(0)])
    with pytest.raises(ValueError, match="negative"):
        largest_remainder(-1, [Fraction(1)])


def test_split_quantity_then_money() -> None:
    """100.00 kWh at 0.85 by area 30 : 20 : 10 m².

    Quantity in 0.01 kWh steps: 10000 × 30/60 = 5000, × 20/60 = 3333⅓, × 10/60 = 1666⅔ →
    5000, 3333, 1666 (9999) + 1 to the largest remainder (⅔, the third): 50.00, 33.33, 16.67.
    Costs: 42.50, 28.3305, 14.1695 = 85.00 exactly → 8500 fen; floors 4250, 2833, 1416 (8499),
    the last fen to the largest remainder (.95, the third): 42.50, 28.33, 14.17.
    """
    parties = [Party("A", 1, Fraction(30)), Party("B", 2, Fraction(20)), Party("C", 3, Fraction(10))]
    result = split(Decimal("100.00"), Decimal("0.01"), parties, lambda _p, q: q * Decimal("0.85"), ROUND)
    assert [s.quantity for s in result.shares] == [Decimal("50.00"), Decimal("33.33"), Decimal("16.67")]
    assert [s.cost for s in result.shares] == [Decimal("42.5000"), Decimal("28.3305"), Decimal("14.1695")]
    assert [s.amount_minor for s in result.shares] == [4250, 2833, 1417]
    assert (result.quantity, result.cost, result.total_minor) == (Decimal("100.00"), Decimal("85.0000"), 8500)


def test_days_open_counts_the_opening_day_not_the_closing_day() -> None:
    import datetime as dt

    start, end = dt.datetime(2026, 11, 1, tzinfo=TZ), dt.datetime(2026, 12, 1, tzinfo=TZ)
    before = dt.datetime(2026, 10, 3, 9, tzinfo=TZ)
    assert days_open(before, None, start, end, TZ) == (30, 30)
    assert days_open(before, dt.datetime(2026, 11, 16, 10, tzinfo=TZ), start, end, TZ) == (15, 30)  # 1st..15th
    assert days_open(dt.datetime(2026, 11, 16, 14, tzinfo=TZ), None, start, end, TZ) == (15, 30)  # 16th..30th
    assert days_open(before, dt.datetime(2026, 10, 30, tzinfo=TZ), start, end, TZ) == (0, 30)
    assert days_open(dt.datetime(2026, 11, 5, 8, tzinfo=TZ), dt.datetime(2026, 11, 5, 18, tzinfo=TZ), start, end, TZ) == (0, 30)


weights = st.lists(st.fractions(min_value=0, max_value=10_000, max_denominator=1000), min_size=1, max_size=40).filter(
    lambda ws: any(w > 0 for w in ws)
)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**9), ws=weights)
def test_parts_add_up_and_are_never_negative(total: int, ws: list[Fraction]) -> None:
    parts = largest_remainder(total, ws)
    assert sum(parts) == total
    assert all(p >= 0 for p in parts)
    whole = sum(ws)
    # each part is within one unit of its exact share
    assert all(abs(p - total * w / whole) < 1 for p, w in zip(parts, ws, strict=True))


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(0, 10**8),
    ws=weights,
    prices=st.lists(st.decimals(min_value=0, max_value=10, places=4), min_size=40, max_size=40),
    mode=st.sampled_from(["half_up", "half_even", "up", "down"]),
)
def test_shares_add_up_to_the_quantity_and_the_priced_total(units: int, ws: list[Fraction], prices: list[Decimal], mode: str) -> None:
    rounding = Rounding(2, mode)  # type: ignore[arg-type]
    parties = [Party(f"R{i:02d}", i, w) for i, w in enumerate(ws)]
    quantity = Decimal(units).scaleb(-2)
    result = split(quantity, Decimal("0.01"), parties, lambda p, q: q * prices[p.account_id], rounding)
    assert sum(s.quantity for s in result.shares) == result.quantity == quantity
    assert sum(s.amount_minor for s in result.shares) == result.total_minor == rounding.to_minor(result.cost)
    assert all(s.quantity >= 0 and s.amount_minor >= 0 for s in result.shares)
