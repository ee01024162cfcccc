"""Worked examples computed by hand (the arithmetic is in each docstring), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from scada.billing.errors import BillingError
from scada.prepaid.accounts import AccountSettings
from scada.prepaid.readings import Reading
from scada.prepaid.supply import facts_of
from scada.prepaid.tariff_definition import TariffDefinition

from ..prepaid.conftest import CASHIER
from .conftest import MANAGER, SUPERVISOR, TZ8, Billing


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ8)


async def test_per_m2_fee_pro_rata_for_a_move_in_on_the_11th(billing: Billing) -> None:
    """R1 has 45.5 m²; the property fee is 3.50 per m² a month, deducted from the balance.
    The tenant moves in on 11 November (a 30-day month) and holds 20 of its 30 days:
    3.50 × 45.5 = 159.25; 159.25 × 20 / 30 = 106.1666… → 106.17.
    December is a whole month: 159.25. Neither is ever posted twice."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=50_000)
    await billing.move_in("R1", local(2026, 11, 11, 10))
    rule = await billing.svc.create_rule({"name": "Property fee", "kind": "per_area", "amount": "3.50", "period": "monthly",
                                          "targets": "all", "settle": "from_balance", "start": dt.date(2026, 11, 1)}, MANAGER)
    assert await billing.svc.post_period_charges(local(2026, 11, 11, 12)) == 1
    assert await billing.svc.post_period_charges(local(2026, 11, 20, 12)) == 0
    assert await billing.svc.post_period_charges(local(2026, 12, 1, 0, 10)) == 1
    assert await billing.svc.post_period_charges(local(2026, 12, 2)) == 0
    charges = await billing.entries("R1", "charge")
    assert [(-e.amount_minor, e.reason, e.idem_key) for e in charges] == [
        (10617, "Property fee 2026-11", f"rule:{rule.id}:{charges[0].account_id}:2026-11"),
        (15925, "Property fee 2026-12", f"rule:{rule.id}:{charges[0].account_id}:2026-12"),
    ]
    assert charges[0].detail["days"] == [20, 30] and charges[0].detail["quantity"] == "45.5"
    account = await billing.account("R1")
    assert account.balance_minor == 50_000 - 10617 - 15925


async def test_quarterly_fixed_charge(billing: Billing) -> None:
    """A service fee of 900.00 a quarter, on the bill. Moving in on 11 November, the tenant holds
    51 of Q4's 92 days (11–30 Nov: 20, December: 31): 900 × 51 / 92 = 498.9130… → 498.91, posted by
    November's run (the month of its first day held). December's run posts nothing for Q4;
    January's run posts Q1 whole: 900.00."""
    await billing.site.flat_tariff()
    await billing.site.open("R2", opening=0, water="FLAT_W") if False else None  # noqa: B018 - R2 needs a water tariff
    await billing.site.open("R1", opening=0)
    await billing.move_in("R1", local(2026, 11, 11, 10))
    await billing.svc.create_rule({"name": "Service fee", "kind": "fixed", "amount": "900", "period": "quarterly",
                                   "targets": {"rooms": ["R1"]}, "settle": "on_bill", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 12, 1, 1))
    nov = await billing.svc.run("2026-11", actor=MANAGER)
    assert nov.issued == 1 and nov.posted == 1
    bill = nov.bills[0]
    fee = [ln for ln in bill["lines"] if ln["kind"] == "charge"]
    assert [(ln["label"], ln["period"], ln["amount"], ln["days"]) for ln in fee] == [("Service fee", "2026-Q4", "498.91", [51, 92])]
    assert bill["total"] == "498.91" and bill["closing_balance"] == "-498.91" and bill["total_due"] == "498.91"
    billing.at(local(2027, 1, 1, 1))
    dec = await billing.svc.run("2026-12", actor=MANAGER)
    assert dec.posted == 0 and dec.bills[0]["total"] == "0.00" and dec.bills[0]["opening_balance"] == "-498.91"
    billing.at(local(2027, 2, 1, 1))
    jan = await billing.svc.run("2027-01", actor=MANAGER)
    assert jan.posted == 1 and [ln["amount"] for ln in jan.bills[0]["lines"] if ln["kind"] == "charge"] == ["900.00"]


