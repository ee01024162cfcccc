"""HistoryRead served from the historian (OPC UA Part 11), instead of asyncua's history manager.

asyncua's manager reads its own storage, answers ``ReadProcessedDetails`` with
``Bad_NotImplemented``, ignores ``ReturnBounds`` and ``TimestampsToReturn`` and builds a
``DataValue`` object per value. :class:`HistoryAccess` takes its place (``iserver.history_manager``)
and reads through an injected :class:`HistorySource` (the runtime's historian), one page at a
time:

- **raw** (``ReadRawModifiedDetails``): forward (``StartTime < EndTime``, start included, end
  excluded) or backward (``StartTime > EndTime``); one-sided reads (only a start or only an end)
  with ``NumValuesPerNode``; ``ReturnBounds`` on two-sided reads (the value at or before the
  start and at or after the end, or ``Bad_BoundNotFound`` at that time); pages of at most
  ``NumValuesPerNode`` and at most :attr:`HistoryAccess.max_values` values, with continuation
  points; ``IsReadModified`` answers no modifications (the historian never rewrites a value).
- **processed** (``ReadProcessedDetails``): Average, Minimum, Maximum, Count, Interpolative and
  Delta over each processing interval from ``StartTime`` (0: one interval), one value per
  interval timed at its start, with Part 13's status codes: ``Bad_NoData`` for an interval
  without usable data (Count: 0), ``Uncertain_DataSubNormal`` when uncertain values went into it,
  the ``Calculated``/``Interpolated`` historian bits and ``Partial`` for a cut last interval.

Continuation points carry the read position and are signed with a per-server secret: nothing
is kept per session, a forged or foreign one is ``Bad_ContinuationPointInvalid``, and a restart
invalidates them. Values are encoded to the wire in bulk (numpy), not as a ``DataValue`` each.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
from asyncua import ua
from asyncua.common.utils import ServiceError

from .model import SeriesKind
from .sessions import CALLER, Caller

__all__ = [
    "AGGREGATES",
    "HistoryAccess",
    "HistoryPage",
    "HistorySource",
    "SeriesKind",
    "Stat",
    "define_history_nodes",
    "encode_history_data",
]

log = logging.getLogger(__name__)

S = ua.StatusCodes
Stat = Literal["value", "min", "max"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSPECIFIED = datetime(1601, 1, 2, tzinfo=UTC)  # DateTime MinValue (and anything before this day)
_MIN_US = 0  # the historian holds nothing before 1970 (InfluxDB cannot before 1677)
_MAX_US = int((datetime(2200, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(microseconds=1))
_EPOCH_TICKS = 116_444_736_000_000_000  # 1601-01-01 → 1970-01-01 in 100 ns ticks

# Part 8 StatusCode info bits for historical values (InfoType = DataValue)
_INFO = 0x0400
_CALCULATED = _INFO | 0x01
_INTERPOLATED = _INFO | 0x02
_PARTIAL = 0x04

_QUALITY_CODES = np.array([S.Bad, S.Uncertain, S.Good], dtype=np.uint32)  # stored quality 0/1/2


class HistoryPage(Protocol):
    """Values in read order: ``times_us`` (epoch µs), ``values`` (float64, NaN: none),
    ``quality`` (0 bad, 1 uncertain, 2 good); ``exhausted`` when nothing follows in the range,
    else ``resume_us`` is where the next page starts (inclusive, in read direction)."""

    times_us: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    exhausted: bool
    resume_us: int | None

    def __len__(self) -> int: ...


class HistorySource(Protocol):
    """Where the values come from (the runtime's historian)."""

    def kind(self, tag: str) -> SeriesKind | None:
        """The series kind of the variable fed by ``tag``, None when it is not historized."""

    async def read(
        self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool, stat: Stat
    ) -> HistoryPage:
        """At most ``limit`` values with ``start_us <= time < end_us``, oldest (or newest) first."""

    async def allowed(self, caller: Caller) -> bool:
        """Whether ``caller`` may read history."""


AGGREGATES: dict[int, str] = {
    ua.ObjectIds.AggregateFunction_Average: "Average",
    ua.ObjectIds.AggregateFunction_Minimum: "Minimum",
    ua.ObjectIds.AggregateFunction_Maximum: "Maximum",
    ua.ObjectIds.AggregateFunction_Count: "Count",
    ua.ObjectIds.AggregateFunction_Interpolative: "Interpolative",
    ua.ObjectIds.AggregateFunction_Delta: "Delta",
}


# -- wire encoding -------------------------------------------------------------------------------
def _ticks(times_us: np.ndarray) -> np.ndarray:
    return times_us.astype(np.int64) * 10 + _EPOCH_TICKS


def encode_history_data(
    times_us: np.ndarray,
    values: np.ndarray,
    status: np.ndarray,
    *,
    timestamps: ua.TimestampsToReturn,
    vtype: ua.VariantType = ua.VariantType.Double,
) -> bytes:
    """The binary body of a ``HistoryData``: its DataValues, value (Double or Int32; none where
    NaN), status code (left out when Good) and the timestamps asked for."""
    n = len(times_us)
    ticks = _ticks(times_us)
    ts_fields: list[tuple[str, str]] = []
    ts_mask = 0
    if timestamps in (ua.TimestampsToReturn.Source, ua.TimestampsToReturn.Both):
        ts_mask |= 0x04
        ts_fields.append(("src", "<i8"))
    if timestamps in (ua.TimestampsToReturn.Server, ua.TimestampsToReturn.Both):
        ts_mask |= 0x08
        ts_fields.append(("srv", "<i8"))
    value_fmt = "<f8" if vtype is ua.VariantType.Double else "<i4"
    has_value = ~np.isnan(values)
    with_status = bool(np.any(status))
    head = struct.pack("<i", n)
    if n and bool(has_value.all()):
        # the common case: one fixed-size record per value, built in one go
        fields = [("mask", "u1"), ("vtype", "u1"), ("value", value_fmt)]
        if with_status:
            fields.append(("status", "<u4"))
        fields += ts_fields
        rec = np.empty(n, dtype=np.dtype(fields))
        rec["mask"] = 0x01 | (0x02 if with_status else 0) | ts_mask
        rec["vtype"] = vtype.value
        rec["value"] = values if vtype is ua.VariantType.Double else values.astype(np.int32)
        if with_status:
            rec["status"] = status
        for name, _ in ts_fields:
            rec[name] = ticks
        return head + rec.tobytes()
    parts = [head]
    value_struct = struct.Struct("<Bd" if vtype is ua.VariantType.Double else "<Bi")
    for i in range(n):
        code = int(status[i])
        mask = ts_mask | (0x02 if code else 0) | (0x01 if has_value[i] else 0)
        row = [struct.pack("<B", mask)]
        if has_value[i]:
            v = float(values[i]) if vtype is ua.VariantType.Double else int(values[i])
            row.append(value_struct.pack(vtype.value, v))
        if code:
            row.append(struct.pack("<I", code))
        for _ in ts_fields:
            row.append(struct.pack("<q", int(ticks[i])))
        parts.append(b"".join(row))
    return b"".join(parts)


def _history_data(body: bytes, modified: bool = False) -> ua.ExtensionObject:
    type_id = ua.ObjectIds.HistoryModifiedData_Encoding_DefaultBinary if modified else ua.ObjectIds.HistoryData_Encoding_DefaultBinary
    return ua.ExtensionObject(TypeId=ua.NodeId(type_id), Body=body)


_EMPTY_DATA = struct.pack("<i", 0)
_EMPTY_MODIFIED = struct.pack("<ii", 0, 0)  # DataValues[] and ModificationInfos[], both empty


# -- continuation points -------------------------------------------------------------------------
class _Cursor(NamedTuple):
    op: int  # 1 raw, 2 processed
    pos: int  # raw: the next position (µs, inclusive in read direction); processed: next interval
    remaining: int  # raw one-sided reads: values still to return
    flags: int  # raw: _START_DONE, _DATA_DONE, _END_DONE


_RAW, _PROCESSED = 1, 2
_START_DONE, _DATA_DONE, _END_DONE = 0x01, 0x02, 0x04
_CP = struct.Struct("<BB8sqqB")
_CP_VERSION = 1
_MAC_LEN = 16


class _Continuations:
    """Stateless continuation points: the cursor, bound to the node, signed (HMAC-SHA256)."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)

    @staticmethod
    def _node(nodeid: ua.NodeId) -> bytes:
        return hashlib.sha256(nodeid.to_string().encode()).digest()[:8]

    def encode(self, nodeid: ua.NodeId, cursor: _Cursor) -> bytes:
        body = _CP.pack(_CP_VERSION, cursor.op, self._node(nodeid), cursor.pos, cursor.remaining, cursor.flags)
        return body + hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_LEN]

    def decode(self, nodeid: ua.NodeId, data: bytes, op: int) -> _Cursor | None:
        if len(data) != _CP.size + _MAC_LEN:
            return None
        body, mac = data[: _CP.size], data[_CP.size :]
        if not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_LEN]):
            return None
        version, cp_op, node, pos, remaining, flags = _CP.unpack(body)
        if version != _CP_VERSION or cp_op != op or node != self._node(nodeid):
            return None
        return _Cursor(cp_op, pos, remaining, flags)


# -- helpers ---------------------------------------------------------------------------------------
def _us(ts: datetime | None) -> int | None:
    """Epoch µs of a request's time; None when unspecified (DateTime MinValue)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts < _UNSPECIFIED:
        return None
    return min(max((ts - _EPOCH) // timedelta(microseconds=1), _MIN_US), _MAX_US)


@dataclass(slots=True)
class _Rows:
    """Values collected for one answer, in answer order."""

    times: list[np.ndarray]
    values: list[np.ndarray]
    status: list[np.ndarray]

    @classmethod
    def new(cls) -> _Rows:
        return cls([], [], [])

    def add(self, times: np.ndarray, values: np.ndarray, status: np.ndarray) -> None:
        if len(times):
            self.times.append(np.asarray(times, dtype=np.int64))
            self.values.append(np.asarray(values, dtype=np.float64))
            self.status.append(np.asarray(status, dtype=np.uint32))

    def add_one(self, t: int, value: float, code: int) -> None:
        self.add(np.array([t]), np.array([value]), np.array([code]))

    def __len__(self) -> int:
        return sum(len(t) for t in self.times)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.times:
            return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint32)
        return np.concatenate(self.times), np.concatenate(self.values), np.concatenate(self.status)


def _codes(page: HistoryPage) -> np.ndarray:
    quality = np.clip(np.asarray(page.quality, dtype=np.int64), 0, 2)
    codes = _QUALITY_CODES[quality]
    # a value that is not a number is no value: bad (Part 4 §7.7)
    return np.where(np.isnan(page.values), np.uint32(S.Bad), codes).astype(np.uint32)


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(hex(code))
        self.code = code


# -- the service -----------------------------------------------------------------------------------
class HistoryAccess:
    """asyncua's ``history_manager`` interface (``init``, ``read_history``, ``update_history``,
    ``stop``), reading from ``source``. ``tag_of(nodeid)`` names the tag behind one of our
    variables (None: not ours); ``exists(nodeid)`` says whether a node exists at all."""

    def __init__(
        self,
        source: HistorySource | None,
        *,
        tag_of: Any,
        exists: Any,
        max_values: int = 10_000,
        max_rows: int = 2_000_000,
        max_nodes: int = 1_000,
    ) -> None:
        self.source = source
        self.tag_of = tag_of
        self.exists = exists
        self.max_values = max_values
        self.max_rows = max_rows
        self.max_nodes = max_nodes
        self._cps = _Continuations()
        self.values_sent = 0

    async def init(self) -> None:
        return None  # asyncua's interface; nothing to prepare

    async def stop(self) -> None:
        return None  # the source belongs to the runtime

    def update_history(self, params: ua.HistoryUpdateParameters) -> list[ua.HistoryUpdateResult]:
        # the session gate refuses HistoryUpdate before it gets here; answer alike if it does
        return [ua.HistoryUpdateResult(StatusCode=ua.StatusCode(S.BadHistoryOperationUnsupported)) for _ in params.HistoryUpdateDetails]

    async def read_history(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        details = params.HistoryReadDetails
        ts_mode = params.TimestampsToReturn
        if ts_mode not in (ua.TimestampsToReturn.Source, ua.TimestampsToReturn.Server, ua.TimestampsToReturn.Both):
            raise ServiceError(S.BadTimestampsToReturnInvalid)
        nodes = params.NodesToRead
        if not nodes:
            raise ServiceError(S.BadNothingToDo)
        if len(nodes) > self.max_nodes:
            raise ServiceError(S.BadTooManyOperations)
        if isinstance(details, ua.ReadProcessedDetails) and len(details.AggregateType) != len(nodes):
            raise ServiceError(S.BadAggregateListMismatch)
        if not isinstance(details, (ua.ReadRawModifiedDetails, ua.ReadProcessedDetails, ua.ReadAtTimeDetails, ua.ReadEventDetails)):
            raise ServiceError(S.BadHistoryOperationInvalid)
        caller = CALLER.get() or Caller(None, "anonymous", "internal", "None")
        allowed: bool | None = None
        results: list[ua.HistoryReadResult] = []
        for index, rv in enumerate(nodes):
            tag = self.tag_of(rv.NodeId)
            kind = self.source.kind(tag) if tag is not None and self.source is not None else None
            if kind is None:
                code = S.BadHistoryOperationUnsupported if self.exists(rv.NodeId) else S.BadNodeIdUnknown
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(code)))
                continue
            assert tag is not None and self.source is not None
            if allowed is None:
                allowed = await self.source.allowed(caller)
            if not allowed:
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(S.BadUserAccessDenied)))
                continue
            try:
                results.append(await self._read_node(tag, kind, rv, details, index, params, ts_mode))
            except _Refused as refused:
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(refused.code)))
            except Exception as exc:
                log.warning("history read failed", extra={"tag": tag, "error": repr(exc)})
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(S.BadDataUnavailable)))
        return results

    async def _read_node(
        self, tag: str, kind: SeriesKind, rv: ua.HistoryReadValueId, details: Any, index: int,
        params: ua.HistoryReadParameters, ts_mode: ua.TimestampsToReturn,
    ) -> ua.HistoryReadResult:
        op = _PROCESSED if isinstance(details, ua.ReadProcessedDetails) else _RAW
        cursor = None
        if rv.ContinuationPoint:
            cursor = self._cps.decode(rv.NodeId, rv.ContinuationPoint, op)
            if cursor is None:
                raise _Refused(S.BadContinuationPointInvalid)
        if params.ReleaseContinuationPoints:
            return ua.HistoryReadResult()  # nothing is held for a continuation point: nothing to free
        if isinstance(details, ua.ReadRawModifiedDetails):
            if details.IsReadModified:
                # values are only ever written once: there are no modifications to report
                return ua.HistoryReadResult(HistoryData=_history_data(_EMPTY_MODIFIED, modified=True))
            return await self._raw(tag, kind, rv.NodeId, details, cursor, ts_mode)
        if isinstance(details, ua.ReadProcessedDetails):
            return await self._processed(tag, kind, rv.NodeId, details, details.AggregateType[index], cursor, ts_mode)
        raise _Refused(S.BadHistoryOperationUnsupported)  # at-time reads and event history

    # -- raw -------------------------------------------------------------------------------------
    async def _one(self, tag: str, lo: int, hi: int, *, descending: bool) -> tuple[int, float, int] | None:
        """The first value of ``[lo, hi)`` in read direction, with its status code."""
        if hi <= lo:
            return None
        page = await self.source.read(tag, lo, hi, limit=1, descending=descending, stat="value")  # type: ignore[union-attr]
        if not len(page):
            return None
        return int(page.times_us[0]), float(page.values[0]), int(_codes(page)[0])

    async def _raw(
        self, tag: str, kind: SeriesKind, nodeid: ua.NodeId, d: ua.ReadRawModifiedDetails, cursor: _Cursor | None,
        ts_mode: ua.TimestampsToReturn,
    ) -> ua.HistoryReadResult:
        start, end = _us(d.StartTime), _us(d.EndTime)
        n = int(d.NumValuesPerNode)
        if start is None and end is None:
            raise _Refused(S.BadHistoryOperationInvalid)
        one_sided = start is None or end is None
        if one_sided and n == 0:
            raise _Refused(S.BadHistoryOperationInvalid)  # an open range needs a number of values
        descending = start is None or (end is not None and start > end)
        # the read window [lo, hi) and the time the end bound is looked for at
        if not descending:
            assert start is not None
            lo, hi = start, (end if end is not None else _MAX_US)
            if end is not None and end == start:
                hi = start + 1  # start == end: the value at that time
        elif start is None:
            assert end is not None
            lo, hi = _MIN_US, end + 1
        else:
            assert end is not None
            lo, hi = end + 1, start + 1
        bounds = bool(d.ReturnBounds) and not one_sided
        if cursor is None:
            cursor = _Cursor(_RAW, hi - 1 if descending else lo, n if one_sided else 0, 0)
        room = min(self.max_values, n) if n else self.max_values
        if one_sided:
            room = min(room, cursor.remaining)
        pos, flags = cursor.pos, cursor.flags
        rows = _Rows.new()
        source = self.source
        assert source is not None

        if bounds and not flags & _START_DONE:
            assert start is not None
            # the value at the start, or the closest one outside the range
            if descending:
                found = await self._one(tag, start, _MAX_US, descending=False)
            else:
                found = await self._one(tag, _MIN_US, start + 1, descending=True)
            if found is None:
                rows.add_one(start, math.nan, S.BadBoundNotFound)
            elif found[0] != start:  # at the start it is the first value of the range itself
                rows.add_one(*found)
            flags |= _START_DONE

        if not flags & _DATA_DONE and len(rows) < room:
            want = room - len(rows)
            if descending:
                page = await source.read(tag, lo, pos + 1, limit=want + 1, descending=True, stat="value")
            else:
                page = await source.read(tag, pos, hi, limit=want + 1, descending=False, stat="value")
            take = min(len(page), want)
            rows.add(page.times_us[:take], page.values[:take], _codes(page)[:take])
            if len(page) > want:
                pos = int(page.times_us[want])
            elif not page.exhausted and page.resume_us is not None:
                pos = int(page.resume_us)
            else:
                flags |= _DATA_DONE

        end_pending = bounds and bool(flags & _DATA_DONE) and not flags & _END_DONE
        if end_pending and len(rows) < room:
            assert end is not None
            if descending:
                found = await self._one(tag, _MIN_US, end + 1, descending=True)
            else:
                found = await self._one(tag, end, _MAX_US, descending=False)
            rows.add_one(*(found if found is not None else (end, math.nan, S.BadBoundNotFound)))
            flags |= _END_DONE
        done = bool(flags & _DATA_DONE) and (not bounds or bool(flags & _END_DONE))
        remaining = cursor.remaining - len(rows) if one_sided else 0
        if one_sided and remaining <= 0:
            done = True
        times, values, status = rows.arrays()
        body = encode_history_data(times, values, status, timestamps=ts_mode)
        self.values_sent += len(times)
        cp = None if done else self._cps.encode(nodeid, _Cursor(_RAW, pos, remaining, flags))
        return ua.HistoryReadResult(ContinuationPoint=cp, HistoryData=_history_data(body))

    # -- processed -------------------------------------------------------------------------------
    async def _collect(self, tag: str, lo: int, hi: int, stat: Stat) -> HistoryPage | None:
        """Every value of ``[lo, hi)`` in time order (None: more than ``max_rows``)."""
        source = self.source
        assert source is not None
        parts: list[HistoryPage] = []
        total = 0
        pos = lo
        while pos < hi:
            page = await source.read(tag, pos, hi, limit=min(100_000, self.max_rows + 1), descending=False, stat=stat)
            parts.append(page)
            total += len(page)
            if total > self.max_rows:
                return None
            if page.exhausted or page.resume_us is None:
                break
            pos = int(page.resume_us)
        return _Series.join(parts)

    async def _processed(
        self, tag: str, kind: SeriesKind, nodeid: ua.NodeId, d: ua.ReadProcessedDetails, aggregate: ua.NodeId,
        cursor: _Cursor | None, ts_mode: ua.TimestampsToReturn,
    ) -> ua.HistoryReadResult:
        name = AGGREGATES.get(aggregate.Identifier) if aggregate.NamespaceIndex == 0 and isinstance(aggregate.Identifier, int) else None
        if name is None:
            raise _Refused(S.BadAggregateNotSupported)
        start, end = _us(d.StartTime), _us(d.EndTime)
        if start is None or end is None or start == end:
            raise _Refused(S.BadHistoryOperationInvalid)
        if start > end:
            raise _Refused(S.BadHistoryOperationUnsupported)  # backward processing is not offered
        interval_ms = float(d.ProcessingInterval)
        if not math.isfinite(interval_ms) or interval_ms < 0:
            raise _Refused(S.BadHistoryOperationInvalid)
        interval = round(interval_ms * 1000) or (end - start)
        total = -(-(end - start) // interval)
        first = cursor.pos if cursor is not None else 0
        if not 0 <= first < total:
            raise _Refused(S.BadContinuationPointInvalid)
        count = min(total - first, self.max_values)
        edges = np.minimum(start + interval * np.arange(first, first + count + 1, dtype=np.int64), end)
        config = d.AggregateConfiguration
        uncertain_is_bad = bool(config.TreatUncertainAsBad) and not config.UseServerCapabilitiesDefaults
        stat: Stat = "value"
        if kind is SeriesKind.INTERVALS and name in ("Minimum", "Maximum"):
            stat = "min" if name == "Minimum" else "max"
        series = await self._collect(tag, int(edges[0]), int(edges[-1]), stat)
        if series is None:
            raise _Refused(S.BadResponseTooLarge)
        prior = following = None
        if name == "Interpolative":
            prior = await self._one(tag, _MIN_US, int(edges[0]), descending=True)
            following = await self._one(tag, int(edges[-1]), _MAX_US, descending=False)
        values, status = _aggregate(name, kind, series, edges, interval, uncertain_is_bad, prior, following)
        vtype = ua.VariantType.Int32 if name == "Count" else ua.VariantType.Double
        body = encode_history_data(edges[:-1], values, status, timestamps=ts_mode, vtype=vtype)
        self.values_sent += count
        cp = self._cps.encode(nodeid, _Cursor(_PROCESSED, first + count, 0, 0)) if first + count < total else None
        return ua.HistoryReadResult(ContinuationPoint=cp, HistoryData=_history_data(body))


@dataclass(slots=True)
class _Series:
    times_us: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    exhausted: bool = True
    resume_us: int | None = None

    def __len__(self) -> int:
        return len(self.times_us)

    @classmethod
    def join(cls, pages: list[HistoryPage]) -> _Series:
        if not pages:
            return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8))
        return cls(
            np.concatenate([np.asarray(p.times_us, dtype=np.int64) for p in pages]),
            np.concatenate([np.asarray(p.values, dtype=np.float64) for p in pages]),
            np.concatenate([np.asarray(p.quality, dtype=np.uint8) for p in pages]),
        )


