"""History queries by meter, room, floor or building (resolved through the asset registry).

:class:`HistoryService` (``ctx[HISTORY]``) answers queries for the HMI's API and, through
:func:`query_history`, for the command line, which reads the backend without a running server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
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
from historian.query import check_query
from scada.config import ScadaConfig
from scada.core.context import Key
from scada.history.settings import backend_settings
from scada.site.assets import AssetRegistry, AssetSnapshot
from tags import names

__all__ = [
    "BUFFER_FILL_TAG",
    "HISTORY",
    "HistoryBusy",
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


class HistoryBusy(Exception):
    """Every query slot stayed taken for ``wait_s``: the caller may retry later."""

    def __init__(self, slots: int, wait_s: float) -> None:
        super().__init__(f"history is busy: {slots} queries run at once and none finished within {wait_s:g} s; retry later")
        self.slots = slots
        self.wait_s = wait_s


class HistoryService:
    """History queries for the API: a request in, a DataFrame out (see :mod:`historian.query`).

    At most ``max_concurrent`` queries compute at once (:meth:`turn`, also taken by the API while
    it renders a large answer), so that a stream of large queries queues behind each other
    instead of taking every core from the rest of the server."""

    def __init__(self, historian: Historian, assets: AssetRegistry, tz: ZoneInfo, *, max_concurrent: int = 2, wait_s: float = 30.0) -> None:
        self.historian = historian
        self.assets = assets
        self.tz = tz
        self.max_concurrent = max_concurrent
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(max_concurrent)

    @asynccontextmanager
    async def turn(self, *, patient: bool = False) -> AsyncIterator[None]:
        """One of the ``max_concurrent`` slots of heavy work; :class:`HistoryBusy` after ``wait_s``
        (``patient``: no time limit, for an answer already being streamed)."""
        try:
            await asyncio.wait_for(self._slots.acquire(), None if patient else self.wait_s)
        except TimeoutError:
            raise HistoryBusy(self.max_concurrent, self.wait_s) from None
        try:
            yield
        finally:
            self._slots.release()

    @property
    def interval_s(self) -> int:
        return self.historian.grid.length

    def parse(self, params: Mapping[str, Sequence[str]]) -> HistoryRequest:
        return parse_request(params, self.tz, self.interval_s)

    async def query(self, request: HistoryRequest) -> pd.DataFrame:
        query = history_query(request, self.assets.snapshot)
        # refused at once (too large, out of range) rather than after waiting for a turn
        check_query(query, self.historian.grid, self.historian.settings.max_query_rows)
        async with self.turn():
            return await self.historian.query(query)

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
