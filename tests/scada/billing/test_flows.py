"""Back-office flows: move-out pro rata, a rule ended mid-period, a customer's bill paid across
its accounts, a credit note's four eyes, an adjustment put on the next bill, aging of arrears,
and dunning that cuts a postpaid account (with the cutoff policy's protections)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from scada.billing.errors import BillingError
from scada.billing.periods import period_of, prorata
from scada.prepaid.accounts import AccountSettings
from scada.prepaid.policy import Action, decide
from scada.prepaid.readings import Reading
from scada.prepaid.supply import facts_of
from scada.prepaid.tariff_definition import TariffDefinition

from ..prepaid.conftest import CASHIER
from .conftest import MANAGER, SUPERVISOR, TZ8, Billing


def local(y: int, m: int, d: int, h: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=TZ8)


async def test_move_out_credits_the_days_after_it(billing: Billing) -> None:
    """A monthly fee of 3.50 per m² on R1 (45.5 m²: 159.25) is deducted whole on the 1st; the
    tenant leaves today (day D of a month of N days) and is charged 159.25 × (D − 1) / N: the rest
    is credited back before the balance is settled. A rent on the bill (600.00) is posted for the
    days held at the closing, so the month's run has nothing left to post."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=200_000)
    today = dt.datetime.now(TZ8).date()
    month = period_of("monthly", today)
    await billing.move_in("R1", dt.datetime.combine(month.start, dt.time(0), TZ8))
    await billing.svc.create_rule({"name": "Fee", "kind": "per_area", "amount": "3.50", "period": "monthly", "targets": "all",
                                   "settle": "from_balance", "start": month.start}, MANAGER)
    await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "600", "period": "monthly", "targets": "all",
                                   "settle": "on_bill", "start": month.start}, MANAGER)
    assert await billing.svc.post_period_charges(dt.datetime.now(dt.UTC)) == 1
    held = (today - month.start).days
    fee_held = prorata(Decimal("159.25"), held, month.days, 2, "half_up")
    rent_held = prorata(Decimal("600"), held, month.days, 2, "half_up")
    _, settlement = await billing.engine.close_account("R1", actor=CASHIER, reason="moved out")
    charges = {e.reason: e.amount_minor for e in await billing.entries("R1")}
    assert charges[f"Fee {month.key}"] == -15925
    if held:
        assert charges[f"Rent {month.key}"] == -rent_held
    credits = [e for e in await billing.entries("R1", "adjustment")]
    assert [e.amount_minor for e in credits] == ([15925 - fee_held] if fee_held < 15925 else [])
    assert settlement is not None and settlement.amount_minor == -(200_000 - fee_held - rent_held)