def _aggregate(
    name: str,
    kind: SeriesKind,
    series: HistoryPage,
    edges: np.ndarray,
    interval: int,
    uncertain_is_bad: bool,
    prior: tuple[int, float, int] | None,
    following: tuple[int, float, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One value and status code per interval ``[edges[k], edges[k+1])`` (Part 13)."""
    count = len(edges) - 1
    quality = np.asarray(series.quality, dtype=np.int64)
    values = np.asarray(series.values, dtype=np.float64)
    usable = ~np.isnan(values) & ((quality == 2) | ((quality == 1) & (not uncertain_is_bad)))
    t = np.asarray(series.times_us, dtype=np.int64)[usable]
    v = values[usable]
    unc = (quality[usable] == 1).astype(np.int64)
    if name == "Interpolative":
        return _interpolative(t, v, unc, edges[:-1], prior, following, uncertain_is_bad)
    idx = np.searchsorted(t, edges, side="left")
    n = np.diff(idx)
    cum_unc = np.concatenate(([0], np.cumsum(unc)))
    uncertain = (cum_unc[idx[1:]] - cum_unc[idx[:-1]]) > 0
    partial = np.zeros(count, dtype=bool)
    partial[-1] = (edges[-1] - edges[-2]) < interval
    base = np.where(uncertain, np.uint32(S.UncertainDataSubNormal), np.uint32(S.Good)).astype(np.uint32)
    status = base | np.uint32(_CALCULATED) | np.where(partial, np.uint32(_PARTIAL), np.uint32(0))
    empty = n == 0
    out = np.full(count, np.nan)
    if name == "Count":
        return n.astype(np.float64), (np.uint32(S.Good) | np.uint32(_CALCULATED) | np.where(partial, np.uint32(_PARTIAL), np.uint32(0))).astype(np.uint32)
    if len(v):
        cum = np.concatenate(([0.0], np.cumsum(v)))
        sums = cum[idx[1:]] - cum[idx[:-1]]
        starts = np.clip(idx[:-1], 0, len(v) - 1)
        lasts = np.clip(idx[1:] - 1, 0, len(v) - 1)
        if name == "Average":
            out = np.where(empty, np.nan, sums / np.where(empty, 1, n))
        elif name in ("Minimum", "Maximum"):
            # reduceat over the starts of the intervals that have values: each segment then runs
            # to the next such start, i.e. exactly over its own interval
            ufunc = np.minimum if name == "Minimum" else np.maximum
            filled = ~empty
            out = np.full(count, np.nan)
            out[filled] = ufunc.reduceat(v, idx[:-1][filled])
        elif name == "Delta":
            if kind is SeriesKind.INCREMENTS:
                out = np.where(empty, np.nan, sums)  # the register's advance: its increments added up
            else:
                out = np.where(empty, np.nan, v[lasts] - v[starts])
    status = np.where(empty, np.uint32(S.BadNoData), status).astype(np.uint32)
    out = np.where(empty, np.nan, out)
    return out, status


def _interpolative(
    t: np.ndarray, v: np.ndarray, unc: np.ndarray, at: np.ndarray,
    prior: tuple[int, float, int] | None, following: tuple[int, float, int] | None, uncertain_is_bad: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The value at each interval start: the stored value there, else linear between the usable
    values around it, else the last one held (extrapolated: uncertain), else ``Bad_NoData``."""

    def usable(p: tuple[int, float, int] | None) -> bool:
        return p is not None and not math.isnan(p[1]) and (p[2] == S.Good or (p[2] == S.Uncertain and not uncertain_is_bad))

    if usable(prior):
        assert prior is not None
        t = np.concatenate(([prior[0]], t))
        v = np.concatenate(([prior[1]], v))
        unc = np.concatenate(([int(prior[2] != S.Good)], unc))
    if usable(following):
        assert following is not None
        t = np.concatenate((t, [following[0]]))
        v = np.concatenate((v, [following[1]]))
        unc = np.concatenate((unc, [int(following[2] != S.Good)]))
    out = np.full(len(at), np.nan)
    status = np.full(len(at), S.BadNoData, dtype=np.uint32)
    if not len(t):
        return out, status
    right = np.searchsorted(t, at, side="right")  # t[right-1] <= at < t[right]
    for k, a in enumerate(at):
        j = int(right[k])
        if j == 0:
            continue  # nothing at or before this time
        t0, v0, u0 = int(t[j - 1]), float(v[j - 1]), bool(unc[j - 1])
        if t0 == a:
            out[k] = v0
            status[k] = (S.UncertainDataSubNormal if u0 else S.Good) | _INFO
        elif j < len(t):
            t1, v1, u1 = int(t[j]), float(v[j]), bool(unc[j])
            out[k] = v0 + (v1 - v0) * (int(a) - t0) / (t1 - t0)
            status[k] = (S.UncertainDataSubNormal if (u0 or u1) else S.Good) | _INTERPOLATED
        else:
            out[k] = v0  # no later value: held from the last one
            status[k] = S.UncertainDataSubNormal | _INTERPOLATED
    return out, status


# -- the address space's side ------------------------------------------------------------------------
_DEFINITIONS = {
    SeriesKind.INCREMENTS: (
        "IntervalConsumption",
        "The register's consumption in each stored interval (kWh, m³), timed at the interval start: the "
        "historian's interval records. Delta over a processing interval is the consumption in it.",
    ),
    SeriesKind.INTERVALS: (
        "IntervalAverages",
        "The average of the good samples in each stored interval, timed at the interval start; Minimum and "
        "Maximum use the interval minima and maxima.",
    ),
    SeriesKind.SAMPLES: (
        "LoggedSamples",
        "The samples kept by raw logging ([[historian.raw]]), with the quality they had.",
    ),
}


async def define_history_nodes(server: Any, ns: int, *, max_values: int) -> dict[SeriesKind, ua.NodeId]:
    """The server's history capabilities (raw and processed data, the aggregates offered, no
    updates) and one ``HistoricalDataConfiguration`` per :class:`SeriesKind`, shared by every
    variable of that kind, under ``Server/ServerCapabilities/HistoryServerCapabilities``."""
    ids = ua.ObjectIds

    async def write(node_id: int, value: Any, vtype: ua.VariantType) -> None:
        await server.write_attribute_value(ua.NodeId(node_id), ua.DataValue(ua.Variant(value, vtype)))

    caps = {
        ids.HistoryServerCapabilities_AccessHistoryDataCapability: True,
        ids.HistoryServerCapabilities_AccessHistoryEventsCapability: False,
        ids.HistoryServerCapabilities_InsertDataCapability: False,
        ids.HistoryServerCapabilities_ReplaceDataCapability: False,
        ids.HistoryServerCapabilities_UpdateDataCapability: False,
        ids.HistoryServerCapabilities_DeleteRawCapability: False,
        ids.HistoryServerCapabilities_DeleteAtTimeCapability: False,
        ids.HistoryServerCapabilities_InsertEventCapability: False,
        ids.HistoryServerCapabilities_ReplaceEventCapability: False,
        ids.HistoryServerCapabilities_UpdateEventCapability: False,
        ids.HistoryServerCapabilities_DeleteEventCapability: False,
        ids.HistoryServerCapabilities_InsertAnnotationCapability: False,
        ids.HistoryServerCapabilities_ServerTimestampSupported: False,
    }
    for node_id, flag in caps.items():
        await write(node_id, flag, ua.VariantType.Boolean)
    await write(ids.HistoryServerCapabilities_MaxReturnDataValues, max_values, ua.VariantType.UInt32)
    await write(ids.HistoryServerCapabilities_MaxReturnEventValues, 0, ua.VariantType.UInt32)
    organizes = ua.NodeId(ids.Organizes)
    for folder in (ids.HistoryServerCapabilities_AggregateFunctions, ids.Server_ServerCapabilities_AggregateFunctions):
        node = server.get_node(ua.NodeId(folder))
        for aggregate in AGGREGATES:
            await node.add_reference(ua.NodeId(aggregate), organizes, forward=True, bidirectional=False)
    parent = server.get_node(ua.NodeId(ids.HistoryServerCapabilities))
    out: dict[SeriesKind, ua.NodeId] = {}
    for kind, (name, definition) in _DEFINITIONS.items():
        nodeid = ua.NodeId(f"history:{kind.value}", ns)
        config = await parent.add_object(nodeid, ua.QualifiedName(name, ns), objecttype=ids.HistoricalDataConfigurationType)
        stepped = await config.get_child(["0:Stepped"])
        await stepped.write_value(ua.Variant(False, ua.VariantType.Boolean))
        agg = await config.get_child(["0:AggregateConfiguration"])
        for prop, value, vtype in (
            ("TreatUncertainAsBad", False, ua.VariantType.Boolean),
            ("PercentDataBad", 100, ua.VariantType.Byte),
            ("PercentDataGood", 100, ua.VariantType.Byte),
            ("UseSlopedExtrapolation", False, ua.VariantType.Boolean),
        ):
            await (await agg.get_child([f"0:{prop}"])).write_value(ua.Variant(value, vtype))
        # asyncua instantiates the optional members too: fill in those that say something
        await (await config.get_child(["0:Definition"])).write_value(ua.Variant(definition, ua.VariantType.String))
        await (await config.get_child(["0:ServerTimestampSupported"])).write_value(ua.Variant(False, ua.VariantType.Boolean))
        functions = await config.get_child(["0:AggregateFunctions"])
        for aggregate in AGGREGATES:
            await functions.add_reference(ua.NodeId(aggregate), organizes, forward=True, bidirectional=False)
        out[kind] = nodeid
    return out
