"""The back office as a runtime component (``ctx[BILLING_SERVICE]``): its periodic work, and the
demo's charges, postpaid shops and issued month of bills."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from scada.billing.demo import seed_billing_demo
from scada.billing.service import BILLING_SERVICE, BillingService
from scada.config import CONFIG
from scada.core.context import Context
from scada.core.runtime import Component, Restart
from scada.db.component import DATABASE
from scada.prepaid.engine import PREPAID
from scada.site.component import ASSETS
from tags.timers import run_every

__all__ = ["BillingComponent"]


class BillingComponent(Component):
    """Runs :class:`BillingService`: the period's ``from_balance`` charges, bill statuses, late
    fees and dunning every ``billing.tick_s``; takes part in account closing."""

    name = "billing"
    requires = (CONFIG, DATABASE, ASSETS, PREPAID)
    provides = (BILLING_SERVICE,)

    def __init__(self, *, demo: bool = False) -> None:
        super().__init__()
        self.demo = demo

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        service = BillingService(config.billing, ctx[DATABASE], ctx[PREPAID], ctx[ASSETS])
        service.attach()
        try:
            if self.demo and config.billing.demo.enabled:
                await seed_billing_demo(service, config.billing.demo)
            await service.tick()
            ctx[BILLING_SERVICE] = service
            self.tasks.spawn(lambda: run_every(config.billing.tick_s, service.tick, name="billing-ticks", log_failures=False),
                             "ticks", restart=Restart.ON_FAILURE)
            yield
        finally:
            service.detach()