async def test_ending_a_rule_credits_back_what_it_charged_for_later_days(billing: Billing) -> None:
    """A quarterly fee of 920.00 (from the balance) for Q4 2026 (92 days) ends on 1 December
    (today or later is required, so the test ends it on the first day of next month): held
    61 days of 92 → 920 × 61 / 92 = 610.00, so 310.00 is credited back."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=200_000)
    await billing.move_in("R1", local(2026, 9, 1))
    rule = await billing.svc.create_rule({"name": "Service", "kind": "fixed", "amount": "920", "period": "quarterly", "targets": "all",
                                          "settle": "from_balance", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 10, 5))
    assert await billing.svc.post_period_charges(local(2026, 10, 5)) == 1
    with pytest.raises(BillingError) as past:
        await billing.svc.end_rule(rule.id, dt.date(2026, 10, 1), "", MANAGER)
    assert past.value.field == "end"
    await billing.svc.end_rule(rule.id, dt.date(2026, 12, 1), "contract changed", MANAGER)
    assert [(e.kind, e.amount_minor) for e in await billing.entries("R1") if e.kind in ("charge", "adjustment")] == [("charge", -92000), ("adjustment", 31000)]
    ended = [r for r in await billing.svc.rules() if r.id == rule.id][0]
    assert ended.end == dt.date(2026, 12, 1) and ended.ended_by == MANAGER.name


async def test_customer_bill_paid_across_its_accounts_and_a_credit_note(billing: Billing) -> None:
    """One company holds R1 and R3, billed once: rent 1,000.00 and 500.00 on the bill. A payment
    of 1,200.00 pays R1's 1,000.00 and 200.00 of R3's (room order); a credit note of 300.00,
    approved by another user, settles the rest: paid."""
    await billing.site.flat_tariff()
    for room in ("R1", "R3"):
        await billing.site.open(room, opening=0, mode="postpaid")
        await billing.move_in(room, local(2026, 11, 1))
    customer = await billing.svc.create_customer({"name": "Shops Ltd", "kind": "company", "bill_per": "customer", "rooms": ["R1", "R3"]}, MANAGER)
    assert customer.rooms == ("R1", "R3")
    for room, rent in (("R1", "1000"), ("R3", "500")):
        await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": rent, "period": "monthly", "targets": {"rooms": [room]},
                                       "settle": "on_bill", "start": dt.date(2026, 11, 1)}, MANAGER)
    billing.at(local(2026, 12, 1, 8))
    run = await billing.svc.run("2026-11", actor=MANAGER)
    assert run.issued == 1
    bill = run.bills[0]
    assert bill["customer_name"] == "Shops Ltd" and bill["total_due"] == "1500.00" and [a["room"] for a in bill["accounts"]] == ["R1", "R3"]
    # the payment listeners (the tenants' payment messages) hear of each account's payment once
    heard: list[tuple[str, str, int, int, str | None]] = []
    billing.svc.engine.add_payment_listener(lambda room, r: heard.append(
        (room, r.entry.kind, r.entry.amount_minor, r.account.balance_minor, r.entry.detail["number"])))
    paid, _ = await billing.svc.pay(bill["id"], 120_000, reference="B-9", channel="transfer", actor=MANAGER)
    assert paid["status"] == "partly_paid" and [a["paid"] for a in paid["accounts"]] == ["1000.00", "200.00"]
    assert heard == [("R1", "payment", 100_000, 0, bill["number"]), ("R3", "payment", 20_000, -30_000, bill["number"])]
    await billing.svc.pay(bill["id"], 120_000, reference="B-9", channel="transfer", actor=MANAGER)  # a replay: nothing new
    assert len(heard) == 2
    note = await billing.svc.credit_note(bill["id"], 30_000, "rent waived for the works", MANAGER)
    with pytest.raises(BillingError) as own:
        await billing.svc.approve_credit_note(note["id"], MANAGER)
    assert own.value.status == 403 and await billing.entries("R3", "adjustment") == []
    await billing.svc.approve_credit_note(note["id"], SUPERVISOR, "ok")
    got = await billing.svc.bill(bill["id"])
    assert got["status"] == "paid" and got["credited"] == "300.00" and got["credit_notes"][0]["state"] == "approved"
    assert [e.amount_minor for e in await billing.entries("R3", "adjustment")] == [30000]
    assert (await billing.account("R1")).balance_minor == 0 and (await billing.account("R3")).balance_minor == 0
    with pytest.raises(BillingError) as too_much:
        await billing.svc.credit_note(bill["id"], 150_000, "again", MANAGER)
    assert too_much.value.field == "amount"


async def test_adjustment_on_the_next_bill(billing: Billing) -> None:
    """An approved adjustment with apply = next_bill posts nothing until the account's next run,
    which shows it as a line: 40 kWh re-priced from 0.50 to 0.45 is a credit of 2.00."""
    await billing.engine.tariffs.create("F", "f", "electricity", TariffDefinition.model_validate({"price": "0.50"}), CASHIER,
                                        effective_from=local(2026, 1, 1))
    await billing.site.open("R1", opening=10_000, tariff="F")
    await billing.move_in("R1", local(2026, 10, 1))
    await billing.bill_readings([Reading("E1", Decimal("100"), local(2026, 10, 10, 0))])
    await billing.bill_readings([Reading("E1", Decimal("140"), local(2026, 10, 10, 8))])
    await billing.engine.tariffs.add_version("F", TariffDefinition.model_validate({"price": "0.45"}), CASHIER,
                                             effective_from=local(2026, 10, 1), retroactive=True)
    draft = await billing.svc.draft_adjustment(tariff="F", version=2, start=local(2026, 10, 1), end=local(2026, 11, 1), rooms=None,
                                               apply="next_bill", reason="", actor=MANAGER)
    assert draft["total"] == {"charged": "20.00", "repriced": "18.00", "difference": "-2.00"}
    await billing.svc.approve_adjustment(draft["id"], SUPERVISOR)
    assert await billing.entries("R1", "adjustment") == []
    billing.at(dt.datetime.now(TZ8) + dt.timedelta(days=40))
    now = dt.datetime.now(TZ8)
    month = f"{now:%Y-%m}"
    run = await billing.svc.run(month, actor=MANAGER)
    lines = [ln for ln in run.bills[0]["lines"] if ln["kind"] == "adjustment"]
    assert [ln["amount"] for ln in lines] == ["-2.00"] and [e.amount_minor for e in await billing.entries("R1", "adjustment")] == [200]
    assert (await billing.svc.adjustment(draft["id"]))["accounts"][0]["entry"] is not None


async def test_arrears_are_aged_by_the_due_dates_of_their_bills(billing: Billing) -> None:
    """A postpaid shop billed 100.00 rent for August, September and October (due 15 days after
    issue: 2026-09-16, 10-16, 11-16). On 2026-12-01 they are 76, 46 and 15 days past due; 40.00
    of current consumption is not billed yet: 0–30: 100.00 + 40.00, 31–60: 100.00, 61–90: 100.00."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0, mode="postpaid")
    await billing.move_in("R1", local(2026, 8, 1))
    await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "100", "period": "monthly", "targets": {"rooms": ["R1"]},
                                   "settle": "on_bill", "start": dt.date(2026, 8, 1)}, MANAGER)
    for month, issued in (("2026-08", local(2026, 9, 1, 9)), ("2026-09", local(2026, 10, 1, 9)), ("2026-10", local(2026, 11, 1, 9))):
        billing.at(issued)
        await billing.svc.run(month, actor=MANAGER)
    await billing.bill_readings([Reading("E1", Decimal("10"), dt.datetime.now(dt.UTC) - dt.timedelta(hours=10))])
    await billing.bill_readings([Reading("E1", Decimal("90"), dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))])
    billing.at(local(2026, 12, 1, 9))
    report = await billing.svc.arrears()
    [row] = report["accounts"]
    assert row["buckets"] == {"0-30": "140.00", "31-60": "100.00", "61-90": "100.00", "90+": "0.00"} and row["total"] == "340.00"
    assert row["unpaid_bills"] == 3 and report["totals"]["total"] == "340.00"


