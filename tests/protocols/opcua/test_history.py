"""HistoryRead served by :class:`HistoryAccess` from a history source, read by a client on a real
socket (asyncua's client; node-opcua reads the historian end to end in tests/scada): historized
variables and their configuration, raw reads forward and backward with bounds and continuation
points, processed aggregates with Part 13's status codes, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.opcua import Caller, OpcUaConfig, OpcUaServer, SeriesKind, SiteSpec
from protocols.opcua.history import encode_history_data

from .conftest import Recorder, small_site

# one server for the module: the reads change nothing (a test that denies access undoes it)
pytestmark = pytest.mark.asyncio(loop_scope="module")

S = ua.StatusCodes
T0 = datetime(2026, 3, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN = 60_000_000  # µs


def us(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


@dataclass
class Page:
    times_us: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    exhausted: bool
    resume_us: int | None = None

    def __len__(self) -> int:
        return len(self.times_us)


class MemorySource:
    """Series held in memory, read the way the historian reads them (pages, either direction)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.kinds: dict[str, SeriesKind] = {}
        self.deny: set[str] = set()
        self.reads = 0

    def put(self, tag: str, kind: SeriesKind, times: list[datetime], values: list[float], quality: list[int] | None = None,
            stat: str = "value") -> None:
        self.kinds[tag] = kind
        q = quality if quality is not None else [2] * len(values)
        self.series[(tag, stat)] = (np.array([us(t) for t in times], dtype=np.int64), np.array(values, dtype=float), np.array(q, dtype=np.uint8))

    def kind(self, tag: str) -> SeriesKind | None:
        return self.kinds.get(tag)

    async def read(self, tag: str, start_us: int, end_us: int, *, limit: int, descending: bool, stat: str) -> Page:
        self.reads += 1
        times, values, quality = self.series.get((tag, stat)) or self.series[(tag, "value")]
        sel = (times >= start_us) & (times < end_us)
        t, v, q = times[sel], values[sel], quality[sel]
        if descending:
            t, v, q = t[::-1], v[::-1], q[::-1]
        full = len(t) > limit
        t, v, q = t[:limit], v[:limit], q[:limit]
        resume = (int(t[-1]) - 1 if descending else int(t[-1]) + 1) if full else None
        return Page(t, v, q, not full, resume)

    async def allowed(self, caller: Caller) -> bool:
        return caller.name not in self.deny


E = "E-B1-R101"
ENERGY, POWER, BALANCE = f"{E}.energy_total", f"{E}.power", "room:B1-R101.balance"


def historized_site() -> SiteSpec:
    site = small_site()
    meter = site.meters[E]
    kinds = {ENERGY: SeriesKind.INCREMENTS, POWER: SeriesKind.INTERVALS}
    site.meters[E] = replace(meter, points=tuple(replace(p, history=kinds.get(p.tag)) for p in meter.points))
    room = site.rooms["B1-R101"]
    site.rooms["B1-R101"] = replace(room, points=tuple(replace(p, history=SeriesKind.SAMPLES if p.tag == BALANCE else None) for p in room.points))
    return site


@pytest.fixture(scope="module")
def source() -> MemorySource:
    src = MemorySource()
    # 15-minute consumption, one per interval for 2 hours; the 5th interval has a gap flag
    times = [T0 + timedelta(minutes=15 * i) for i in range(8)]
    src.put(ENERGY, SeriesKind.INCREMENTS, times, [0.25 * (i + 1) for i in range(8)], [2, 2, 2, 2, 1, 2, 2, 2])
    src.put(POWER, SeriesKind.INTERVALS, times, [float(i) for i in range(8)])
    src.put(POWER, SeriesKind.INTERVALS, times, [float(i) - 0.5 for i in range(8)], stat="min")
    src.put(POWER, SeriesKind.INTERVALS, times, [float(i) + 0.5 for i in range(8)], stat="max")
    # samples at irregular times, one bad
    samples = [T0 + timedelta(minutes=m) for m in (0, 7, 20, 41, 45, 70)]
    src.put(BALANCE, SeriesKind.SAMPLES, samples, [100.0, 98.0, 95.0, float("nan"), 90.0, 80.0], [2, 2, 2, 0, 2, 1])
    return src


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hserver(tmp_path_factory: pytest.TempPathFactory, source: MemorySource) -> AsyncIterator[OpcUaServer]:
    tmp_path: Path = tmp_path_factory.mktemp("history")
    config = OpcUaConfig(port=0, security=["None", "Basic256Sha256_SignAndEncrypt"], allow_anonymous=True,
                         application_uri="urn:test:scada", history_max_values=100)
    hooks = replace(Recorder().hooks(), history=source)
    srv = OpcUaServer(config, pki_dir=tmp_path / "pki", hooks=hooks)
    await srv.start()
    try:
        await srv.sync(historized_site(), lambda _tag: None)
        yield srv
    finally:
        await srv.stop()


