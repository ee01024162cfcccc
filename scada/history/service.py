"""History queries by meter, room, floor or building (resolved through the asset registry).

:class:`HistoryService` (``ctx[HISTORY]``) answers queries for the HMI's API and, through
:func:`query_history`, for the command line, which reads the backend without a running server.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import pandas as pd

from historian import (
    AGGREGATIONS,
    QUERY_POINTS,
    REGISTERS,
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
from scada.site.formula import FormulaError
from tags import names

__all__ = [
    "BUFFER_FILL_TAG",
    "HISTORY",
    "HistoryBusy",
    "HistoryRequest",
    "HistoryService",
    "QueryRegisters",
    "RegisterSource",
    "RegisterSum",
    "SELECTORS",
    "parse_request",
    "query_history",
    "register_sums",
    "resolve_groups",
]

log = logging.getLogger(__name__)

BUFFER_FILL_TAG = names.system_tag("historian", "buffer_fill")
LOSS_PREFIX = "loss:"  # day rollups of a meter's losses down the meter tree (scada.topology)
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
    """Group id -> meter ids (replaced and inactive meters included: their history counts).

    A floor's or a building's consumption is that of its meters at the ends of the meter tree:
    utility and virtual meters, and meters with children, are left out (they would count their
    children's consumption twice)."""
    groups: dict[str, list[str]] = {}
    upstream: set[str] = set()
    if selector in ("floor", "building"):
        upstream = {m.id for m in snapshot.meters.values() if m.role in ("utility", "virtual")}
        upstream |= set(snapshot.tree.parents_at(datetime.now(UTC)).values())
    for ident in ids:
        if selector == "meter":
            if ident.startswith(LOSS_PREFIX) and ident[len(LOSS_PREFIX):] in snapshot.meters:
                groups[ident] = [ident]  # a parent's daily losses, stored as day rollups
                continue
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
            groups[ident] = [m.id for m in snapshot.meters.values() if m.room_id in rooms and m.id not in upstream]
        elif selector == "building":
            if ident not in snapshot.buildings:
                raise QueryError("building", f"unknown building {ident!r}")
            groups[ident] = [m.id for m in snapshot.meters.values() if m.building_id == ident and m.id not in upstream]
        else:
            raise QueryError("meter", f"unknown selector {selector!r}")
    if not any(groups.values()):
        raise QueryError(selector, f"no meters in {selector} {', '.join(groups)}")
    return {g: sorted(ms) for g, ms in groups.items()}


def history_query(request: HistoryRequest, snapshot: AssetSnapshot) -> HistoryQuery:
    """The historian query for an API history request: its selector resolved to meter groups (raises :class:`QueryError`)."""
    groups = resolve_groups(snapshot, request.selector, request.ids)
    return HistoryQuery(groups, request.points, request.start, request.end, request.resample, request.agg, request.selector)


@dataclass(frozen=True, slots=True)
class RegisterSum:
    """A register's consumption over a range: the exact sum of its interval deltas in millionths
    of the unit (None: no stored interval in the range had a value), how many intervals had
    one, and how many the range holds."""

    micro: int | None
    intervals: int
    expected: int



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
            async with asyncio.timeout(None if patient else self.wait_s):
                await self._slots.acquire()
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
        snap = self.assets.snapshot
        virtual = [
            i for i in request.ids
            if request.selector == "meter" and (m := snap.meters.get(i)) is not None and m.role == "virtual"
        ]
        if not virtual:
            query = history_query(request, snap)
            # refused at once (too large, out of range) rather than after waiting for a turn
            check_query(query, self.historian.grid, self.historian.settings.max_query_rows)
            async with self.turn():
                return await self.historian.query(query)
        return await self._query_virtual(request, snap, virtual)

    async def _query_virtual(self, request: HistoryRequest, snap: AssetSnapshot, virtual: list[str]) -> pd.DataFrame:
        """A virtual meter's history: its terms' interval data, each times its coefficient (its
        sign and its multiplier), summed; a bucket where a term has no value has none."""
        for p in request.points:
            if p not in REGISTERS:
                raise QueryError("point", f"a virtual meter ({virtual[0]}) has only registers ({', '.join(REGISTERS)}), not {p!r}")
        if request.agg not in (None, "sum"):
            raise QueryError("agg", f"a virtual meter ({virtual[0]}) sums its terms: agg must be sum")
        terms: dict[str, dict[str, float]] = {}
        for v in virtual:
            try:
                terms[v] = {leaf: float(c) for leaf, c in snap.terms(v).items()}
            except FormulaError as exc:
                raise QueryError("meter", f"virtual meter {v}: {exc}") from None
        plain = [i for i in request.ids if i not in terms]
        groups = resolve_groups(snap, "meter", plain) if plain else {}
        for coefs in terms.values():
            groups.update({leaf: [leaf] for leaf in coefs})
        query = HistoryQuery(groups, request.points, request.start, request.end, request.resample, "sum", "meter")
        check_query(query, self.historian.grid, self.historian.settings.max_query_rows)
        async with self.turn():
            frame = await self.historian.query(query)
            return await asyncio.to_thread(_combine_virtual, frame, terms, plain)

    async def register_sums(self, meters: Mapping[str, str], start: datetime, end: datetime) -> dict[str, RegisterSum]:
        """Each meter's register (``meters``: meter → point, e.g. ``energy_total``) summed over
        ``[start, end)`` (see :func:`register_sums`); background work (losses, apportionment)
        waits its turn behind the API's queries."""

        async def run(query: HistoryQuery) -> pd.DataFrame:
            async with self.turn(patient=True):
                return await self.historian.query(query)

        return await register_sums(run, self.historian.grid, meters, start, end)

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


async def register_sums(
    run: Callable[[HistoryQuery], Awaitable[pd.DataFrame]], grid: IntervalGrid, meters: Mapping[str, str], start: datetime, end: datetime
) -> dict[str, RegisterSum]:
    """Each meter's register (``meters``: meter → point) summed over ``[start, end)`` through
    ``run`` (a history query): whole days from the day rollups, the ends from the intervals.
    Exact: each day's value is an integer of millionths."""
    first = grid.start_of(start.timestamp())
    if first < start.timestamp():
        first += grid.length
    expected = max(0, math.ceil((end.timestamp() - first) / grid.length))
    by_point: dict[str, list[str]] = {}
    for meter, point in meters.items():
        by_point.setdefault(point, []).append(meter)
    out: dict[str, RegisterSum] = {}
    day = parse_interval("1d", grid.length)
    for point, ids in sorted(by_point.items()):
        frame = await run(HistoryQuery({m: [m] for m in ids}, [point], start, end, day, "sum", "meter"))

        def fold(frame: pd.DataFrame = frame) -> dict[str, tuple[int | None, int]]:
            sums: dict[str, tuple[int | None, int]] = {}
            for meter, value, intervals in frame[["meter", "value", "intervals"]].itertuples(index=False, name=None):
                micro, count = sums.get(meter, (None, 0))
                if not pd.isna(value):
                    # a day's value is its integer of millionths divided once: rounding back is exact
                    micro = (micro or 0) + round(float(value) * 1_000_000)
                sums[meter] = (micro, count + int(intervals))
            return sums

        for meter, (micro, count) in (await asyncio.to_thread(fold)).items():
            out[meter] = RegisterSum(micro, count, expected)
    for meter in meters:
        out.setdefault(meter, RegisterSum(None, 0, expected))
    return out


class RegisterSource(Protocol):
    """What sums meters' registers over a range: the running :class:`HistoryService`, or
    :class:`QueryRegisters` over a backend (the command line)."""

    async def register_sums(self, meters: Mapping[str, str], start: datetime, end: datetime) -> dict[str, RegisterSum]: ...


@dataclass(frozen=True)
class QueryRegisters:
    """Register sums straight through a history query function (no running historian)."""

    run: Callable[[HistoryQuery], Awaitable[pd.DataFrame]]
    grid: IntervalGrid

    async def register_sums(self, meters: Mapping[str, str], start: datetime, end: datetime) -> dict[str, RegisterSum]:
        return await register_sums(self.run, self.grid, meters, start, end)


def _combine_virtual(frame: pd.DataFrame, terms: Mapping[str, Mapping[str, float]], plain: Sequence[str]) -> pd.DataFrame:
    parts = [frame[frame["meter"].isin(plain)]]
    for v, coefs in terms.items():
        rows = frame[frame["meter"].isin(list(coefs))]
        keyed = rows.set_index(["point", "time", "meter"])
        values = keyed["value"].unstack("meter")
        weights = pd.Series(coefs)[values.columns]
        combined = (values * weights).sum(axis=1, skipna=False, min_count=1)
        intervals = keyed["intervals"].unstack("meter").min(axis=1)
        flags = keyed["flags"].unstack("meter").apply(
            lambda r: ",".join(sorted({f for cell in r if isinstance(cell, str) for f in cell.split(",") if f})), axis=1
        )
        out = pd.DataFrame({"value": combined, "intervals": intervals.astype("int64"), "flags": flags}).reset_index()
        out["meter"] = v
        parts.append(out[["time", "meter", "point", "value", "intervals", "flags"]])
    result = pd.concat(parts, ignore_index=True)
    return result.sort_values(["meter", "point", "time"], kind="stable", ignore_index=True)


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