async def test_dunning_cuts_an_overdue_postpaid_account_unless_protected(billing: Billing) -> None:
    """Cut when overdue (the account's own setting), at the third level (30 days past grace):
    the cutoff policy then cuts, except for a protected account; paying reconnects."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0, mode="postpaid")
    await billing.move_in("R1", local(2026, 10, 1))
    await billing.svc.account_billing("R1", {"cut_when_overdue": True, "grace_days": 2}, MANAGER)
    await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "100", "period": "monthly", "targets": {"rooms": ["R1"]},
                                   "settle": "on_bill", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 11, 1, 9))
    bill = (await billing.svc.run("2026-10", actor=MANAGER)).bills[0]  # due 2026-11-16, overdue from the 19th
    await billing.svc.dunning(local(2026, 11, 18, 12))
    assert (await billing.engine.account("R1")).dunning_level == 0
    await billing.svc.dunning(local(2026, 12, 5, 12))  # 16 days past grace
    view = await billing.engine.account("R1")
    assert (view.dunning_level, view.dunning_cut, view.alarm_level) == (2, False, 2) and not facts_of(view).cut_due
    await billing.svc.dunning(local(2026, 12, 20, 12))  # 31 days
    view = await billing.engine.account("R1")
    assert (view.dunning_level, view.dunning_cut) == (3, True)
    assert decide(facts_of(view), friendly_now=False).action is Action.CUT
    assert decide(facts_of(view), friendly_now=True).action is Action.NONE  # a friendly-credit window waits
    protected = await billing.engine.update_settings("R1", AccountSettings(protected=True), actor=CASHIER)
    assert decide(facts_of(protected), friendly_now=False).action is Action.NONE
    await billing.svc.pay(bill["id"], 10_000, reference="late", channel="cash", actor=MANAGER)
    view = await billing.engine.account("R1")
    assert (view.dunning_level, view.dunning_cut, view.alarm_level) == (0, False, 0)


async def test_ticks_do_the_days_work_once_and_follow_a_recharge(billing: Billing) -> None:
    """The tick posts the period's charges on a new day only; an overdue postpaid account that
    a recharge settled leaves its dunning at the next tick."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0, mode="postpaid")
    await billing.move_in("R1", local(2026, 10, 1))
    await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "100", "period": "monthly", "targets": {"rooms": ["R1"]},
                                   "settle": "on_bill", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 11, 1, 9))
    await billing.svc.run("2026-10", actor=MANAGER)
    await billing.svc.tick(local(2026, 12, 20, 9))
    assert (await billing.engine.account("R1")).dunning_level == 3
    await billing.engine.recharge("R1", 10_000, channel="cash", reference="walk-in", actor=CASHIER)
    assert (await billing.engine.account("R1")).dunning_level == 3
    await billing.svc.tick(local(2026, 12, 20, 9))
    view = await billing.engine.account("R1")
    assert view.dunning_level == 0 and view.alarm_level == 0
    assert (await billing.svc.bills(room="R1"))[0]["status"] == "paid"


