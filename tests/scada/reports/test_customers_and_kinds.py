"""Reports grouped by customer, the finance report's deductions by kind, and the arrears report's
aging: worked examples computed by hand (the arithmetic is in each docstring), on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from scada.billing.config import BillingConfig
from scada.billing.service import BillingService
from scada.prepaid.ledger import account_view, post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.tariff_definition import TariffDefinition
from scada.users.audit import Actor

from ..prepaid.conftest import CASHIER
from .conftest import Reports, local

MANAGER = Actor("manager1", "api", "cashier")
TOU = {"periods": [{"name": "valley", "price": "0.30"}, {"name": "peak", "price": "1.00"}, {"name": "flat", "price": "0.60"}],
       "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["18:00", "flat"]]}]}


@pytest.fixture
async def back_office(reports: Reports) -> AsyncIterator[BillingService]:
    site = reports.site
    svc = BillingService(BillingConfig.model_validate({"dunning": {"grace_days": 0}}), site.db, site.engine, site.assets)
    svc.attach()
    try:
        yield svc
    finally:
        svc.detach()


def pick(rows: list[dict], **keys: str) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    assert len(found) == 1, (keys, found)
    return found[0]


async def test_energy_by_customer(reports: Reports, back_office: BillingService) -> None:
    """Shops Ltd holds R1 and R3, Tea House R2; Tuesday 3 November 2026, tariff valley 0.30
    (00–08), peak 1.00 (08–18), flat 0.60 (18–24).
    History: E1 4 kWh valley at 07:45 and 10 kWh peak at 12:00; E3 3 kWh flat at 20:00; E2 2 kWh
    peak at 09:00. Ledger: E1 100 → 104 at 08:00 (4 valley: 1.20) → 114 at 18:00 (10 peak: 10.00);
    E2 50 → 52 at 10:00 (2 peak: 2.00); R3 is not billed on readings.
      Shops Ltd: 4 + 10 + 3 = 17 kWh (valley 4, peak 10, flat 3), 1.20 + 10.00 = 11.20
      Tea House: 2 kWh (peak 2), 2.00.    Totals 19 kWh, 13.20."""
    site = reports.site
    await site.engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": TOU}), CASHIER,
                                     effective_from=local(2026, 1, 1))
    await site.flat_tariff("W", "3.5", "water")
    for room in ("R1", "R2", "R3"):
        await site.open(room, opening=0, tariff="TOU", water="W" if room == "R2" else None)
    shops = await back_office.create_customer({"name": "Shops Ltd", "kind": "company", "rooms": ["R1", "R3"]}, MANAGER)
    tea = await back_office.create_customer({"name": "Tea House", "kind": "company", "rooms": ["R2"]}, MANAGER)
    await site.feed("E1", [(local(2026, 11, 3), "100"), (local(2026, 11, 3, 8), "104"), (local(2026, 11, 3, 18), "114")])
    await site.feed("E2", [(local(2026, 11, 3, 8), "50"), (local(2026, 11, 3, 10), "52")])
    await reports.intervals("E1", local(2026, 11, 3, 7, 45), [{"energy_total": 4, "energy_valley": 4}])
    await reports.intervals("E1", local(2026, 11, 3, 12), [{"energy_total": 10, "energy_peak": 10}])
    await reports.intervals("E3", local(2026, 11, 3, 20), [{"energy_total": 3, "energy_flat": 3}])
    await reports.intervals("E2", local(2026, 11, 3, 9), [{"energy_total": 2, "energy_peak": 2}])

    out = await reports.report("energy", **{"from": "2026-11-03", "to": "2026-11-03", "interval": "day", "group": "customer"})
    rows = out["rows"]
    assert [(r["day"], r["customer"], r["customer_name"]) for r in rows] == [
        ("2026-11-03", str(shops.id), "Shops Ltd"), ("2026-11-03", str(tea.id), "Tea House")]
    a, b = pick(rows, customer=str(shops.id)), pick(rows, customer=str(tea.id))
    assert (a["energy"], a["energy_valley"], a["energy_peak"], a["energy_flat"]) == ("17", "4", "10", "3")
    assert (a["money_valley"], a["money_peak"], a["money_flat"], a["money"]) == ("1.20", "10.00", "0.00", "11.20")
    assert (b["energy"], b["energy_peak"], b["energy_valley"], b["money_peak"], b["money"]) == ("2", "2", None, "2.00", "2.00")
    assert (out["totals"]["energy"], out["totals"]["money"]) == ("19", "13.20")
    # the money is the ledger's deductions
    deducted = [e for room in ("R1", "R2", "R3") for e in (await site.engine.ledger(room))[1] if e.kind == "deduction"]
    assert -sum(e.amount_minor for e in deducted) == 1320


async def test_finance_by_customer_with_each_kind_of_deduction(reports: Reports, back_office: BillingService) -> None:
    """Today, Shops Ltd holds R1 and R3, Tea House R2:
      R1 opened with 1,000.00 on FLAT 0.50: 80 kWh read → energy 40.00; a share of the common
         lighting of 12.34 → apportionment;
      R2 opened with 500.00, recharged 100.00 cash, a property fee of 200.00 from the balance
         (held since the 1st of the month: the whole month) → custom charges;
      R3 opened with 2,000.00 on a two-part tariff, demand 40 kW × 38.00 = 1,520.00 on the 1st
         → capacity/demand.
    Shops Ltd: openings 3,000.00, energy 40.00, capacity 1,520.00, apportionment 12.34,
      deductions 1,572.34, net 1,427.66 (0.00 → 1,427.66).
    Tea House: openings 500.00, recharges 100.00, charges 200.00, net 400.00 (0.00 → 400.00).
    Totals: deductions 40.00 + 1,520.00 + 200.00 + 12.34 = 1,772.34, net 1,827.66, closing 1,827.66
    = R1 947.66 + R2 400.00 + R3 480.00; each column is the ledger's sum of its kind."""
    site = reports.site
    engine = site.engine
    await site.flat_tariff()
    await site.flat_tariff("W", "3.5", "water")
    two = TariffDefinition.model_validate({"price": "0.65", "two_part": {"basis": "demand", "price": "38.00", "charging": "monthly"}})
    await engine.tariffs.create("TWO", "two-part", "electricity", two, CASHIER)
    await site.open("R1", opening=100_000)
    await site.open("R2", opening=50_000, water="W")
    await site.open("R3", opening=200_000, tariff="TWO", demand_kw=Decimal("40"))
    shops = await back_office.create_customer({"name": "Shops Ltd", "kind": "company", "rooms": ["R1", "R3"]}, MANAGER)
    tea = await back_office.create_customer({"name": "Tea House", "kind": "person", "rooms": ["R2"]}, MANAGER)
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(reports.sources.tz).date()
    first = today.replace(day=1)
    # R2 is held since the 1st of the month, R1 since the day before (their opening credits are
    # posted today)
    async with site.db.transaction() as s:
        for room, since in (("R1", first - dt.timedelta(days=1)), ("R2", first)):
            a = await s.scalar(select(Account).where(Account.open_room_id == room))
            assert a is not None
            a.opened_at = dt.datetime.combine(since, dt.time(), reports.sources.tz).astimezone(dt.UTC)
    # energy: 80 kWh read nine hours apart (8.9 kW, within the meter's 10 kW), posted now
    await site.feed("E1", [(now - dt.timedelta(hours=10), "100"), (now - dt.timedelta(hours=1), "180")])
    await engine.recharge("R2", 10_000, channel="cash", reference="r2-1", actor=CASHIER)
    # custom charge: the property fee of the month, from the balance
    await back_office.create_rule({"name": "Property fee", "kind": "fixed", "amount": "200", "period": "monthly",
                                   "targets": {"rooms": ["R2"]}, "settle": "from_balance", "start": first}, MANAGER)
    assert await back_office.post_period_charges(now) == 1
    # capacity/demand: the engine's charge on the 1st of next month (posted now)
    next_first = (first + dt.timedelta(days=32)).replace(day=1)
    assert await engine.run_periodic_charges(dt.datetime.combine(next_first, dt.time(0, 5), reports.sources.tz)) == 1
    # apportionment: an entry of the kind the topology's runs post (the ledger's own post)
    async with engine._lock, site.db.transaction() as s:
        a1 = await s.scalar(select(Account).where(Account.open_room_id == "R1").with_for_update())
        assert a1 is not None
        post(s, a1, "apportionment", -1_234, Actor.system("apportionment"), now, reason="common lighting",
             idem_key="test-share-1", quantity=Decimal("14.2"), detail={"rule": 1, "rule_name": "common lighting", "unit": "kWh"})
        view = account_view(a1)
    engine.account_changed(view)

    span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat(), "interval": "year"}
    out = await reports.report("finance", group="customer", **span)
    assert out["reconciled"] is True
    cols = ("openings", "recharges", "deductions_energy", "deductions_capacity", "deductions_charges", "deductions_apportionment",
            "deductions_adjustments", "deductions", "net", "opening_balance", "closing_balance")
    got = {r["customer"]: (r["customer_name"], *(r[c] for c in cols)) for r in out["rows"]}
    assert got == {
        str(shops.id): ("Shops Ltd", "3000.00", "0.00", "40.00", "1520.00", "0.00", "12.34", "0.00", "1572.34", "1427.66", "0.00", "1427.66"),
        str(tea.id): ("Tea House", "500.00", "100.00", "0.00", "0.00", "200.00", "0.00", "0.00", "200.00", "400.00", "0.00", "400.00"),
    }
    t = out["totals"]
    assert tuple(t[c] for c in cols) == ("3500.00", "100.00", "40.00", "1520.00", "200.00", "12.34", "0.00", "1772.34", "1827.66",
                                         "0.00", "1827.66")
    # reconciled with the ledger: each column is the sum of its kind, the closing the accounts' balances
    async with site.db.sessions() as s:
        entries = (await s.scalars(select(LedgerEntry))).all()
        balances = (await s.scalars(select(Account.balance_minor))).all()

    def total(pred: object) -> str:
        return f"{Decimal(-sum(e.amount_minor for e in entries if pred(e))) / 100:.2f}"  # type: ignore[operator]

    assert total(lambda e: e.kind == "deduction") == t["deductions_energy"]
    assert total(lambda e: e.kind == "charge" and (e.detail or {}).get("basis") in ("capacity", "demand")) == t["deductions_capacity"]
    assert total(lambda e: e.kind == "charge" and "basis" not in (e.detail or {})) == t["deductions_charges"]
    assert total(lambda e: e.kind == "apportionment") == t["deductions_apportionment"]
    assert f"{Decimal(sum(balances)) / 100:.2f}" == t["closing_balance"] == out["reconciliation"]["closing_balance"]
    assert sorted(balances) == [40_000, 48_000, 94_766]


