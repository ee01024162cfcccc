"""The demo's back office: a property fee on every room, postpaid shops held by one company,
one issued month of bills; seeded once."""

from __future__ import annotations

from scada.billing.config import DemoBillingConfig
from scada.billing.demo import seed_billing_demo

from .conftest import Billing


async def test_demo_issues_last_months_bill_for_the_shops_once(billing: Billing) -> None:
    await billing.site.flat_tariff()
    await billing.site.flat_tariff("W", commodity="water")
    for room in ("R1", "R2", "R3"):
        await billing.site.open(room, opening=10_000, water="W" if room == "R2" else None)
    cfg = DemoBillingConfig(postpaid_rooms=["R1", "R3"])
    assert await seed_billing_demo(billing.svc, cfg) == 1
    assert await seed_billing_demo(billing.svc, cfg) == 0  # once: the rules exist now
    rules = await billing.svc.rules()
    assert [(r.name, r.kind, r.settle, r.targets) for r in rules] == [
        ("Property fee", "per_area", "on_bill", "all"), ("Shop rent", "fixed", "on_bill", {"rooms": ["R1", "R3"]})]
    bills = await billing.svc.bills()
    assert len(bills) == 1 and bills[0]["customer_name"] == "Demo Trading Co." and [a["room"] for a in bills[0]["accounts"]] == ["R1", "R3"]
    # R1: 45.5 m² × 3.50 = 159.25 and rent 1,200.00; R3: 24.5 × 3.50 = 85.75 and 1,200.00
    assert [a["total"] for a in bills[0]["accounts"]] == ["1359.25", "1285.75"] and bills[0]["total_due"] == "2645.00"
    assert (await billing.engine.account("R1")).postpaid and not (await billing.engine.account("R2")).postpaid
    assert (await billing.engine.account("R2")).balance_minor == 10_000  # prepaid rooms untouched until their bill