async def test_postpaid_month_with_tou_energy_capacity_charge_and_property_fee(billing: Billing) -> None:
    """A postpaid shop for a whole month (this month, held from its 1st):
      energy by time of use, from the meter's registers: valley 10 kWh × 0.30 = 3.00,
        peak 5 kWh × 1.00 = 5.00;
      a capacity charge of 50 kVA × 28.00 = 1,400.00 (monthly, on the 1st);
      the property fee 45.5 m² × 3.50 = 159.25, of which 6 % VAT: 159.25 × 0.06 / 1.06 = 9.014… → 9.01.
    Total 3.00 + 5.00 + 1,400.00 + 159.25 = 1,567.25; opening 0.00, closing −1,567.25, due
    1,567.25. The balance is negative, yet a postpaid account is not cut for it."""
    defn = TariffDefinition.model_validate({
        "tou": {"periods": [{"name": "peak", "price": "1.00"}, {"name": "valley", "price": "0.30"}],
                "seasons": [{"name": "all", "workday": [["00:00", "valley"], ["08:00", "peak"]]}]},
        "two_part": {"basis": "capacity", "price": "28.00", "charging": "monthly"},
    })
    await billing.engine.tariffs.create("SHOP", "shop", "electricity", defn, CASHIER, effective_from=local(2020, 1, 1))
    now = dt.datetime.now(dt.UTC)
    first = now.astimezone(TZ8).date().replace(day=1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    await billing.site.open("R1", opening=0, tariff="SHOP", capacity_kva=Decimal("50"), mode="postpaid")
    await billing.move_in("R1", dt.datetime.combine(first, dt.time(0), TZ8))
    await billing.svc.create_rule({"name": "Property fee", "kind": "per_area", "amount": "3.50", "period": "monthly", "targets": "all",
                                   "settle": "from_balance", "tax_rate": "0.06", "start": first}, MANAGER)
    t0 = now - dt.timedelta(hours=3)
    regs0 = {"sharp": Decimal(0), "peak": Decimal("10"), "flat": Decimal(0), "valley": Decimal("20")}
    regs1 = {"sharp": Decimal(0), "peak": Decimal("15"), "flat": Decimal(0), "valley": Decimal("30")}
    await billing.bill_readings([Reading("E1", Decimal("30"), t0, regs0)])  # the baseline
    await billing.bill_readings([Reading("E1", Decimal("45"), t0 + dt.timedelta(hours=2), regs1)])
    assert await billing.engine.run_periodic_charges(now) == 1  # capacity, monthly on the 1st
    assert await billing.svc.post_period_charges(now) == 1
    view = await billing.engine.account("R1")
    assert view.balance_minor == -156725 and view.postpaid and not facts_of(view).cut_due
    billing.at(dt.datetime.combine(nxt, dt.time(0, 30), TZ8))
    result = await billing.svc.run(f"{first:%Y-%m}", actor=MANAGER)
    bill = result.bills[0]
    got = sorted((ln["kind"], ln.get("period") or "", ln.get("quantity"), ln.get("unit_price"), ln["amount"], ln.get("tax"))
                 for ln in bill["lines"])
    assert got == sorted([
        ("energy", "valley", "10", "0.3", "3.00", None),
        ("energy", "peak", "5", "1", "5.00", None),
        ("capacity", "", "50", "28.00", "1400.00", None),
        ("charge", f"{first:%Y-%m}", "45.5", "3.5", "159.25", "9.01"),
    ])
    assert (bill["opening_balance"], bill["total"], bill["closing_balance"], bill["total_due"], bill["tax"]) == (
        "0.00", "1567.25", "-1567.25", "1567.25", "9.01")
    assert bill["status"] == "issued" and bill["due_date"] == (nxt + dt.timedelta(days=15)).isoformat()


async def test_late_fee_over_17_days_is_capped(billing: Billing) -> None:
    """A bill of 1,000.00 falls due; the late fee is 0.2 % of the overdue amount a day (2.00),
    capped at 30.00 a bill, with no grace. 17 days overdue would be 17 × 2.00 = 34.00 > 30.00:
    the first 15 days post 2.00 each (30.00), the 16th and 17th nothing. Each day's fee is
    posted once, whatever the number of passes. 17 days is past the second dunning level (15)."""
    svc = billing.svc
    svc.cfg = svc.cfg.model_copy(update={"late_fee": svc.cfg.late_fee.model_copy(update={"rate_per_day": Decimal("0.002"), "cap": Decimal("30")})})
    svc.ctx = type(svc.ctx)(svc.ctx.db, svc.ctx.engine, svc.ctx.assets, svc.cfg)
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0, mode="postpaid")
    await billing.move_in("R1", local(2026, 11, 1))
    await svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "1000", "period": "monthly", "targets": {"rooms": ["R1"]},
                           "settle": "on_bill", "start": dt.date(2026, 11, 1)}, MANAGER)
    billing.at(local(2026, 12, 1, 9))
    bill = (await svc.run("2026-11", actor=MANAGER)).bills[0]
    assert bill["total_due"] == "1000.00" and bill["due_date"] == "2026-12-16"
    await svc.dunning(local(2026, 12, 16, 12))  # due today: not overdue
    assert await billing.entries("R1", "late_fee") == []
    await svc.dunning(local(2027, 1, 2, 12))  # 17 days after the due date
    await svc.dunning(local(2027, 1, 2, 18))
    fees = await billing.entries("R1", "late_fee")
    assert [-e.amount_minor for e in fees] == [200] * 15
    assert [e.detail["day"] for e in fees] == [(dt.date(2026, 12, 17) + dt.timedelta(days=i)).isoformat() for i in range(15)]
    got = await svc.bill(bill["id"])
    assert got["status"] == "overdue" and got["accounts"][0]["late_fees"] == "30.00"
    view = await billing.engine.account("R1")
    assert view.dunning_level == 2 and view.alarm_level == 2 and not view.dunning_cut
    # paid: the dunning clears at once
    paid, replayed = await svc.pay(bill["id"], 100_000, reference="T-1", channel="bank", actor=MANAGER)
    assert not replayed and paid["status"] == "paid"
    view = await billing.engine.account("R1")
    assert view.dunning_level == 0 and view.alarm_level == 0


