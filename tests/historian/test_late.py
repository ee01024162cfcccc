"""Store-and-forward from a gateway: readings it replays after an outage fill the gap's intervals.

A gateway reads its meters every minute; while its uplink is down it keeps the readings and
sends them afterwards with their own times (``TagDB.write_many(keep_newest=True)``: the replayed
values are late, history takes them, displays keep the newest). The historian (real SQLite or
InfluxDB backend, time driven by the test) must end with every 15-minute interval exactly once,
each holding the consumption measured in it, the days equal to the sum of their intervals —
whether the gateway replays before or after its first live reading, and however often it resends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historian import Historian, HistorianSettings, InfluxSettings, IntervalGrid, SqliteSettings, make_backend
from historian.aggregate import IntervalAggregator
from historian.backends.base import Aggregate
from historian.records import MICRO, IntervalRecord
from tags import Quality, QualityReason, TagDB, TagMeta, TagWrite

from ..services import InfluxServer

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=TZ)  # in the past: source times are believed
GRID = IntervalGrid(900, TZ)
POINTS = ("energy_total", "power")


class Gateway:
    """Meters behind one gateway: a reading a minute, buffered while the uplink is down."""

    def __init__(self, db: TagDB, meters: list[str]) -> None:
        self.db = db
        self.meters = meters
        self.kwh = {m: Decimal("100.00") + i for i, m in enumerate(meters)}
        self.up = True
        self.buffer: list[TagWrite] = []
        self.readings: dict[str, list[tuple[float, Decimal]]] = {m: [] for m in meters}
        for m in meters:
            for p in POINTS:
                db.register(TagMeta(f"{m}.{p}", meter_id=m, point=p))

    def read(self, ts: datetime) -> None:
        writes = []
        for i, m in enumerate(self.meters):
            self.kwh[m] += Decimal("0.03") * (i + 1) + Decimal(ts.minute % 7) / 100
            self.readings[m].append((ts.timestamp(), self.kwh[m]))
            writes += [
                TagWrite(f"{m}.energy_total", float(self.kwh[m]), source_ts=ts),
                TagWrite(f"{m}.power", 1.0 + ts.minute / 10, source_ts=ts),
            ]
        if self.up:
            self.db.write_many(writes, keep_newest=True)
        else:
            self.buffer += writes

    def die(self, ts: datetime) -> None:
        """The uplink drops: the server marks the meters bad (what a link death does)."""
        self.up = False
        names = [f"{m}.{p}" for m in self.meters for p in POINTS]
        self.db.set_quality(names, Quality.BAD, QualityReason.COMM_FAILURE, "gateway dead", source_ts=ts)

    def replay(self) -> None:
        self.db.write_many(self.buffer, keep_newest=True)

    def consumption(self, meter: str, start: int, end: int) -> int:
        """µkWh measured in [start, end): from the last reading before start to the last before end."""
        before = [v for t, v in self.readings[meter] if t < start]
        upto = [v for t, v in self.readings[meter] if t < end]
        return int((upto[-1] - before[-1]) * MICRO)


class Plant:
    def __init__(self, backend_settings: SqliteSettings | InfluxSettings, tmp: Path) -> None:
        self.now = T0.timestamp()
        self.db = TagDB()
        self.gw = Gateway(self.db, ["E-1", "E-2"])
        settings = HistorianSettings(interval_s=900, close_delay_s=10, spool_path=tmp / "spool.db", write_timeout_s=10)
        self.historian = Historian(settings, make_backend(backend_settings), GRID, clock=lambda: self.now)
        self.sub = self.db.subscribe(self.historian.wants, include_reported=True, include_late=True, maxsize=1_000_000)
        self.records: list[IntervalRecord] = []

    async def step(self, minutes: int = 1, *, read: bool = True) -> None:
        for _ in range(minutes):
            self.now += 60
            if read:
                self.gw.read(datetime.fromtimestamp(self.now, TZ))
            await self.flush()

    async def flush(self) -> None:
        self.historian.feed(self.sub.drain())
        await self.historian.close_due()
        while await self.historian.forwarder.send_once():
            pass

    async def intervals(self, meter: str) -> list[tuple[int, int | None, int]]:
        frame = await self.historian.backend.fetch_intervals(
            [meter], ["energy_total", "flag_gap", "samples"], int(T0.timestamp()), int(self.now)
        )
        return [
            (int(r["time"]), None if r["energy_total"] != r["energy_total"] else int(r["energy_total"]), int(r["flag_gap"]))
            for r in frame.to_dict("records")
        ]


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=pytest.mark.influx)])
async def plant(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Plant]:
    if request.param == "sqlite":
        settings: SqliteSettings | InfluxSettings = SqliteSettings(tmp_path / "historian.db")
    else:
        server: InfluxServer = request.getfixturevalue("influx_server")
        settings = InfluxSettings(url=server.url, database=request.getfixturevalue("influx_db"))
    p = Plant(settings, tmp_path)
    await p.historian.open()
    try:
        yield p
    finally:
        p.sub.close()
        await p.historian.shutdown(flush_timeout_s=2)


async def check_history(p: Plant, first: int, last: int) -> None:
    """Every interval of [first, last) once, holding exactly the consumption measured in it,
    no gap flag; the day rollup equal to the sum of its intervals."""
    for meter in p.gw.meters:
        got = await p.intervals(meter)
        starts = [s for s, _, _ in got if first <= s < last]
        assert starts == list(range(first, last, 900)), meter
        for start, energy, gap in got:
            if first <= start < last:
                assert (energy, gap) == (p.gw.consumption(meter, start, start + 900), 0), (meter, start)
    day = int(datetime(2024, 5, 1, tzinfo=TZ).timestamp())
    days = await p.historian.backend.fetch_days(p.gw.meters, [Aggregate("energy_total", "sum")], day, day + 86_400)
    intervals = await p.historian.backend.fetch_intervals(p.gw.meters, ["energy_total"], day, day + 86_400)
    for meter in p.gw.meters:
        expected = int(intervals[intervals["meter"] == meter]["energy_total"].dropna().sum())
        row = days[days["meter"] == meter]
        assert int(row["energy_total__sum"].iloc[0]) == expected, meter


async def test_a_replay_after_the_first_live_reading_fills_the_gap_exactly(plant: Plant) -> None:
    p = plant
    await p.step(20)  # 10:00 .. 10:20
    p.gw.die(datetime.fromtimestamp(p.now + 1, TZ))
    await p.step(31)  # 10:21 .. 10:51 buffered: 10:30-10:45 closes without a reading
    gap = await p.intervals("E-1")
    assert [e for s, e, _ in gap if s == T0.timestamp() + 1800] == [None]
    p.gw.up = True
    await p.step(1)  # the first live reading (10:52) carries the gap's consumption for now
    p.gw.replay()  # then the buffer, older than what the server shows
    assert p.db.read("E-1.energy_total").source_ts == datetime.fromtimestamp(p.now, TZ)  # display: the newest
    await p.step(30)
    await check_history(p, int(T0.timestamp()) + 900, int(p.now) - 900)
    assert p.historian.aggregator.revised > 0


async def test_a_replay_before_the_first_live_reading_and_a_resend_change_nothing_twice(plant: Plant) -> None:
    p = plant
    await p.step(20)
    p.gw.die(datetime.fromtimestamp(p.now + 1, TZ))
    await p.step(31)
    p.gw.up = True
    p.gw.replay()  # the buffer first (it is older than the bad marks: late), then live readings
    await p.step(2)
    p.gw.replay()  # the gateway did not hear the acknowledgement: it sends the buffer again
    await p.step(1)
    before = await p.intervals("E-1")
    samples = await p.historian.backend.fetch_intervals(["E-1"], ["samples"], int(T0.timestamp()), int(p.now))
    await p.step(28)
    p.gw.replay()  # and once more, much later
    await p.step(1)
    after = await p.intervals("E-1")
    assert [r for r in after if r[0] <= before[-1][0]] == before
    again = await p.historian.backend.fetch_intervals(["E-1"], ["samples"], int(T0.timestamp()), int(before[-1][0]) + 1)
    assert again["samples"].tolist() == samples["samples"].tolist()[: len(again)]
    assert again["samples"].max() <= 16  # a sample a minute, never counted twice
    await check_history(p, int(T0.timestamp()) + 900, int(p.now) - 900)


def test_a_replay_survives_a_restart_of_the_aggregator() -> None:
    """Runs (the gaps a replay may fill) are part of the saved state."""
    db = TagDB()
    gw = Gateway(db, ["E-1"])
    sub = db.subscribe(include_reported=True, include_late=True, maxsize=100_000)
    agg = IntervalAggregator(GRID, T0.timestamp(), delay_s=10)
    now = T0.timestamp()
    records: list[IntervalRecord] = []

    def step(n: int, read: bool = True) -> None:
        nonlocal now
        for _ in range(n):
            now += 60
            if read:
                gw.read(datetime.fromtimestamp(now, TZ))
            for c in sub.drain():
                agg.feed(c)
            records.extend(agg.close_due(now))

    step(20)
    gw.die(datetime.fromtimestamp(now + 1, TZ))
    step(31)
    gw.up = True
    step(1)
    # the state as text a slice at a time is the state's JSON, whatever the slices
    compact = json.dumps(agg.state(), separators=(",", ":"))
    assert agg.state()["meters"]["E-1"]["r"] and agg.state()["open"] and agg.state()["days"]
    for every in (1, 2, 3, 500):
        assert "".join(agg.state_text(every)) == compact
    saved = json.loads(json.dumps(agg.state()))
    agg = IntervalAggregator(GRID, now, delay_s=10)
    agg.load_state(saved, now)
    gw.replay()
    step(30)
    final: dict[int, IntervalRecord] = {}
    for r in records:
        final[r.start] = r  # later records replace earlier ones of the same key
    start = int(T0.timestamp()) + 900
    for s in range(start, int(now) - 900, 900):
        assert final[s].values.get("energy_total") == gw.consumption("E-1", s, s + 900), s
        assert final[s].values["flag_gap"] == 0
    sub.close()


def test_late_readings_of_an_interval_already_used_are_not_counted_again() -> None:
    """Outside a gap, an interval's readings were used: a resend of them changes nothing."""
    db = TagDB()
    gw = Gateway(db, ["E-1"])
    sub = db.subscribe(include_reported=True, include_late=True, maxsize=100_000)
    agg = IntervalAggregator(GRID, T0.timestamp(), delay_s=10)
    now = T0.timestamp()
    records: list[IntervalRecord] = []
    sent: list[TagWrite] = []
    for _ in range(40):
        now += 60
        ts = datetime.fromtimestamp(now, TZ)
        gw.read(ts)
        sent += [TagWrite(f"E-1.{p}", db.read(f"E-1.{p}").value, source_ts=ts) for p in POINTS]
        for c in sub.drain():
            agg.feed(c)
        records.extend(agg.close_due(now))
    db.write_many(sent, keep_newest=True)  # everything again
    for c in sub.drain():
        agg.feed(c)
    records.extend(agg.close_due(now + 900))
    by_start: dict[int, list[IntervalRecord]] = {}
    for r in records:
        by_start.setdefault(r.start, []).append(r)
    # at most re-emitted unchanged (the newest interval with readings may take late readings)
    assert all(r == v[0] for v in by_start.values() for r in v)
    last = by_start[max(by_start)][-1]
    # 10:30..10:40, and no old power value in it
    assert (last.values["samples"], last.values["power_min"], last.values["power_max"]) == (11, 4.0, 5.0)
    sub.close()