async def test_arrears_aged_in_every_bucket(reports: Reports, back_office: BillingService) -> None:
    """A postpaid shop (R1, Shops Ltd) from 1 June 2026: rent 100.00 a month and a repair of 50.00
    in August, on the bill. Each month's bill is issued on the 1st of the next, due 15 days later:
      June 100.00 due 07-16, July 100.00 due 08-16, August 150.00 due 09-16,
      September 100.00 due 10-16, October 100.00 due 11-16: 550.00 billed.
    On 20 November it pays June's bill (100.00) and 30.00 of July's; on 25 November it uses 80 kWh
    at 0.50 (40.00, not billed yet). It owes 550.00 − 130.00 + 40.00 = 460.00.
    On 1 December the unpaid bills are 138, 107, 76, 46 and 15 days past due. A credit pays the
    oldest bills first, so the 130.00 paid June's and 30.00 of July's: July 70.00 and June 0.00
    are over 90 days, August 150.00 61–90, September 100.00 31–60, October 100.00 and the
    unbilled 40.00 0–30:
      0-30: 140.00, 31-60: 100.00, 61-90: 150.00, 90+: 70.00 = 460.00; four unpaid bills owe 420.00.
    The same at the end of 30 November seen from later (to = 2026-11-30), and by customer."""
    site = reports.site
    await site.flat_tariff()
    await site.open("R1", opening=0, mode="postpaid")
    async with site.db.transaction() as s:
        a = await s.scalar(select(Account).where(Account.open_room_id == "R1"))
        assert a is not None
        a.opened_at = local(2026, 6, 1).astimezone(dt.UTC)
    shops = await back_office.create_customer({"name": "Shops Ltd", "kind": "company", "rooms": ["R1"]}, MANAGER)
    for rule in ({"name": "Rent", "amount": "100", "period": "monthly", "start": dt.date(2026, 6, 1)},
                 {"name": "Repair", "amount": "50", "period": "once", "start": dt.date(2026, 8, 10)}):
        await back_office.create_rule({**rule, "kind": "fixed", "targets": {"rooms": ["R1"]}, "settle": "on_bill"}, MANAGER)
    bills = {}
    for month in (6, 7, 8, 9, 10):
        back_office.clock = lambda m=month: local(2026, m + 1, 1, 9)  # type: ignore[misc]
        run = await back_office.run(f"2026-{month:02d}", actor=MANAGER)
        [bill] = run.bills
        bills[month] = bill
    assert [(b["total"], b["due_date"]) for b in bills.values()] == [
        ("100.00", "2026-07-16"), ("100.00", "2026-08-16"), ("150.00", "2026-09-16"), ("100.00", "2026-10-16"), ("100.00", "2026-11-16")]
    back_office.clock = lambda: local(2026, 11, 20, 10)
    await back_office.pay(bills[6]["id"], 10_000, reference="p-1", channel="cash", actor=MANAGER)
    await back_office.pay(bills[7]["id"], 3_000, reference="p-2", channel="cash", actor=MANAGER)
    for value, t in (("100", local(2026, 11, 25)), ("180", local(2026, 11, 25, 10))):
        async with site.engine._lock, site.db.transaction() as s:
            from scada.prepaid.readings import Reading

            await site.engine.biller.bill(s, [Reading("E1", Decimal(value), t)], (t + dt.timedelta(minutes=1)).astimezone(dt.UTC))
    assert (await site.engine.account("R1")).balance_minor == -46_000

    want = {"0-30": "140.00", "31-60": "100.00", "61-90": "150.00", "90+": "70.00"}
    # the back office's arrears on 1 December
    back_office.clock = lambda: local(2026, 12, 1, 9)
    [row] = (await back_office.arrears())["accounts"]
    assert (row["buckets"], row["total"], row["unpaid_bills"], row["outstanding"]) == (want, "460.00", 4, "420.00"), row
    # the report now (its clock on 1 December) and at the end of 30 November seen from later
    reports.sources.clock = lambda: local(2026, 12, 1, 9)
    for to in ("2026-12-01", "2026-11-30"):
        out = await reports.report("arrears", **{"from": "2026-11-01", "to": to, "group": "room"})
        [r] = out["rows"]
        got = {b: r[f"aged_{b.replace('-', '_').replace('+', '_plus')}"] for b in want}
        assert (r["room"], got, r["arrears"], r["balance"]) == ("R1", want, "460.00", "-460.00"), (to, r)
        assert (r["unpaid_bills"], r["outstanding"]) == ("4", "420.00"), (to, r)
        assert out["totals"]["arrears"] == "460.00"
    out = await reports.report("arrears", **{"from": "2026-11-01", "to": "2026-11-30", "group": "customer"})
    [r] = out["rows"]
    assert (r["customer"], r["customer_name"], r["aged_90_plus"], r["aged_0_30"], r["arrears"]) == (
        str(shops.id), "Shops Ltd", "70.00", "140.00", "460.00")