def raw(start: datetime | None, end: datetime | None, n: int = 0, bounds: bool = False) -> ua.ReadRawModifiedDetails:
    d = ua.ReadRawModifiedDetails()
    d.IsReadModified = False
    d.StartTime = start or ua.get_win_epoch()
    d.EndTime = end or ua.get_win_epoch()
    d.NumValuesPerNode = n
    d.ReturnBounds = bounds
    return d


def processed(start: datetime, end: datetime, interval_s: float, aggregate: int) -> ua.ReadProcessedDetails:
    d = ua.ReadProcessedDetails()
    d.StartTime, d.EndTime, d.ProcessingInterval = start, end, interval_s * 1000
    d.AggregateType = [ua.NodeId(aggregate)]
    d.AggregateConfiguration = ua.AggregateConfiguration(UseServerCapabilitiesDefaults=True)
    return d


async def read(client: Client, ns: int, tag: str, details: object, cp: bytes | None = None,
               timestamps: ua.TimestampsToReturn = ua.TimestampsToReturn.Both, release: bool = False) -> ua.HistoryReadResult:
    params = ua.HistoryReadParameters()
    params.HistoryReadDetails = details
    params.TimestampsToReturn = timestamps
    params.ReleaseContinuationPoints = release
    params.NodesToRead.append(ua.HistoryReadValueId(NodeId=ua.NodeId(tag, ns), ContinuationPoint=cp))
    return (await client.uaclient.history_read(params))[0]


async def read_all(client: Client, ns: int, tag: str, details: object) -> tuple[list[ua.DataValue], int]:
    """Every page; returns the values and the number of requests."""
    out: list[ua.DataValue] = []
    cp, calls = None, 0
    while True:
        result = await read(client, ns, tag, details, cp)
        calls += 1
        assert result.StatusCode.is_good(), result.StatusCode
        out += result.HistoryData.DataValues
        cp = result.ContinuationPoint
        if not cp:
            return out, calls


def pairs(values: list[ua.DataValue]) -> list[tuple[datetime, float | None, int]]:
    return [(dv.SourceTimestamp, dv.Value.Value, dv.StatusCode.value) for dv in values]


