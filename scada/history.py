"""The historian in the application: the runtime component that feeds it from the tag database,
and history queries by meter, room, floor or building (resolved through the asset registry).

The component subscribes to every change *and* report of the meter points the historian reads
(a report counts as a sample), registers and feeds ``system:historian.buffer_fill``, and runs
the historian's loops as its own supervised tasks. On stop it ends intake, closes what is due,
saves the open intervals (a restart continues them) and gives the buffer a few seconds to reach
the backend; what does not make it stays on disk for the next start.

:class:`HistoryService` (``ctx[HISTORY]``) answers queries for the HMI's API and, through
:func:`query_history`, for the command line, which reads the backend without a running server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from historian import (
    AGGREGATIONS,
    QUERY_POINTS,
    Backend,
    Historian,
    HistoryQuery,
    IntervalGrid,
    QueryError,
    Resample,
    make_backend,
    parse_interval,
    parse_time,
    run_query,
)
from historian.records import POINTS
from tags import DataType, Subscription, TagDB, TagMeta, names

from .assets import AssetRegistry, AssetSnapshot
from .config import ScadaConfig
from .context import Context, Key
from .foundation import ASSETS, CONFIG, TAGDB
from .history_config import backend_settings, historian_settings
from .runtime import Component, Restart

__all__ = [
    "BUFFER_FILL_TAG",
    "HISTORY",
    "HistorianComponent",
    "HistoryRequest",
    "HistoryService",
    "SELECTORS",
    "parse_request",
    "query_history",
    "resolve_groups",
]

log = logging.getLogger(__name__)

BUFFER_FILL_TAG = names.system_tag("historian", "buffer_fill")
SELECTORS = ("meter", "room", "floor", "building")


@dataclass(frozen=True)
class HistoryRequest:
    """A history query as a user states it (command line, REST), before meters are resolved."""

    selector: str  # meter | room | floor | building
    ids: tuple[str, ...]
    points: tuple[str, ...]
    start: datetime
    end: datetime
    resample: Resample | None
    agg: str | None


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """Repeated and comma-separated values: ``point=a&point=b`` and ``point=a,b`` alike."""
    out: list[str] = []
    for raw in params.get(name, ()):
        out += [v.strip() for v in raw.split(",") if v.strip()]
    return out


def parse_request(params: Mapping[str, Sequence[str]], tz: ZoneInfo, stored_interval_s: int) -> HistoryRequest:
    """Check and parse query parameters; a :class:`QueryError` names the wrong one."""
    given = [s for s in SELECTORS if _values(params, s)]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        raise QueryError("meter", f"give exactly one of meter, room, floor or building{found}")
    selector = given[0]
    points = _values(params, "point") or ["energy_total"]
    for p in points:
        if p not in QUERY_POINTS:
            raise QueryError("point", f"unknown point {p!r} (known: {', '.join(QUERY_POINTS)})")
    agg = (_values(params, "agg") or [None])[0]
    if agg is not None and agg not in AGGREGATIONS:
        raise QueryError("agg", f"expected one of {', '.join(AGGREGATIONS)}, found {agg!r}")
    start = parse_time((_values(params, "start") or [None])[0], tz, "start")
    end = parse_time((_values(params, "end") or [None])[0], tz, "end")
    if end <= start:
        raise QueryError("end", "must be after start")
    resample = parse_interval((_values(params, "interval") or [None])[0], stored_interval_s)
    return HistoryRequest(selector, tuple(dict.fromkeys(_values(params, selector))), tuple(dict.fromkeys(points)), start, end, resample, agg)


def resolve_groups(snapshot: AssetSnapshot, selector: str, ids: Iterable[str]) -> dict[str, list[str]]:
    """Group id -> meter ids (replaced and inactive meters included: their history counts)."""
    groups: dict[str, list[str]] = {}
    for ident in ids:
        if selector == "meter":
            if ident not in snapshot.meters:
                raise QueryError("meter", f"unknown meter {ident!r}")
            groups[ident] = [ident]
        elif selector == "room":
            if ident not in snapshot.rooms:
                raise QueryError("room", f"unknown room {ident!r}")
            groups[ident] = [m.id for m in snapshot.meters_of_room(ident, active_only=False)]
        elif selector == "floor":
            if ident not in snapshot.floors:
                raise QueryError("floor", f"unknown floor {ident!r}")
            rooms = {r.id for r in snapshot.rooms_on_floor(ident)}
            groups[ident] = [m.id for m in snapshot.meters.values() if m.room_id in rooms]
        elif selector == "building":
            if ident not in snapshot.buildings:
                raise QueryError("building", f"unknown building {ident!r}")
            groups[ident] = [m.id for m in snapshot.meters.values() if m.building_id == ident]
        else:
            raise QueryError("meter", f"unknown selector {selector!r}")
    if not any(groups.values()):
        raise QueryError(selector, f"no meters in {selector} {', '.join(groups)}")
    return {g: sorted(ms) for g, ms in groups.items()}


def history_query(request: HistoryRequest, snapshot: AssetSnapshot) -> HistoryQuery:
    groups = resolve_groups(snapshot, request.selector, request.ids)
    return HistoryQuery(groups, request.points, request.start, request.end, request.resample, request.agg, request.selector)


class HistoryService:
    """History queries for the API: a request in, a DataFrame out (see :mod:`historian.query`)."""

    def __init__(self, historian: Historian, assets: AssetRegistry, tz: ZoneInfo) -> None:
        self.historian = historian
        self.assets = assets
        self.tz = tz

    @property
    def interval_s(self) -> int:
        return self.historian.grid.length

    def parse(self, params: Mapping[str, Sequence[str]]) -> HistoryRequest:
        return parse_request(params, self.tz, self.interval_s)

    async def query(self, request: HistoryRequest) -> pd.DataFrame:
        return await self.historian.query(history_query(request, self.assets.snapshot))

    async def query_by(
        self,
        selector: str,
        ids: Sequence[str],
        points: Sequence[str],
        start: datetime,
        end: datetime,
        interval: str | None = None,
        agg: str | None = None,
    ) -> pd.DataFrame:
        """The Python API: e.g. ``query_by("room", ["B1-R101"], ["energy_total"], start, end, "1d")``."""
        if selector not in SELECTORS:
            raise QueryError("selector", f"expected one of {', '.join(SELECTORS)}, found {selector!r}")
        request = HistoryRequest(
            selector, tuple(ids), tuple(points), start, end, parse_interval(interval, self.interval_s), agg
        )
        return await self.query(request)


HISTORY: Key[HistoryService] = Key("history", HistoryService)


async def query_history(config: ScadaConfig, snapshot: AssetSnapshot, request: HistoryRequest) -> pd.DataFrame:
    """Answer a request straight from the configured backend (no running server needed)."""
    grid = IntervalGrid(config.historian.interval_min * 60, config.site.tz)
    backend: Backend = make_backend(backend_settings(config))
    await backend.open()
    try:
        return await run_query(backend, history_query(request, snapshot), grid, max_rows=config.historian.max_query_rows)
    finally:
        await backend.close()


def _meter_ids(tagdb: TagDB) -> set[str]:
    out: set[str] = set()
    for name in tagdb.names():
        owner, _, point = name.rpartition(".")
        if point in POINTS and ":" not in owner:
            out.add(owner)
    return out


class HistorianComponent(Component):
    name = "historian"
    requires = (CONFIG, TAGDB, ASSETS)
    provides = (HISTORY,)

    def __init__(self) -> None:
        super().__init__()
        self.historian: Historian | None = None
        self._sub: Subscription | None = None
        self._flush_timeout_s = 5.0

    async def start(self, ctx: Context) -> None:
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

        historian = Historian(settings, backend, grid, publish_fill=publish_fill, known_meters=lambda: _meter_ids(tagdb))
        await historian.open()
        self.historian = historian
        self._flush_timeout_s = min(5.0, config.runtime.stop_timeout_s / 2)
        sub = tagdb.subscribe(historian.wants, include_reported=True, maxsize=200_000, name="historian")
        self._sub = sub
        self.tasks.spawn(lambda: historian.run_intake(sub), "intake", restart=Restart.ON_FAILURE)
        self.tasks.spawn(historian.run_closer, "closer", restart=Restart.ON_FAILURE)
        self.tasks.spawn(historian.run_forwarder, "forwarder", restart=Restart.ON_FAILURE)
        self.tasks.spawn(historian.run_retention, "retention", restart=Restart.ON_FAILURE)
        ctx[HISTORY] = HistoryService(historian, ctx[ASSETS], config.site.tz)
        log.info(
            "historian started",
            extra={"backend": backend.name, "interval_min": settings.interval_s // 60, "buffered": historian.spool.points},
        )

    async def stop(self) -> None:
        historian, sub = self.historian, self._sub
        if historian is None:
            return
        if sub is not None:
            sub.close()  # stop intake first...
        await self.tasks.cancel_all()  # ...then the loops, so the steps below run alone
        if sub is not None:
            historian.feed(sub.drain())
        await historian.shutdown(self._flush_timeout_s)
        self.historian = None
