"""Two-part tariffs: capacity/demand charges posted daily pro rata or monthly, exactly once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from scada.prepaid.tariff_definition import TariffDefinition

from ...harness import write_lock_held
from .conftest import CASHIER, Site

TZ8 = dt.timezone(dt.timedelta(hours=8))


async def charges(site: Site, room: str = "R1") -> list[tuple[str, int]]:
    _, entries = await site.engine.ledger(room, limit=1000)
    return [(e.reason, -e.amount_minor) for e in reversed(entries) if e.kind == "charge"]


async def test_daily_pro_rata_capacity_charge(site: Site) -> None:
    """315 kVA × 28.00 = 8,820.00 a month; in a 31-day month day d is charged
    round(8820·d/31) − round(8820·(d−1)/31): 284.52, 284.51, 284.52 … adding up to 8,820.00."""
    defn = TariffDefinition.model_validate({"price": "0.65", "two_part": {"basis": "capacity", "price": "28.00", "charging": "daily"}})
    await site.engine.tariffs.create("TWO", "two-part", "electricity", defn, CASHIER)
    view = await site.open("R1", opening=2_000_000, tariff="TWO", capacity_kva=Decimal("315"))
    opened = view.opened_at.astimezone(TZ8).date()
    # the engine looks at its clock: first the day after opening (the opening day is charged)
    day1 = dt.datetime.combine(opened + dt.timedelta(days=1), dt.time(0, 5), TZ8)
    assert await site.engine.run_periodic_charges(day1) == 1
    assert await site.engine.run_periodic_charges(day1) == 0  # exactly once
    later = day1 + dt.timedelta(days=3)
    assert await site.engine.run_periodic_charges(later) == 3  # missed days are caught up
    got = await charges(site)
    assert [r for r, _ in got] == [f"capacity charge {(opened + dt.timedelta(days=i)).isoformat()}" for i in range(4)]
    for (_reason, amount), i in zip(got, range(4), strict=False):
        day = opened + dt.timedelta(days=i)
        dim = ((day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)).day
        # 8820/30 = 294.00 exactly; 8820/31 = 284.516…: 284.51 or 284.52; 8820/28 = 315.00; 8820/29 = 304.137…
        assert amount in {30: {29400}, 31: {28451, 28452}, 28: {31500}, 29: {30414, 30413}}[dim], (day, amount)
    # a whole month adds up to the monthly charge
    first = opened.replace(day=1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    end_of_next = (nxt + dt.timedelta(days=32)).replace(day=1)
    await site.engine.run_periodic_charges(dt.datetime.combine(end_of_next, dt.time(0, 5), TZ8))
    month = [a for r, a in await charges(site) if r.startswith(f"capacity charge {nxt:%Y-%m}")]
    assert sum(month) == 882_000 and len(month) == ((end_of_next - nxt).days)


async def test_monthly_demand_charge(site: Site) -> None:
    """Demand 40 kW × 38.00 = 1,520.00, charged on the 1st of each month after opening."""
    defn = TariffDefinition.model_validate({"price": "0.65", "two_part": {"basis": "demand", "price": "38.00", "charging": "monthly"}})
    await site.engine.tariffs.create("TWOM", "two-part monthly", "electricity", defn, CASHIER)
    view = await site.open("R1", opening=1_000_000, tariff="TWOM", demand_kw=Decimal("40"))
    opened = view.opened_at.astimezone(TZ8).date()
    first_next = (opened.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    assert await site.engine.run_periodic_charges(dt.datetime.combine(first_next - dt.timedelta(days=1), dt.time(12), TZ8)) == 0
    assert await site.engine.run_periodic_charges(dt.datetime.combine(first_next, dt.time(0, 1), TZ8)) == 1
    assert await site.engine.run_periodic_charges(dt.datetime.combine(first_next, dt.time(23), TZ8)) == 0
    assert await charges(site) == [(f"demand charge {first_next:%Y-%m}", 152_000)]
    account = await site.engine.account("R1")
    assert account is not None and account.balance_minor == 1_000_000 - 152_000


async def test_no_charge_without_capacity_or_on_other_tariffs(site: Site) -> None:
    defn = TariffDefinition.model_validate({"price": "0.65", "two_part": {"basis": "capacity", "price": "28.00"}})
    await site.engine.tariffs.create("TWO", "two-part", "electricity", defn, CASHIER)
    await site.flat_tariff()
    await site.open("R1", tariff="TWO")  # no capacity_kva on the account
    await site.open("R3", tariff="FLAT", capacity_kva=Decimal("10"))
    later = dt.datetime.now(TZ8) + dt.timedelta(days=5)
    assert await site.engine.run_periodic_charges(later) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_two_part_tariffs_the_tick_takes_no_write_lock(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tick looks for two-part charges; on a site without two-part tariffs it writes nothing
    and must not hold SQLite's write lock while it walks the accounts."""
    await site.flat_tariff()
    await site.open("R1")
    with write_lock_held(site.db.url.database or "", monkeypatch):  # a tick that took the lock fails soon
        assert await site.engine.run_periodic_charges(dt.datetime(2026, 3, 1, 0, 5, tzinfo=TZ8)) == 0
    assert await charges(site) == []