async def test_a_recharge_that_covers_the_bill_settles_it_despite_later_consumption(billing: Billing) -> None:
    """October's bill of a postpaid shop (rent 100.00, due 2026-11-16) is overdue on the 20th.
    A recharge of 100.00 pays it (a credit pays the oldest bills first) even though the shop
    then uses 80 kWh at 0.50 (40.00, not billed yet): the bill is paid and the dunning ends,
    and the 40.00 owed is 0–30 days old, not October's bill."""
    await billing.site.flat_tariff()
    await billing.site.open("R1", opening=0, mode="postpaid")
    await billing.move_in("R1", local(2026, 10, 1))
    await billing.svc.create_rule({"name": "Rent", "kind": "fixed", "amount": "100", "period": "monthly", "targets": {"rooms": ["R1"]},
                                   "settle": "on_bill", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 11, 1, 9))
    await billing.svc.run("2026-10", actor=MANAGER)
    await billing.svc.dunning(local(2026, 11, 20, 12))
    assert (await billing.engine.account("R1")).dunning_level >= 1
    assert (await billing.svc.bills(room="R1"))[0]["status"] == "overdue"
    await billing.engine.recharge("R1", 10_000, channel="cash", reference="walk-in", actor=CASHIER)
    now = dt.datetime.now(dt.UTC)
    await billing.bill_readings([Reading("E1", Decimal("100"), now - dt.timedelta(hours=10))])
    await billing.bill_readings([Reading("E1", Decimal("180"), now - dt.timedelta(hours=1))])
    assert (await billing.account("R1")).balance_minor == -4_000
    later = now + dt.timedelta(minutes=5)
    await billing.svc.dunning(later)
    assert (await billing.svc.bills(room="R1"))[0]["status"] == "paid"
    assert (await billing.engine.account("R1")).dunning_level == 0
    billing.at(later)
    [row] = (await billing.svc.arrears())["accounts"]
    assert row["buckets"] == {"0-30": "40.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"} and row["unpaid_bills"] == 0
