"""Virtual meters as live, read-only tags: ``<virtual>.energy_total`` (or ``volume_total``) is
the signed sum of its physical meters' registers, each times its multiplier, so OPC UA clients
and the HMI see a virtual meter like any other (its history is computed from its terms'
intervals, not from this tag: see :mod:`scada.history.service`).

The value is as good as its worst term, and as new as its newest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from scada.site.assets import AssetSnapshot
from scada.site.formula import FormulaError
from scada.topology.usage import UNIT_OF_KIND, coefficients, point_of
from tags import DataType, Quality, QualityReason, Subscription, TagChange, TagDB, TagMeta, names
from tags.names import meter_tag

__all__ = ["VirtualMeters"]

log = logging.getLogger(__name__)


class VirtualMeters:
    """Keeps the register tag of every active virtual meter up to date."""

    def __init__(self, tagdb: TagDB) -> None:
        self.tagdb = tagdb
        self._plans: dict[str, tuple[str, dict[str, Decimal]]] = {}  # virtual tag → (point, leaf tag → coefficient)
        self._by_leaf: dict[str, set[str]] = {}  # leaf tag → virtual tags
        self._warned: set[str] = set()

    def plan(self, snapshot: AssetSnapshot) -> None:
        """(Re)build the plans from the registry: register the virtual meters' tags."""
        plans: dict[str, tuple[str, dict[str, Decimal]]] = {}
        for m in snapshot.meters.values():
            if m.role != "virtual" or not m.active:
                continue
            point = point_of(m.kind)
            try:
                coefs = coefficients(snapshot, m.id)
            except FormulaError as exc:
                if m.id not in self._warned:
                    self._warned.add(m.id)
                    log.error("virtual meter not computed", extra={"meter": m.id, "error": str(exc)})
                continue
            name = meter_tag(m.id, point)
            self.tagdb.register(TagMeta(
                name, DataType.FLOAT, unit=UNIT_OF_KIND.get(m.kind, ""),
                description=f"virtual meter: {m.formula} (multipliers applied; read-only)", meter_id=m.id, point=point,
            ))
            plans[name] = (point, {meter_tag(leaf, point): c for leaf, c in coefs.items()})
        for gone in set(self._plans) - set(plans):
            self.tagdb.unregister(gone)
        self._plans = plans
        self._by_leaf = {}
        for name, (_point, leaves) in plans.items():
            for leaf in leaves:
                self._by_leaf.setdefault(leaf, set()).add(name)
        self.update(plans)

    def wants(self, name: str) -> bool:
        """The subscription filter: the registers the virtual meters are made of."""
        return name in self._by_leaf

    def feed(self, changes: Iterable[TagChange]) -> None:
        touched: set[str] = set()
        for change in changes:
            touched |= self._by_leaf.get(change.name, set())
        if touched:
            self.update(touched)

    def update(self, virtual_tags: Iterable[str]) -> None:
        for name in virtual_tags:
            plan = self._plans.get(name)
            if plan is None:
                continue
            total = Decimal(0)
            quality = Quality.GOOD
            newest = None
            missing = []
            for leaf, coef in plan[1].items():
                tv = self.tagdb.get(leaf)
                if tv is None or tv.value is None or isinstance(tv.value, bool):
                    missing.append(names.split(leaf)[0])
                    continue
                try:
                    total += Decimal(str(tv.value)) * coef
                except InvalidOperation:
                    missing.append(names.split(leaf)[0])
                    continue
                quality = min(quality, tv.quality)
                newest = tv.source_ts if newest is None else max(newest, tv.source_ts)
            if missing:
                self.tagdb.write(name, None, Quality.BAD, QualityReason.NO_VALUE, detail=f"no value of {', '.join(missing)}")
            elif quality is Quality.GOOD:
                self.tagdb.write(name, float(total), Quality.GOOD, source_ts=newest)
            else:
                reason = QualityReason.STALE if quality is Quality.UNCERTAIN else QualityReason.COMM_FAILURE
                self.tagdb.write(name, float(total), quality, reason, detail="a term is not good", source_ts=newest)

    async def run(self, subscription: Subscription[TagChange]) -> None:
        """Follow the terms' changes (a supervised task)."""
        while True:
            try:
                batch = await subscription.get_batch(10_000)
            except StopAsyncIteration:
                return
            self.feed(batch)
