"""The prepaid engine as a runtime component (``ctx[PREPAID]``), with the demo's accounts and cashier."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from scada.alarms.notify.contacts import CONTACTS
from scada.approvals.component import APPROVALS
from scada.commands.service import COMMANDS, SUPPLY_DRIVER
from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.prepaid.approvals import PREPAID_APPROVALS, ApprovalRule, PrepaidApprovals
from scada.prepaid.demo import DemoCashier, seed_demo
from scada.prepaid.engine import PREPAID, PrepaidEngine
from scada.prepaid.supply import CommandSwitch, SupplySwitch
from scada.site.component import ASSETS

__all__ = ["PrepaidComponent"]


class PrepaidComponent(Component):
    """Runs the engine; cuts and restores supply through the command path (``COMMANDS``);
    registers the approved operations of the four-eyes rule (``PREPAID_APPROVALS``)."""

    name = "prepaid"
    requires = (CONFIG, DATABASE, ASSETS, TAGDB, COMMANDS, SUPPLY_DRIVER, APPROVALS)
    # declared as the base class declares it: __init__ may add CONTACTS
    provides: tuple[Key[Any], ...] = (PREPAID,)

    def __init__(self, *, switch: SupplySwitch | None = None, demo: bool = False, provide_contacts: bool = True) -> None:
        super().__init__()
        # the account contacts are the alarm notifier's room contacts, unless a contacts file is
        # configured (then that component provides them)
        self.provides = (PREPAID, PREPAID_APPROVALS, CONTACTS) if provide_contacts else (PREPAID, PREPAID_APPROVALS)
        self.switch = switch
        self.demo = demo

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        driver = ctx[SUPPLY_DRIVER]
        engine = PrepaidEngine(
            config, ctx[DATABASE], ctx[ASSETS], ctx[TAGDB], switch=self.switch or CommandSwitch(ctx[COMMANDS]),
            spawn=lambda factory, name: self.tasks.spawn(factory, name, restart=Restart.NEVER),
            switchable=driver.supports_supply,
        )
        await engine.load()
        approvals = ctx[APPROVALS]
        gate = PrepaidApprovals(engine, approvals, ApprovalRule.from_config(config.approvals, engine.minor_units))
        try:
            # an approval granted just before a stop runs now (its executor is idempotent)
            await approvals.resume(gate.kinds)
            ctx[PREPAID] = engine
            ctx[PREPAID_APPROVALS] = gate
            if CONTACTS in self.provides:
                ctx[CONTACTS] = engine
            if self.demo and config.prepaid.demo.enabled:
                await seed_demo(engine, config.prepaid.demo)
                self.tasks.spawn(DemoCashier(engine, config.prepaid.demo).run, "demo-cashier", restart=Restart.ON_FAILURE)
            self.tasks.spawn(engine.run_billing, "billing", restart=Restart.ON_FAILURE)
            self.tasks.spawn(engine.run_ticks, "ticks", restart=Restart.ON_FAILURE)
            yield
        finally:
            gate.close()
            engine.close()
