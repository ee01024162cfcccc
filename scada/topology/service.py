"""The meter topology as one service (``ctx[TOPOLOGY]``): the tree, manual readings, virtual
meters, losses and apportionment, for the HMI's API and pages."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from protocols.modbus.profile import ProfileLibrary
from scada.config import ScadaConfig
from scada.core.context import Key
from scada.db import Database
from scada.history.service import HistoryService
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo
from scada.site.tree import ParentChange
from scada.topology.readings import ManualReadings
from scada.topology.usage import Span, Usage, UsageSource, point_of
from scada.users.audit import Actor
from tags import Quality, TagDB, utcnow
from tags.names import meter_tag

__all__ = ["TOPOLOGY", "Topology", "meter_state"]

log = logging.getLogger(__name__)


def meter_state(meter: MeterInfo, tagdb: TagDB, device_state: Callable[[str], str | None] | None = None) -> str:
    """``inactive``, ``virtual``, ``manual``, or a polled meter's ``online`` / ``offline`` /
    ``unknown`` / ``config_error``."""
    if not meter.active:
        return "inactive"
    if meter.role == "virtual":
        return "virtual"
    if meter.manual:
        return "manual"
    if device_state is not None:
        state = device_state(meter.id)
        if state is not None:
            return state
    comm = tagdb.get(meter_tag(meter.id, "comm_ok"))
    if comm is None or comm.quality is not Quality.GOOD:
        return "unknown"
    return "online" if comm.value is True else "offline"


class Topology:
    def __init__(
        self,
        config: ScadaConfig,
        db: Database,
        assets: AssetRegistry,
        tagdb: TagDB,
        *,
        profiles: ProfileLibrary | None = None,
        history: Callable[[], HistoryService | None] = lambda: None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.cfg = config.topology
        self.db = db
        self.assets = assets
        self.tagdb = tagdb
        self.tz = config.site.tz
        self._history = history
        self.clock = clock
        self._steps: dict[str, Decimal] = {}
        self._profiles = profiles
        self.readings = ManualReadings(
            db, assets, tagdb, tz=self.tz, margin=config.prepaid.jump_margin,
            future_tolerance_s=self.cfg.future_tolerance_s, max_rows=self.cfg.max_import_rows,
            step=self.cfg.manual_resolution, clock=lambda: self.clock(),
        )

    @property
    def history(self) -> HistoryService | None:
        return self._history()

    @property
    def snapshot(self) -> AssetSnapshot:
        return self.assets.snapshot

    # -- meters ----------------------------------------------------------------------------------
    def step_of(self, meter: MeterInfo) -> Decimal:
        """A polled meter's register step from its profile (the point's scale)."""
        if meter.id in self._steps:
            return self._steps[meter.id]
        step = self.cfg.manual_resolution
        if meter.polled and self._profiles is not None:
            profile = self._profiles.get(meter.profile)
            point = profile.points.get(point_of(meter.kind)) if profile is not None else None
            if point is not None:
                step = Decimal(repr(point.scale)).normalize()
        self._steps[meter.id] = step
        return step

    def usage_source(self) -> UsageSource:
        """A consumption source over the registry's current snapshot (one per request: it caches
        the manual readings it loads)."""
        snap = self.snapshot
        steps = {m.id: self.step_of(m) for m in snap.meters.values() if m.polled}
        return UsageSource(self.db, snap, self.history, resolution=steps, manual_resolution=self.cfg.manual_resolution)

    async def usage(self, meter_id: str, start: dt.datetime, end: dt.datetime) -> Usage:
        return (await self.usage_source().usage([Span(meter_id, start, end)]))[0]

    def meter_json(self, meter: MeterInfo, device_state: Callable[[str], str | None] | None = None) -> dict[str, Any]:
        """A meter as ``GET /api/v1/meters`` lists it."""
        snap = self.snapshot
        now = self.clock()
        timeline = snap.tree.timeline(meter.id)
        current = [c for c in timeline if c.valid_from <= now]
        reading = None
        if meter.active:
            tv = self.tagdb.get(meter_tag(meter.id, point_of(meter.kind)))
            if tv is not None and tv.value is not None:
                reading = {
                    "value": tv.value, "ts": tv.source_ts.isoformat(), "quality": tv.quality.name.lower(),
                }
        return {
            "id": meter.id,
            "kind": meter.kind,
            "role": meter.role,
            "room": meter.room_id,
            "building": meter.building_id,
            "parent": current[-1].parent_id if current else None,
            "parent_since": current[-1].valid_from.isoformat() if current and current[-1].parent_id else None,
            "children": snap.tree.children_at(meter.id, now),
            "state": meter_state(meter, self.tagdb, device_state),
            "manual": meter.manual,
            "formula": meter.formula,
            "multiplier": format(meter.multiplier, "f"),
            "max_power_kw": format(meter.max_power_kw, "f") if meter.max_power_kw is not None else None,
            "active": meter.active,
            "replaced_by": meter.replaced_by,
            "reading": reading,
        }

    async def set_parent(
        self, meter_id: str, parent_id: str | None, actor: Actor, *, valid_from: dt.datetime | None = None, reason: str = ""
    ) -> ParentChange | None:
        return await self.assets.set_parent(meter_id, parent_id, actor, valid_from=valid_from, reason=reason)


TOPOLOGY: Key[Topology] = Key("topology", Topology)