def test_a_state_saved_by_the_previous_release_is_taken() -> None:
    """Version 1 states (no gaps kept, no sample spans) still restore the baselines."""
    db = TagDB()
    gw = Gateway(db, ["E-1"])
    sub = db.subscribe(include_reported=True, maxsize=100_000)
    agg = IntervalAggregator(GRID, T0.timestamp(), delay_s=10)
    now = T0.timestamp()
    for _ in range(20):
        now += 60
        gw.read(datetime.fromtimestamp(now, TZ))
        for c in sub.drain():
            agg.feed(c)
        agg.close_due(now)
    state = agg.state()
    state["version"] = 1
    for m in state["meters"].values():
        m["s"] = m["s"][:4]
        del m["r"], m["l"]
    for bucket in state["open"].values():
        for o in bucket.values():
            del o["s"]
    restored = IntervalAggregator(GRID, now, delay_s=10)
    assert "baselines of 1 meters" in restored.load_state(json.loads(json.dumps(state)), now)
    for _ in range(15):
        now += 60
        gw.read(datetime.fromtimestamp(now, TZ))
        for c in sub.drain():
            restored.feed(c)
    out = restored.close_due(now)
    assert [r.values["energy_total"] for r in out] == [gw.consumption("E-1", r.start, r.start + 900) for r in out]
    sub.close()