async def test_historized_variables_carry_access_level_and_configuration(hserver: OpcUaServer) -> None:
    ns = hserver.ns
    async with Client(hserver.url) as client:
        energy = client.get_node(ua.NodeId(ENERGY, ns))
        assert await energy.read_attribute(ua.AttributeIds.Historizing) is not None
        assert (await energy.read_attribute(ua.AttributeIds.Historizing)).Value.Value is True
        level = (await energy.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
        assert level & ua.AccessLevel.HistoryRead.mask and level & ua.AccessLevel.CurrentRead.mask
        configs = await energy.get_referenced_nodes(ua.ObjectIds.HasHistoricalConfiguration)
        assert [c.nodeid for c in configs] == [ua.NodeId("history:increments", ns)]
        definition = await (await configs[0].get_child(["0:Definition"])).read_value()
        assert "consumption in each stored interval" in definition
        assert await (await configs[0].get_child(["0:Stepped"])).read_value() is False
        voltage = client.get_node(ua.NodeId(f"{E}.voltage", ns))
        assert (await voltage.read_attribute(ua.AttributeIds.Historizing)).Value.Value is False
        assert (await voltage.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value == ua.AccessLevel.CurrentRead.mask
        # the server says what it offers
        caps = client.get_node(ua.NodeId(ua.ObjectIds.HistoryServerCapabilities_AccessHistoryDataCapability))
        assert await caps.read_value() is True
        assert await client.get_node(ua.NodeId(ua.ObjectIds.HistoryServerCapabilities_MaxReturnDataValues)).read_value() == 100
        functions = client.get_node(ua.NodeId(ua.ObjectIds.HistoryServerCapabilities_AggregateFunctions))
        names = {(await n.read_browse_name()).Name for n in await functions.get_children()}
        assert names == {"Average", "Minimum", "Maximum", "Count", "Interpolative", "Delta"}
        # not historized, unknown
        result = await read(client, ns, f"{E}.voltage", raw(T0, T0 + timedelta(hours=1)))
        assert result.StatusCode.value == S.BadHistoryOperationUnsupported
        result = await read(client, ns, "E-none.energy_total", raw(T0, T0 + timedelta(hours=1)))
        assert result.StatusCode.value == S.BadNodeIdUnknown


async def test_raw_forward_pages_bounds_and_backward(hserver: OpcUaServer, source: MemorySource) -> None:
    ns = hserver.ns
    async with Client(hserver.url) as client:
        # [T0+15, T0+90): 5 values in pages of 2, continuation points between them
        values, calls = await read_all(client, ns, ENERGY, raw(T0 + timedelta(minutes=15), T0 + timedelta(minutes=90), n=2))
        assert calls == 3
        assert pairs(values) == [
            (T0 + timedelta(minutes=15 * i), 0.25 * (i + 1), S.Uncertain if i == 4 else S.Good) for i in range(1, 6)
        ]
        # bounds: the value at or before the start and at or after the end
        start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=44)
        values, _ = await read_all(client, ns, BALANCE, raw(start, end, bounds=True))
        assert pairs(values)[0] == (T0 + timedelta(minutes=7), 98.0, S.Good)  # the start bound
        assert pairs(values)[1] == (T0 + timedelta(minutes=20), 95.0, S.Good)
        assert values[2].StatusCode.value == S.Bad and values[2].Value.Value is None  # stored as bad
        assert pairs(values)[3] == (T0 + timedelta(minutes=45), 90.0, S.Good)  # the end bound
        assert len(values) == 4
        # no value before the start: Bad_BoundNotFound at the start time
        values, _ = await read_all(client, ns, BALANCE, raw(T0 - timedelta(hours=1), T0 + timedelta(minutes=1), bounds=True))
        assert (values[0].SourceTimestamp, values[0].StatusCode.value) == (T0 - timedelta(hours=1), S.BadBoundNotFound)
        assert pairs(values)[1] == (T0, 100.0, S.Good)
        # backward (start after end): newest first, the start included, the end not
        values, _ = await read_all(client, ns, ENERGY, raw(T0 + timedelta(minutes=45), T0 + timedelta(minutes=15)))
        assert [dv.SourceTimestamp for dv in values] == [T0 + timedelta(minutes=m) for m in (45, 30)]
        # one-sided: 3 values from a start, 2 back from an end, paged by the server's limit
        values, _ = await read_all(client, ns, ENERGY, raw(T0 + timedelta(minutes=20), None, n=3))
        assert [dv.SourceTimestamp for dv in values] == [T0 + timedelta(minutes=m) for m in (30, 45, 60)]
        values, _ = await read_all(client, ns, ENERGY, raw(None, T0 + timedelta(minutes=20), n=5))
        assert [dv.SourceTimestamp for dv in values] == [T0 + timedelta(minutes=m) for m in (15, 0)]
        # only the timestamps asked for
        result = await read(client, ns, ENERGY, raw(T0, T0 + timedelta(minutes=20)), timestamps=ua.TimestampsToReturn.Server)
        assert [(dv.SourceTimestamp, dv.ServerTimestamp) for dv in result.HistoryData.DataValues] == [(None, T0), (None, T0 + timedelta(minutes=15))]


async def test_continuation_points_are_checked_and_released(hserver: OpcUaServer) -> None:
    ns = hserver.ns
    async with Client(hserver.url) as client:
        details = raw(T0, T0 + timedelta(hours=3), n=3)
        first = await read(client, ns, ENERGY, details)
        cp = first.ContinuationPoint
        assert cp and len(first.HistoryData.DataValues) == 3
        forged = cp[:-1] + bytes([cp[-1] ^ 1])
        assert (await read(client, ns, ENERGY, details, forged)).StatusCode.value == S.BadContinuationPointInvalid
        assert (await read(client, ns, POWER, details, cp)).StatusCode.value == S.BadContinuationPointInvalid  # another node's
        released = await read(client, ns, ENERGY, details, cp, release=True)
        assert released.StatusCode.is_good() and not released.ContinuationPoint
        second = await read(client, ns, ENERGY, details, cp)  # nothing is held: the point still reads on
        assert second.HistoryData.DataValues[0].SourceTimestamp == T0 + timedelta(minutes=45)
        # a modified read: the historian never rewrites a value
        modified = raw(T0, T0 + timedelta(hours=3))
        modified.IsReadModified = True
        result = await read(client, ns, ENERGY, modified)
        assert result.StatusCode.is_good() and result.HistoryData.DataValues == []
        # Neither timestamp is no way to read history
        with pytest.raises(UaStatusCodeError) as fault:
            await read(client, ns, ENERGY, details, timestamps=ua.TimestampsToReturn.Neither)
        assert fault.value.code == S.BadTimestampsToReturnInvalid


async def test_processed_aggregates_and_status_codes(hserver: OpcUaServer) -> None:
    ns = hserver.ns
    F = ua.ObjectIds
    good_calc = S.Good | 0x0401
    async with Client(hserver.url) as client:

        async def agg(tag: str, aggregate: int, start: datetime, end: datetime, interval_s: float) -> list[tuple[datetime, float | None, int]]:
            result = await read(client, ns, tag, processed(start, end, interval_s, aggregate))
            assert result.StatusCode.is_good(), result.StatusCode
            return pairs(result.HistoryData.DataValues)

        hour0, hour1, hour2 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        # energy: per-hour average of the interval consumption; Delta adds the increments up
        assert await agg(ENERGY, F.AggregateFunction_Average, hour0, hour2, 3600) == [
            (hour0, (0.25 + 0.5 + 0.75 + 1.0) / 4, good_calc),
            (hour1, (1.25 + 1.5 + 1.75 + 2.0) / 4, S.UncertainDataSubNormal | 0x0401),  # one flagged interval in it
        ]
        assert await agg(ENERGY, F.AggregateFunction_Delta, hour0, hour2, 3600) == [(hour0, 2.5, good_calc), (hour1, 6.5, S.UncertainDataSubNormal | 0x0401)]
        # power: Minimum and Maximum from the interval minima and maxima
        assert await agg(POWER, F.AggregateFunction_Minimum, hour0, hour2, 3600) == [(hour0, -0.5, good_calc), (hour1, 3.5, good_calc)]
        assert await agg(POWER, F.AggregateFunction_Maximum, hour0, hour2, 3600) == [(hour0, 3.5, good_calc), (hour1, 7.5, good_calc)]
        # intervals without data: Bad_NoData; Count is 0; a cut last interval is Partial
        counts = await agg(ENERGY, F.AggregateFunction_Count, hour1, T0 + timedelta(hours=3, minutes=30), 3600)
        assert counts == [(hour1, 4, good_calc), (hour2, 0, good_calc), (T0 + timedelta(hours=3), 0, good_calc | 0x04)]
        empty = await agg(ENERGY, F.AggregateFunction_Average, hour2, T0 + timedelta(hours=3), 1800)
        assert [(t, s) for t, _, s in empty] == [(hour2, S.BadNoData), (hour2 + timedelta(minutes=30), S.BadNoData)]
        # samples: the bad one is left out; Delta is last minus first; Interpolative is linear
        assert await agg(BALANCE, F.AggregateFunction_Delta, hour0, hour1, 3600) == [(hour0, 90.0 - 100.0, good_calc)]
        interpolated = await agg(BALANCE, F.AggregateFunction_Interpolative, T0 - timedelta(minutes=10), T0 + timedelta(minutes=90), 600)
        by_time = {t: (v, s) for t, v, s in interpolated}
        assert by_time[T0 - timedelta(minutes=10)] == (None, S.BadNoData)  # nothing before
        assert by_time[T0] == (100.0, S.Good | 0x0400)  # a stored value
        assert by_time[T0 + timedelta(minutes=10)][0] == pytest.approx(98.0 + (95.0 - 98.0) * 3 / 13)
        assert by_time[T0 + timedelta(minutes=10)][1] == S.Good | 0x0402
        assert by_time[T0 + timedelta(minutes=80)] == (80.0, S.UncertainDataSubNormal | 0x0402)  # held after the last
        # what is not offered
        result = await read(client, ns, ENERGY, processed(hour0, hour1, 900, F.AggregateFunction_TimeAverage))
        assert result.StatusCode.value == S.BadAggregateNotSupported
        result = await read(client, ns, ENERGY, processed(hour1, hour0, 900, F.AggregateFunction_Average))
        assert result.StatusCode.value == S.BadHistoryOperationUnsupported


async def test_processed_intervals_page_through_continuation_points(hserver: OpcUaServer) -> None:
    ns = hserver.ns
    async with Client(hserver.url) as client:
        # 250 one-minute intervals with a server limit of 100 values per answer: 3 answers
        details = processed(T0, T0 + timedelta(minutes=250), 60, ua.ObjectIds.AggregateFunction_Count)
        values, calls = await read_all(client, ns, ENERGY, details)
        assert calls == 3 and len(values) == 250
        assert sum(dv.Value.Value for dv in values) == 8
        assert values[-1].SourceTimestamp == T0 + timedelta(minutes=249)


async def test_a_user_without_history_rights_is_refused(hserver: OpcUaServer, source: MemorySource) -> None:
    source.deny.add("anonymous")
    try:
        async with Client(hserver.url) as client:
            result = await read(client, hserver.ns, ENERGY, raw(T0, T0 + timedelta(hours=1)))
            assert result.StatusCode.value == S.BadUserAccessDenied
    finally:
        source.deny.discard("anonymous")


async def test_bulk_encoding_decodes_as_the_data_values_it_stands_for() -> None:
    from asyncua.ua import ua_binary  # noqa: PLC0415 - the reference decoder, only here

    times = np.array([us(T0), us(T0) + 1_500_000, us(T0) + 3_000_000], dtype=np.int64)
    cases = (
        (np.array([1.5, -2.0, 3.25]), np.zeros(3, np.uint32), ua.VariantType.Double),  # the bulk path
        (np.array([1.5, np.nan, 3.25]), np.array([0, S.BadNoData, S.Uncertain], np.uint32), ua.VariantType.Double),  # row by row
        (np.array([4.0, 0.0, 7.0]), np.array([S.Good | 0x0401] * 3, np.uint32), ua.VariantType.Int32),
    )
    for values, status, vtype in cases:
        for mode in (ua.TimestampsToReturn.Both, ua.TimestampsToReturn.Source, ua.TimestampsToReturn.Server):
            body = encode_history_data(times, values, status, timestamps=mode, vtype=vtype)
            decoded = ua_binary.struct_from_binary(ua.HistoryData, ua_binary.Buffer(body)).DataValues
            for dv, t, v, s in zip(decoded, times, values, status, strict=True):
                when = T0 + timedelta(microseconds=int(t - times[0]))
                assert dv.Value.Value == (None if np.isnan(v) else v) and dv.StatusCode.value == s
                if not np.isnan(v):
                    assert dv.Value.VariantType is vtype
                assert dv.SourceTimestamp == (when if mode != ua.TimestampsToReturn.Server else None)
                assert dv.ServerTimestamp == (when if mode != ua.TimestampsToReturn.Source else None)
