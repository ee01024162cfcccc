"""Balance alarm levels: 0 none, 1 low, 2 very low, 3 exhausted (pure functions).

Each account has up to three thresholds, each in money (the level is reached when the balance
is at or below it) or in estimated days of credit left (balance ÷ average daily cost at or
below it). A level is raised as soon as a deduction reaches it — once per crossing, because
the level is remembered with the account — and lowered only by a credit (a recharge, a
reversal in the tenant's favour): a level never clears by itself while the balance sits
still, and a days-based level does not flicker as the daily estimate moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scada.core.inputs import InputError, parse_decimal, quote
from scada.prepaid.money import MoneyError, parse_money

__all__ = ["LEVEL_NAMES", "Threshold", "level_for", "next_level", "parse_thresholds", "thresholds_json"]

LEVEL_NAMES = {0: "none", 1: "low", 2: "very_low", 3: "exhausted"}


@dataclass(frozen=True, slots=True)
class Threshold:
    level: int  # 1..3
    money_minor: int | None = None
    days: Decimal | None = None

    def __post_init__(self) -> None:
        if self.level not in (1, 2, 3):
            raise ValueError(f"level must be 1, 2 or 3, found {self.level}")
        if (self.money_minor is None) == (self.days is None):
            raise ValueError("a threshold is either money or days")


def level_for(balance_minor: int, thresholds: Iterable[Threshold], daily_cost_minor: Decimal | None) -> int:
    """The level the balance is at now (the highest threshold reached)."""
    level = 0
    for t in thresholds:
        if t.money_minor is not None:
            reached = balance_minor <= t.money_minor
        else:
            assert t.days is not None
            # with no consumption history the days estimate is unknown: not reached
            reached = daily_cost_minor is not None and daily_cost_minor > 0 and balance_minor <= t.days * daily_cost_minor
        if reached:
            level = max(level, t.level)
    return level


def next_level(current: int, computed: int, *, credited: bool) -> int:
    """Raise at once; lower only on a credit."""
    if computed > current:
        return computed
    if computed < current and credited:
        return computed
    return current


def parse_thresholds(items: Sequence[Any], minor_units: int, field: str = "thresholds") -> list[Threshold]:
    """``[{"level": 1, "money": "20.00"}, {"level": 2, "days": "1.5"}, ...]`` → thresholds."""
    out: list[Threshold] = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or set(item) - {"level", "money", "days"}:
            raise MoneyError(where, 'expected {"level": 1..3, "money": "20.00"} or {"level": 1..3, "days": "3"}')
        level = item.get("level")
        if isinstance(level, bool) or level not in (1, 2, 3):
            raise MoneyError(f"{where}.level", f"expected 1, 2 or 3, found {quote(level)}")
        if ("money" in item) == ("days" in item):
            raise MoneyError(where, "give exactly one of 'money' or 'days'")
        if "money" in item:
            out.append(
                Threshold(
                    level,
                    money_minor=parse_money(
                        item["money"],
                        f"{where}.money",
                        minor_units,
                        allow_zero=True,
                        allow_negative=True,
                        maximum=Decimal(10) ** 9,
                    ),
                )
            )
        else:
            days = item["days"]
            try:
                d: Decimal | None = parse_decimal(days, max_digits=8, decimal_places=4, what="number of days")
            except InputError:
                d = None
            if d is None or d > 3650:
                raise MoneyError(f"{where}.days", f"expected a number of days 0..3650 as a string, found {quote(days)}")
            out.append(Threshold(level, days=d))
    levels = [t.level for t in out]
    if len(set(levels)) != len(levels):
        raise MoneyError(field, f"each level at most once, found levels {levels}")
    money = sorted((t.level, t.money_minor) for t in out if t.money_minor is not None)
    for (l1, m1), (l2, m2) in zip(money, money[1:], strict=False):
        assert m1 is not None and m2 is not None
        if m2 > m1:
            raise MoneyError(field, f"level {l2} must not be above level {l1} (a higher level is a lower balance)")
    return out


def thresholds_json(thresholds: Iterable[Threshold], minor_units: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in sorted(thresholds, key=lambda t: t.level):
        if t.money_minor is not None:
            out.append({"level": t.level, "money": format(Decimal(t.money_minor).scaleb(-minor_units), "f")})
        else:
            out.append({"level": t.level, "days": format(t.days, "f")})
    return out
