"""What ``scada demo`` adds to the meter topology: an operator who reads the utility meter by
hand every few minutes (its children's registers plus a loss), and a monthly rule sharing the
common meter's consumption by area."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal

from scada.topology.apportion import ApportionmentError, RuleSpec
from scada.topology.config import TopologyDemoConfig
from scada.topology.readings import ReadingError, ReadingInput
from scada.topology.service import Topology
from scada.topology.usage import point_of
from scada.users.audit import Actor
from tags import Quality
from tags.names import meter_tag

__all__ = ["DEMO_RULE", "DemoOperator", "seed_demo_rule"]

log = logging.getLogger(__name__)

DEMO_RULE = "Common area by area (demo)"
OPERATOR = Actor("demo-operator", "engine", "maintenance")


class DemoOperator:
    """Reads the utility meter: its last reading plus its children's consumption since then, and
    the configured loss on top."""

    def __init__(self, topology: Topology, cfg: TopologyDemoConfig) -> None:
        self.topology = topology
        self.cfg = cfg
        self._children_before: Decimal | None = None

    def children_total(self) -> Decimal | None:
        snap = self.topology.snapshot
        total = Decimal(0)
        children = snap.tree.children_at(self.cfg.utility_meter, self.topology.clock())
        if not children:
            return None
        for child in children:
            m = snap.meters.get(child)
            if m is None:
                continue
            tv = self.topology.tagdb.get(meter_tag(child, point_of(m.kind)))
            if tv is None or tv.quality is not Quality.GOOD or not isinstance(tv.value, (int, float)):
                return None  # not every child read yet
            total += Decimal(str(tv.value)) * m.multiplier
        return total

    async def step(self) -> None:
        meter = self.topology.snapshot.meters.get(self.cfg.utility_meter)
        if meter is None or not meter.manual:
            return
        now_children = self.children_total()
        if now_children is None:
            return
        factor = 1 + self.cfg.loss_pct / 100
        last = await self.topology.readings.latest(meter.id)
        if last is None:
            value = now_children * factor
        elif self._children_before is None:
            self._children_before = now_children  # after a start: the next reading counts from here
            return
        else:
            value = last.value + (now_children - self._children_before) * factor
        value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if last is not None and value <= last.value:
            return
        try:
            await self.topology.readings.enter(
                ReadingInput(meter.id, value, self.topology.clock(), "demo: the utility meter read on site"), OPERATOR,
            )
        except ReadingError as exc:
            log.warning("demo reading refused", extra={"meter": meter.id, "error": exc.message})
            return
        self._children_before = now_children


async def seed_demo_rule(topology: Topology, cfg: TopologyDemoConfig) -> None:
    """The demo's monthly rule: the common meter shared by area, at each room's tariff."""
    snap = topology.snapshot
    if cfg.common_meter not in snap.meters or cfg.building not in snap.buildings:
        return
    if any(r.spec.name == DEMO_RULE for r in await topology.apportionment.rules()):
        return
    spec = RuleSpec(DEMO_RULE, cfg.common_meter, "area", {"building": cfg.building}, None, "tariff", "balance", "monthly")
    try:
        await topology.apportionment.create_rule(spec, Actor.system("demo"))
    except ApportionmentError as exc:
        log.warning("demo apportionment rule not created", extra={"error": exc.message})
