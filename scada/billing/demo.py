"""The demo's back office: a property fee per m² on every room (on the bill, so that the demo's
prepaid balances are not swept away at start), a few postpaid shops held by one company with a
monthly rent on their bill, and one issued month of bills.

Seeding happens once, when the database has no charge rule yet, after the prepaid demo opened
its accounts. So that the demo has a closed month to bill, the shops are taken as moved in on
the first day of last month (their accounts' opening time is set back); that month's bill then
shows their rent and property fee (there was no metered consumption before the demo started).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from sqlalchemy import select, update

from scada.billing.config import DemoBillingConfig
from scada.billing.models import ChargeRule
from scada.billing.periods import local_midnight
from scada.billing.service import BillingService
from scada.prepaid.accounts import AccountSettings
from scada.prepaid.models import Account
from scada.users.audit import Actor

__all__ = ["DEMO", "seed_billing_demo"]

log = logging.getLogger(__name__)

DEMO = Actor("system:demo", "engine", "system")


async def seed_billing_demo(service: BillingService, cfg: DemoBillingConfig) -> int:
    """Create the demo's rules, customer and postpaid shops, and issue last month's bills;
    returns the bills issued (0 when the database was seeded before)."""
    if not cfg.enabled:
        return 0
    async with service.db.sessions() as s:
        if await s.scalar(select(ChargeRule.id).limit(1)) is not None:
            return 0
    ctx = service.ctx
    now = service.clock()
    this_month = ctx.today(now).replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    snap = ctx.snapshot
    shops = [r for r in cfg.postpaid_rooms if r in snap.rooms and any(v.room_id == r and v.open for v in service.engine.views.values())]
    await service.create_rule({"name": "Property fee", "kind": "per_area", "amount": cfg.property_fee_per_m2, "period": "monthly",
                               "targets": "all", "settle": "on_bill", "tax_rate": Decimal("0.06"), "start": last_month,
                               "reason": "demo"}, DEMO)
    if not shops:
        return 0
    await service.create_rule({"name": "Shop rent", "kind": "fixed", "amount": cfg.shop_rent, "period": "monthly",
                               "targets": {"rooms": shops}, "settle": "on_bill", "tax_rate": Decimal("0.09"), "start": last_month,
                               "reason": "demo"}, DEMO)
    customer = await service.create_customer({"name": "Demo Trading Co.", "kind": "company", "phone": "+86 21 5555 0100",
                                              "language": "zh-CN", "bill_per": "customer", "rooms": shops}, DEMO)
    for room in shops:
        await service.engine.update_settings(room, AccountSettings(mode="postpaid"), actor=DEMO, reason="demo: a shop on contract")
    async with service.db.transaction() as s:
        await s.execute(update(Account).where(Account.open_room_id.in_(shops)).values(opened_at=local_midnight(last_month, ctx.tz)))
    result = await service.run(f"{last_month:%Y-%m}", shops, actor=DEMO)
    log.info("demo back office seeded", extra={"customer": customer.id, "shops": len(shops), "bills": result.issued})
    return result.issued
