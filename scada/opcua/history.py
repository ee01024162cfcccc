"""The historian as the OPC UA server's history source.

Which variables are historized, and what their history is:

- a meter's registers (``energy_*``, ``volume_total``): the consumption in each stored interval
  (:attr:`SeriesKind.INCREMENTS`), the rows ``GET /api/v1/history`` answers for the meter;
- a meter's analogs (``power``, ``voltage``, ``current``): the interval averages, minima and
  maxima (:attr:`SeriesKind.INTERVALS`);
- any other numeric or boolean tag a ``[[historian.raw]]`` rule logs (``room:*.balance``): its
  logged samples (:attr:`SeriesKind.SAMPLES`). A meter's interval points are served from their
  intervals even when a raw rule also logs them.

Reads go to the configured backend (SQLite or InfluxDB) a page at a time; values still in the
historian's buffer (not yet forwarded) are not served. Reading history over OPC UA needs the
``history_export`` permission, as ``GET /api/v1/history`` does.
"""

from __future__ import annotations

import logging

from historian import Historian
from historian.records import REGISTERS
from historian.series import SeriesPage, interval_point, read_interval_series, read_raw_series
from protocols.opcua import Caller, SeriesKind
from scada.users.auth import Permission, UserInfo, UserStore
from tags import DataType, TagDB, names

__all__ = ["HistorianSource"]

log = logging.getLogger(__name__)

_REGISTERS = frozenset(REGISTERS)


class HistorianSource:
    """:class:`protocols.opcua.HistorySource` over the running historian."""

    def __init__(self, historian: Historian, tagdb: TagDB, users: UserStore) -> None:
        self.historian = historian
        self.tagdb = tagdb
        self.users = users

    def kind(self, tag: str) -> SeriesKind | None:
        owner, point = names.split(tag)
        if owner and ":" not in owner and interval_point(point):
            return SeriesKind.INCREMENTS if point in _REGISTERS else SeriesKind.INTERVALS
        raw = self.historian.raw
        if raw and raw.matches(tag) and tag in self.tagdb and self.tagdb.meta(tag).data_type is not DataType.STRING:
            return SeriesKind.SAMPLES
        return None

    async def read(self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool, stat: str) -> SeriesPage:
        owner, point = names.split(tag)
        backend = self.historian.backend
        if owner and ":" not in owner and interval_point(point):
            if stat not in ("value", "min", "max"):
                raise ValueError(f"unknown statistic {stat!r}")
            return await read_interval_series(
                backend, owner, point, start_us, end_us, limit=limit, descending=descending, stat=stat,  # type: ignore[arg-type]
            )
        return await read_raw_series(backend, tag, start_us, end_us, limit=limit, descending=descending)

    async def allowed(self, caller: Caller) -> bool:
        if not isinstance(caller.principal, UserInfo):
            return False
        user = await self.users.get(caller.principal.name)  # read afresh: a role change applies at once
        return user is not None and user.can(Permission.HISTORY_EXPORT)
