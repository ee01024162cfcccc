"""The direct pricing of the common case (per-period registers, one time-of-use version, no
tiers) gives exactly the quote of the general path, and steps aside whenever the case does not
apply (a price change inside the interval, tiers, a period the version does not know)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scada.prepaid import pricing
from scada.prepaid.pricing import PricingError, TariffTimeline, TariffVersion, price_consumption
from scada.prepaid.tariff_definition import TariffDefinition

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

TOU = {
    "periods": [{"name": "sharp", "price": "1.2"}, {"name": "peak", "price": "1.0"},
                {"name": "flat", "price": "0.6"}, {"name": "valley", "price": "0.3137"}],
    "seasons": [{"name": "all", "workday": [["00:00", "valley"], ["08:00", "peak"], ["11:00", "flat"], ["19:00", "sharp"]]}],
}
V1 = TariffVersion("T", 1, T0, TariffDefinition.model_validate({"tou": TOU}))
V2 = TariffVersion("T", 2, T0 + dt.timedelta(days=10), TariffDefinition.model_validate({"tou": {**TOU, "periods": [
    {"name": "sharp", "price": "1.3"}, {"name": "peak", "price": "1.1"}, {"name": "flat", "price": "0.7"}, {"name": "valley", "price": "0.4"}]}}))
TIERED = TariffVersion("T", 1, T0, TariffDefinition.model_validate(
    {"tou": TOU, "tiers": {"cycle": "monthly", "blocks": [{"up_to": "100", "adder": "0"}, {"adder": "0.05"}]}}))

quantities = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False, allow_infinity=False)


def general(timeline: TariffTimeline, start: dt.datetime, end: dt.datetime, regs: dict[str, D]) -> pricing.Quote:
    return pricing._price_general(timeline, TZ, start, end, sum(regs.values(), D(0)), regs, None)


@settings(max_examples=300, deadline=None)
@given(
    start_min=st.integers(0, 60 * 24 * 20),
    minutes=st.integers(0, 60 * 24 * 3),
    regs=st.dictionaries(st.sampled_from(["sharp", "peak", "flat", "valley", "shoulder"]), quantities, min_size=1, max_size=5),
    versions=st.sampled_from(["one", "two", "tiered"]),
)
def test_the_direct_path_equals_the_general_path(start_min: int, minutes: int, regs: dict[str, D], versions: str) -> None:
    timeline = TariffTimeline({"one": [V1], "two": [V1, V2], "tiered": [TIERED]}[versions])
    start = T0 + dt.timedelta(minutes=start_min)
    end = start + dt.timedelta(minutes=minutes)
    quantity = sum(regs.values(), D(0))
    fast = price_consumption(timeline, TZ, start, end, quantity, registers=regs)
    slow = general(timeline, start, end, regs)
    assert fast == slow
    # the same digits, not just equal values (the detail and the ledger store them as text)
    assert [(str(ln.quantity), str(ln.amount)) for ln in fast.lines] == [(str(ln.quantity), str(ln.amount)) for ln in slow.lines]
    assert str(fast.total) == str(slow.total)


def test_the_direct_path_is_taken_for_the_common_case() -> None:
    regs = {"sharp": D("0.01"), "peak": D("0.02"), "flat": D("0"), "valley": D("0.02")}
    direct = pricing._by_registers_one_version(TariffTimeline([V1]), T0, T0 + dt.timedelta(minutes=1), D("0.05"), regs)
    assert direct is not None and direct.by_registers
    assert [(ln.period, ln.amount) for ln in direct.lines] == [("sharp", D("0.012")), ("peak", D("0.020")), ("valley", D("0.006274"))]
    assert direct.total == D("0.038274")
    # a price change inside the interval, tiers, or a period the version does not know: the general path
    assert pricing._by_registers_one_version(TariffTimeline([V1, V2]), T0, T0 + dt.timedelta(days=11), D("0.05"), regs) is None
    assert pricing._by_registers_one_version(TariffTimeline([TIERED]), T0, T0 + dt.timedelta(minutes=1), D("0.05"), regs) is None
    assert pricing._by_registers_one_version(TariffTimeline([V1]), T0, T0 + dt.timedelta(minutes=1), D("1"), {"shoulder": D("1")}) is None


def test_the_direct_path_refuses_what_the_general_path_refuses() -> None:
    timeline = TariffTimeline([V1])
    end = T0 + dt.timedelta(hours=1)
    with pytest.raises(PricingError, match="add up"):
        price_consumption(timeline, TZ, T0, end, D("1"), registers={"peak": D("0.5")})
    with pytest.raises(PricingError, match="negative"):
        price_consumption(timeline, TZ, T0, end, D("0"), registers={"peak": D("1"), "flat": D("-1")})
