"""Golden tests: one worked example per tariff type, computed by hand in each docstring.

The expected figures are written out literally; the code under test never computes them.
Times are local (Asia/Shanghai, UTC+8, no daylight saving).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from scada.prepaid.money import Rounding
from scada.prepaid.pricing import (
    TariffTimeline,
    TariffVersion,
    allocate,
    price_consumption,
    prorata_minor,
)
from scada.prepaid.tariff_definition import TariffDefinition

TZ = ZoneInfo("Asia/Shanghai")
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def timeline(*defs: tuple[dt.datetime, dict[str, Any]]) -> TariffTimeline:
    return TariffTimeline(
        [TariffVersion("T", i + 1, start, TariffDefinition.model_validate(d)) for i, (start, d) in enumerate(defs)]
    )


def lines(quote: Any) -> list[tuple[str, str | None, int | None, D, D, D]]:
    return [(ln.kind, ln.period, ln.block, ln.quantity, ln.unit_price, ln.amount) for ln in quote.lines]


CNY = Rounding(2, "half_up")

TOU = {
    "periods": [
        {"name": "sharp", "price": "1.2"},
        {"name": "peak", "price": "1.0"},
        {"name": "flat", "price": "0.6"},
        {"name": "valley", "price": "0.3"},
    ],
    "seasons": [
        {
            "name": "summer", "start": "07-01", "end": "08-31",
            "workday": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["11:00", "sharp"],
                        ["12:00", "peak"], ["15:00", "flat"], ["22:00", "valley"]],
        },
        {
            "name": "rest", "start": "09-01", "end": "06-30",
            "workday": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["15:00", "flat"], ["22:00", "valley"]],
            "weekend": [["00:00", "valley"], ["08:00", "flat"], ["22:00", "valley"]],
            "holiday": [["00:00", "valley"]],
        },
    ],
    "holidays": ["2026-10-01"],
    "workdays": ["2026-10-10"],
}


def test_flat() -> None:
    """Flat 0.5683 CNY/kWh, 12.34 kWh.

    12.34 × 0.5683 = 7.012822 (exact); rounded half-up to fen: 7.01 (701 fen),
    remainder carried: 7.012822 − 7.01 = 0.002822.
    """
    tl = timeline((EPOCH, {"price": "0.5683"}))
    q = price_consumption(tl, TZ, at(2026, 3, 2, 9), at(2026, 3, 2, 10), D("12.34"))
    assert lines(q) == [("energy", None, None, D("12.34"), D("0.5683"), D("7.012822"))]
    assert q.total == D("7.012822")
    assert CNY.carry(D(0), q.total) == (701, D("0.002822"))


def test_tou_split_by_time_across_a_period_boundary() -> None:
    """TOU without registers, Monday 2026-03-02 (season "rest", workday), 07:00–09:00, 3 kWh.

    valley until 08:00, flat from 08:00: one hour each → 1.5 kWh each (constant power).
    1.5 × 0.3 = 0.45; 1.5 × 0.6 = 0.90; total 1.35.
    """
    tl = timeline((EPOCH, {"tou": TOU}))
    q = price_consumption(tl, TZ, at(2026, 3, 2, 7), at(2026, 3, 2, 9), D("3"))
    assert lines(q) == [
        ("energy", "valley", None, D("1.5"), D("0.3"), D("0.45")),
        ("energy", "flat", None, D("1.5"), D("0.6"), D("0.90")),
    ]
    assert q.total == D("1.35") and not q.by_registers


def test_tou_day_types_seasons_and_holidays() -> None:
    """Four readings of 1 kWh each, 10:30–11:30, on four days.

    - Wed 2026-07-15 (summer workday): 10:30–11:00 peak, 11:00–11:30 sharp → 0.5 × 1.0 + 0.5 × 1.2 = 1.10
    - Wed 2026-03-04 (rest, workday): all peak → 1.00
    - Sat 2026-03-07 (rest, weekend): all flat → 0.60
    - Thu 2026-10-01 (holiday): all valley → 0.30
    - Sat 2026-10-10 (a make-up workday): peak → 1.00
    """
    tl = timeline((EPOCH, {"tou": TOU}))

    def one(y: int, m: int, d: int) -> D:
        return price_consumption(tl, TZ, at(y, m, d, 10, 30), at(y, m, d, 11, 30), D("1")).total

    assert one(2026, 7, 15) == D("1.10")
    assert one(2026, 3, 4) == D("1.0")
    assert one(2026, 3, 7) == D("0.6")
    assert one(2026, 10, 1) == D("0.3")
    assert one(2026, 10, 10) == D("1.0")


def test_tou_over_a_long_gap() -> None:
    """A reading after a 24 h gap: Monday 2026-03-02 00:00 → Tuesday 00:00, 24 kWh (1 kWh/h).

    valley 00–08 (8 h) + flat 08–10 (2) + peak 10–15 (5) + flat 15–22 (7) + valley 22–24 (2):
    valley 10 × 0.3 = 3.0; flat 9 × 0.6 = 5.4; peak 5 × 1.0 = 5.0; total 13.4.
    """
    tl = timeline((EPOCH, {"tou": TOU}))
    q = price_consumption(tl, TZ, at(2026, 3, 2), at(2026, 3, 3), D("24"))
    by_period: dict[str | None, D] = {}
    for ln in q.lines:
        by_period[ln.period] = by_period.get(ln.period, D(0)) + ln.quantity
    assert by_period == {"valley": D(10), "flat": D(9), "peak": D(5)}
    assert q.total == D("13.4")


def test_tou_from_registers() -> None:
    """TOU with per-period registers: peak +2.50, valley +1.50, total +4.00 kWh.

    The registers say where the energy went, whatever the interval: 2.5 × 1.0 + 1.5 × 0.3
    = 2.50 + 0.45 = 2.95.
    """
    tl = timeline((EPOCH, {"tou": TOU}))
    q = price_consumption(
        tl, TZ, at(2026, 3, 2, 7), at(2026, 3, 2, 9), D("4.00"),
        registers={"sharp": D("0"), "peak": D("2.50"), "flat": D("0"), "valley": D("1.50")},
    )
    assert q.by_registers
    assert sorted(lines(q)) == sorted([
        ("energy", "peak", None, D("2.50"), D("1.0"), D("2.500")),
        ("energy", "valley", None, D("1.50"), D("0.3"), D("0.450")),
    ])
    assert q.total == D("2.95")


def test_tou_registers_unknown_to_the_tariff_fall_back_to_time() -> None:
    """Registers name a period the tariff lacks (tariff has only day/night): split by time.

    Tariff: night 0.2 from 00:00, day 0.8 from 08:00. 07:00–09:00, 2 kWh → 1 × 0.2 + 1 × 0.8 = 1.0.
    """
    tl = timeline((EPOCH, {"tou": {"periods": [{"name": "night", "price": "0.2"}, {"name": "day", "price": "0.8"}],
                                   "seasons": [{"workday": [["00:00", "night"], ["08:00", "day"]]}]}}))
    q = price_consumption(tl, TZ, at(2026, 3, 2, 7), at(2026, 3, 2, 9), D("2"), registers={"peak": D("2"), "valley": D("0")})
    assert not q.by_registers and q.total == D("1.0")


def test_tou_eight_periods_at_most() -> None:
    """Up to 8 periods are allowed; a ninth is refused with a message naming the field."""
    periods = [{"name": f"p{i}", "price": "0.1"} for i in range(8)]
    schedule = [[f"{i * 3:02d}:00", f"p{i}"] for i in range(8)]
    tl = timeline((EPOCH, {"tou": {"periods": periods, "seasons": [{"workday": schedule}]}}))
    # 8 periods of 3 h; 24 kWh over a day: 3 kWh each at 0.1 → 2.4
    assert price_consumption(tl, TZ, at(2026, 3, 2), at(2026, 3, 3), D("24")).total == D("2.4")
    with pytest.raises(ValidationError, match="at most 8"):
        TariffDefinition.model_validate({"tou": {"periods": periods + [{"name": "p8", "price": "1"}], "seasons": [{"workday": schedule}]}})


def test_tiered_monthly_alone() -> None:
    """Flat 0.56 with monthly blocks: 0–200 +0, 200–400 +0.05, above 400 +0.30.

    190 kWh already billed this month; a reading of 220 kWh:
    energy 220 × 0.56 = 123.20; block 2 gets 200 kWh (200..400) × 0.05 = 10.00;
    block 3 gets 10 kWh (400..410) × 0.30 = 3.00; block 1 (10 kWh) adds nothing.
    Total 136.20; the month's usage becomes 410.
    """
    tl = timeline((EPOCH, {"price": "0.56", "tiers": {"cycle": "monthly", "blocks": [
        {"up_to": "200"}, {"up_to": "400", "adder": "0.05"}, {"adder": "0.30"}]}}))
    q = price_consumption(tl, TZ, at(2026, 3, 20, 10), at(2026, 3, 20, 11), D("220"), cycle_usage={"monthly:2026-03": D("190")})
    assert lines(q) == [
        ("energy", None, None, D("220"), D("0.56"), D("123.20")),
        ("tier", None, 2, D("200"), D("0.05"), D("10.00")),
        ("tier", None, 3, D("10"), D("0.30"), D("3.00")),
    ]
    assert q.total == D("136.20")
    assert q.usage_added == {"monthly:2026-03": D("220")}


def test_tiered_reading_across_the_cycle_start() -> None:
    """A reading from 2026-03-31 23:00 to 2026-04-01 01:00, 2 kWh; March usage 199.5.

    Split at local midnight: 1 kWh in March, 1 kWh in April. March: 0.5 kWh fills block 1
    (to 200), 0.5 kWh in block 2 × 0.05 = 0.025. April starts at 0: 1 kWh in block 1.
    Energy 2 × 0.56 = 1.12; total 1.145 (rounded half-up: 1.15).
    """
    tl = timeline((EPOCH, {"price": "0.56", "tiers": {"cycle": "monthly", "blocks": [
        {"up_to": "200"}, {"up_to": "400", "adder": "0.05"}, {"adder": "0.30"}]}}))
    q = price_consumption(tl, TZ, at(2026, 3, 31, 23), at(2026, 4, 1, 1), D("2"), cycle_usage={"monthly:2026-03": D("199.5")})
    assert q.total == D("1.145")
    assert q.usage_added == {"monthly:2026-03": D("1"), "monthly:2026-04": D("1")}
    assert CNY.to_minor(q.total) == 115


def test_tiered_yearly_water() -> None:
    """Water, yearly blocks at a 2:3:6 price ratio: 3.00 base; 0–180 m³ +0, 180–260 +1.50, above +6.00.

    Year-to-date 175 m³, a reading of 10 m³: 5 m³ at 3.00 and 5 m³ at 4.50 →
    energy 10 × 3.00 = 30.00, adder 5 × 1.50 = 7.50 → 37.50.
    """
    tl = timeline((EPOCH, {"price": "3.00", "tiers": {"cycle": "yearly", "blocks": [
        {"up_to": "180"}, {"up_to": "260", "adder": "1.50"}, {"adder": "6.00"}]}}))
    q = price_consumption(tl, TZ, at(2026, 6, 1, 8), at(2026, 6, 1, 9), D("10"), cycle_usage={"yearly:2026": D("175")})
    assert q.total == D("37.50")
    assert q.usage_added == {"yearly:2026": D("10")}


def test_tiered_with_tou() -> None:
    """TOU first, then the tier: Monday 2026-03-02 07:00–09:00, 3 kWh, month usage 399.

    TOU (as in the split test): valley 1.5 × 0.3 = 0.45, flat 1.5 × 0.6 = 0.90 → 1.35.
    Tiers: 1 kWh left in block 2 (+0.05) → 0.05; 2 kWh in block 3 (+0.30) → 0.60.
    Total 1.35 + 0.05 + 0.60 = 2.00.
    """
    tl = timeline((EPOCH, {"tou": TOU, "tiers": {"cycle": "monthly", "blocks": [
        {"up_to": "200"}, {"up_to": "400", "adder": "0.05"}, {"adder": "0.30"}]}}))
    q = price_consumption(tl, TZ, at(2026, 3, 2, 7), at(2026, 3, 2, 9), D("3"), cycle_usage={"monthly:2026-03": D("399")})
    assert q.total == D("2.00")
    assert [(ln.block, ln.quantity, ln.amount) for ln in q.lines if ln.kind == "tier"] == [(2, D("1"), D("0.05")), (3, D("2"), D("0.60"))]


def test_two_part_capacity_daily_pro_rata() -> None:
    """Capacity 315 kVA × 28.00 CNY/kVA/month = 8,820.00 per month, charged daily.

    A 30-day month: 8820 / 30 = 294.00 every day. A 31-day month: 8820/31 = 284.516129…;
    day 1 round(284.516) = 284.52; day 2 round(569.032) − 284.52 = 569.03 − 284.52 = 284.51;
    day 3 round(853.548) − 569.03 = 853.55 − 569.03 = 284.52; the 31 days add up to 8,820.00
    exactly (the last day: 8820.00 − round(8535.484) = 8820.00 − 8535.48 = 284.52).
    """
    monthly = D("28.00") * 315
    assert [prorata_minor(monthly, d, 30, 2, "half_up") for d in (1, 2, 30)] == [29400] * 3
    days31 = [prorata_minor(monthly, d, 31, 2, "half_up") for d in range(1, 32)]
    assert days31[:3] == [28452, 28451, 28452] and days31[-1] == 28452
    assert sum(days31) == 882000


def test_two_part_definition_and_energy() -> None:
    """Two-part: demand 40 kW × 38.00/kW/month charged monthly = 1,520.00, plus flat energy 0.65.

    The energy of a reading is priced as usual: 100 kWh × 0.65 = 65.00. The demand charge is
    a separate monthly charge (1,520.00) — not part of the reading's price.
    """
    defn = TariffDefinition.model_validate({"price": "0.65", "two_part": {"basis": "demand", "price": "38.00", "charging": "monthly"}})
    assert defn.kind == "flat+two_part"
    tl = timeline((EPOCH, {"price": "0.65", "two_part": {"basis": "demand", "price": "38.00", "charging": "monthly"}}))
    assert price_consumption(tl, TZ, at(2026, 3, 2, 7), at(2026, 3, 2, 9), D("100")).total == D("65.00")
    assert prorata_minor(defn.two_part.price * 40, 1, 1, 2, "half_up") == 152000  # type: ignore[union-attr]


def test_price_change_takes_effect_at_its_effective_time() -> None:
    """Version 1: 0.50 flat; version 2 from 2026-03-02 12:00: 0.60.

    A reading 11:00–13:00 of 4 kWh straddles the change: 2 kWh × 0.50 + 2 kWh × 0.60 = 2.20.
    A reading 13:00–14:00 of 1 kWh is all new price: 0.60.
    """
    tl = timeline((EPOCH, {"price": "0.50"}), (at(2026, 3, 2, 12), {"price": "0.60"}))
    q = price_consumption(tl, TZ, at(2026, 3, 2, 11), at(2026, 3, 2, 13), D("4"))
    assert [(ln.version, ln.quantity, ln.amount) for ln in q.lines] == [(1, D("2"), D("1.00")), (2, D("2"), D("1.20"))]
    assert q.total == D("2.20")
    assert price_consumption(tl, TZ, at(2026, 3, 2, 13), at(2026, 3, 2, 14), D("1")).total == D("0.60")


def test_allocation_is_exact() -> None:
    """1 kWh over three equal pieces: 0.333334 + 0.333333 + 0.333333 = 1 (ties go first)."""
    assert allocate(D("1"), [1, 1, 1]) == [D("0.333334"), D("0.333333"), D("0.333333")]
    assert allocate(D("0.01"), [0, 0]) == [D(0), D("0.01")]
    assert sum(allocate(D("123.456789"), [7, 11, 13, 0, 5])) == D("123.456789")


def test_rounding_carries_the_remainder() -> None:
    """Three deductions of 0.004 each: rounded alone each would be 0.00 and never paid.

    Carried: 0.004 → 0.00 (remainder 0.004); 0.004 + 0.004 = 0.008 → 0.01 (remainder −0.002);
    −0.002 + 0.004 = 0.002 → 0.00 (remainder 0.002). The deductions add up to 0.01 =
    round(0.012), the three readings' exact cost rounded once.
    """
    r = Rounding(2, "half_up")
    a1, rem = r.carry(D(0), D("0.004"))
    a2, rem = r.carry(rem, D("0.004"))
    a3, rem = r.carry(rem, D("0.004"))
    # running exact totals 0.004, 0.008, 0.012 → rounded 0.00, 0.01, 0.01 → steps 0, 1, 0
    assert (a1, a2, a3) == (0, 1, 0) and rem == D("0.002")
    assert Rounding(2, "half_even").to_minor(D("0.125")) == 12
    assert Rounding(2, "down").to_minor(D("0.129")) == 12