async def test_retroactive_adjustment_across_a_price_change_and_a_tier_boundary(billing: Billing) -> None:
    """A tiered tariff: 0.50 a kWh, +0.10 above 100 kWh in a month (version 1). Readings on
    10 June 2026: from 1000 at 00:00, +80 kWh by 10:00, then +60 kWh from 10:00 to 18:00. Billed
    live under version 1:
      40.00 (80 × 0.50), then 20 kWh to the tier boundary and 40 above it: 60 × 0.50 + 40 × 0.10 = 34.00;
      charged 74.00.
    The regulator raises the price to 0.60 from 12:00 on the 10th (version 2, created afterwards
    with that past effective time). Re-priced: the first reading is before the change, 40.00;
    the second splits by time at 12:00: 2 of its 8 hours before (60 × 2/8 = 15 kWh at 0.50) and
    45 kWh after (0.60); its tier-2 part (the 40 kWh above 100) is all after the change:
    15 × 0.50 + 45 × 0.60 + 40 × 0.10 = 7.50 + 27.00 + 4.00 = 38.50; repriced 78.50, a
    difference of +4.50 that the tenant owes. Re-pricing under version 1 (unchanged) gives exactly 0.00."""
    tiers = {"cycle": "monthly", "blocks": [{"up_to": "100", "adder": "0"}, {"adder": "0.10"}]}
    await billing.engine.tariffs.create("TIER", "tiered", "electricity", TariffDefinition.model_validate({"price": "0.50", "tiers": tiers}),
                                        CASHIER, effective_from=local(2026, 1, 1))
    await billing.site.open("R1", opening=100_000, tariff="TIER")
    await billing.move_in("R1", local(2026, 6, 1))
    await billing.bill_readings([Reading("E1", Decimal("1000"), local(2026, 6, 10, 0))])
    await billing.bill_readings([Reading("E1", Decimal("1080"), local(2026, 6, 10, 10))])
    await billing.bill_readings([Reading("E1", Decimal("1140"), local(2026, 6, 10, 18))])
    assert [-e.amount_minor for e in await billing.entries("R1", "deduction")] == [4000, 3400]
    await billing.engine.tariffs.add_version("TIER", TariffDefinition.model_validate({"price": "0.60", "tiers": tiers}), CASHIER,
                                             effective_from=local(2026, 6, 10, 12), retroactive=True, reason="price notice")
    svc = billing.svc
    same = await svc.draft_adjustment(tariff="TIER", version=1, start=local(2026, 6, 1), end=local(2026, 7, 1), rooms=None,
                                      apply="ledger", reason="check", actor=MANAGER)
    assert same["total"] == {"charged": "74.00", "repriced": "74.00", "difference": "0.00"}
    draft = await svc.draft_adjustment(tariff="TIER", version=2, start=local(2026, 6, 1), end=local(2026, 7, 1), rooms=["R1"],
                                       apply="ledger", reason="price notice", actor=MANAGER)
    assert draft["state"] == "draft"
    assert [(a["room"], a["charged"], a["repriced"], a["difference"]) for a in draft["accounts"]] == [("R1", "74.00", "78.50", "4.50")]
    assert draft["total"] == {"charged": "74.00", "repriced": "78.50", "difference": "4.50"}
    before = (await billing.account("R1")).balance_minor
    with pytest.raises(BillingError) as refused:
        await svc.approve_adjustment(draft["id"], MANAGER)  # its author
    assert refused.value.status == 403
    assert (await billing.account("R1")).balance_minor == before and await billing.entries("R1", "adjustment") == []
    approved = await svc.approve_adjustment(draft["id"], SUPERVISOR, "notice 2026-17")
    assert approved["state"] == "approved" and approved["decided_by"] == "super1"
    adj = await billing.entries("R1", "adjustment")
    assert [(e.amount_minor, e.idem_key) for e in adj] == [(-450, f"adjustment:{draft['id']}:{adj[0].account_id}")]
    assert (await billing.account("R1")).balance_minor == before - 450
    with pytest.raises(BillingError) as again:
        await svc.approve_adjustment(draft["id"], SUPERVISOR)
    assert again.value.status == 409
    # the same range again would count the difference twice: refused
    with pytest.raises(BillingError) as overlap:
        await svc.draft_adjustment(tariff="TIER", version=2, start=local(2026, 6, 5), end=local(2026, 6, 20), rooms=None,
                                   apply="ledger", reason="", actor=MANAGER)
    assert overlap.value.status == 409 and overlap.value.field == "from"


async def test_mode_switch_and_settings(billing: Billing) -> None:
    """A postpaid account's alarm level follows its dunning, not its balance."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0)
    view = await billing.engine.update_settings("R1", AccountSettings(mode="postpaid"), actor=CASHIER)
    assert view.mode == "postpaid" and view.as_json(2)["mode"] == "postpaid"
    await billing.bill_readings([Reading("E1", Decimal("1"), dt.datetime.now(dt.UTC) - dt.timedelta(hours=6))])
    await billing.bill_readings([Reading("E1", Decimal("50"), dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))])
    view = await billing.engine.account("R1")
    assert view.balance_minor == -2450 and view.alarm_level == 0 and not facts_of(view).cut_due
    view = await billing.engine.update_settings("R1", AccountSettings(mode="prepaid"), actor=CASHIER)
    assert view.alarm_level == 3 and facts_of(view).cut_due
