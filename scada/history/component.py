"""The historian as a runtime component, fed from the tag database.

It subscribes to every change *and* report of the meter points the historian reads (a report
counts as a sample), registers and feeds ``system:historian.buffer_fill``, and runs the
historian's loops as its own supervised tasks. On stop (after those loops are cancelled) it
ends intake, closes what is due, saves the open intervals (a restart continues them) and gives
the buffer a few seconds to reach the backend; what does not make it stays on disk for the next
start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from historian import Historian, IntervalGrid, make_backend
from historian.records import POINTS
from scada.config import CONFIG
from scada.core.context import Context
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.history.service import BUFFER_FILL_TAG, HISTORY, HistoryService
from scada.history.settings import backend_settings, historian_settings
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo
from scada.site.component import ASSETS
from tags import DataType, TagDB, TagMeta, names

__all__ = ["HistorianComponent"]

log = logging.getLogger(__name__)


class _MeterIds:
    """The meters with interval history: those with a tag of a recorded point, virtual meters
    left out. Worked out again only when the tags or the asset snapshot changed: the historian
    asks before every interval it closes, and a scan of every tag name took ~1 s of the event
    loop at 50,000 meters."""

    def __init__(self, tagdb: TagDB, assets: AssetRegistry) -> None:
        self.tagdb = tagdb
        self.assets = assets
        self._registrations = -1
        self._snapshot: AssetSnapshot | None = None
        self._ids: frozenset[str] = frozenset()

    def __call__(self) -> frozenset[str]:
        snapshot = self.assets.snapshot
        if self.tagdb.registrations != self._registrations or snapshot is not self._snapshot:
            self._ids = frozenset(self._scan(snapshot.meters))
            self._registrations, self._snapshot = self.tagdb.registrations, snapshot
        return self._ids

    def _scan(self, meters: Mapping[str, MeterInfo]) -> set[str]:
        out: set[str] = set()
        for name in self.tagdb.names():
            owner, point = names.split(name)
            if point in POINTS and ":" not in owner:
                m = meters.get(owner)
                if m is None or m.role != "virtual":
                    out.add(owner)
        return out


class HistorianComponent(Component):
    """Provides :class:`HistoryService` (``ctx[HISTORY]``) and keeps interval history of every meter."""

    name = "historian"
    requires = (CONFIG, TAGDB, ASSETS)
    provides = (HISTORY,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        tagdb = ctx[TAGDB]
        settings = historian_settings(config)
        grid = IntervalGrid(settings.interval_s, config.site.tz)
        tagdb.register(
            TagMeta(
                BUFFER_FILL_TAG, DataType.FLOAT, point="buffer_fill",
                description="historian store-and-forward buffer fill (0..1)",
            )
        )
        backend = make_backend(backend_settings(config))

        def publish_fill(fill: float) -> None:
            tagdb.write(BUFFER_FILL_TAG, fill)

        assets = ctx[ASSETS]
        historian = Historian(settings, backend, grid, publish_fill=publish_fill, known_meters=_MeterIds(tagdb, assets))

        def wants(name: str) -> bool:
            # a virtual meter's live tag is not recorded: its history is computed from its terms'
            if not historian.wants(name):
                return False
            m = assets.snapshot.meters.get(names.split(name)[0])
            return m is None or m.role != "virtual"

        await historian.open()
        flush_timeout_s = min(5.0, config.runtime.stop_timeout_s / 2)
        sub = tagdb.subscribe(
            wants, include_reported=True, include_late=True, maxsize=200_000, name="historian"
        )
        try:
            self.tasks.spawn(lambda: historian.run_intake(sub), "intake", restart=Restart.ON_FAILURE)
            self.tasks.spawn(historian.run_closer, "closer", restart=Restart.ON_FAILURE)
            self.tasks.spawn(historian.run_forwarder, "forwarder", restart=Restart.ON_FAILURE)
            self.tasks.spawn(historian.run_retention, "retention", restart=Restart.ON_FAILURE)
            ctx[HISTORY] = HistoryService(
                historian, ctx[ASSETS], config.site.tz,
                max_concurrent=config.historian.max_concurrent_queries, wait_s=config.historian.query_wait_s,
            )
            log.info(
                "historian started",
                extra={"backend": backend.name, "interval_min": settings.interval_s // 60, "buffered": historian.spool.points},
            )
            yield
        finally:
            # the loops are cancelled by now: what the subscription still holds goes in last
            sub.close()
            historian.feed(sub.drain())
            await historian.shutdown(flush_timeout_s)
