"""The meter topology as a runtime component (``ctx[TOPOLOGY]``).

At start it registers the register tags of the meters read by hand and writes each one's newest
reading to them (so the historian, the prepaid engine, OPC UA and the HMI have it after a
restart), keeps the virtual meters' read-only register tags computed from their terms, and
follows the registry (meters added, turned manual or virtual). It is started after the historian,
the prepaid engine and the back office when they run (it reads the first, posts through the
second, and hands the third the shares settled on the bill), and before OPC UA (which then
publishes its tags).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from scada.billing.service import BILLING_SERVICE
from scada.config import CONFIG
from scada.core.context import Context
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import HISTORY
from scada.prepaid.engine import PREPAID
from scada.site.assets import AssetSnapshot, RegistryDiff
from scada.site.component import ASSETS
from scada.site.profiles import load_profiles
from scada.topology.demo import DemoOperator, seed_demo_rule
from scada.topology.service import TOPOLOGY, Topology
from scada.topology.virtual import VirtualMeters
from tags.timers import run_every

__all__ = ["TopologyComponent"]

log = logging.getLogger(__name__)


class TopologyComponent(Component):
    """Provides :class:`Topology`: the meter tree, manual readings, virtual meters, losses and
    apportionment."""

    name = "topology"
    requires = (CONFIG, DATABASE, ASSETS, TAGDB)
    optional = (HISTORY, PREPAID, BILLING_SERVICE)
    provides = (TOPOLOGY,)

    def __init__(self, *, demo: bool = False) -> None:
        super().__init__()
        self.demo = demo

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        topology = Topology(
            config, ctx[DATABASE], assets, ctx[TAGDB], profiles=load_profiles(config), history=lambda: ctx.get(HISTORY),
            prepaid=lambda: ctx.get(PREPAID),
        )
        topology.readings.register_tags(assets.snapshot)
        tagdb = ctx[TAGDB]
        virtual = VirtualMeters(tagdb)
        virtual.plan(assets.snapshot)

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            topology.readings.register_tags(snapshot)
            virtual.plan(snapshot)

        unsubscribe = assets.subscribe(follow)
        # shares settled on the bill are posted by the back office's billing runs
        billing = ctx.get(BILLING_SERVICE)
        if billing is not None:
            billing.add_pending(topology.apportionment)
        terms = tagdb.subscribe(virtual.wants, maxsize=50_000, name="virtual-meters")
        try:
            await topology.readings.publish_latest()
            ctx[TOPOLOGY] = topology
            self.tasks.spawn(
                lambda: run_every(config.topology.tick_s, topology.tick, name="topology-ticks"),
                "ticks", restart=Restart.ON_FAILURE,
            )
            self.tasks.spawn(lambda: virtual.run(terms), "virtual-meters", restart=Restart.ON_FAILURE)
            demo = config.topology.demo
            if self.demo and demo.enabled:
                await seed_demo_rule(topology, demo)
                operator = DemoOperator(topology, demo)
                self.tasks.spawn(
                    lambda: run_every(demo.reading_every_s, operator.step, name="demo-operator", first_delay_s=5.0),
                    "demo-operator", restart=Restart.ON_FAILURE,
                )
            yield
        finally:
            if billing is not None:
                billing.remove_pending(topology.apportionment)
            terms.close()
            unsubscribe()
