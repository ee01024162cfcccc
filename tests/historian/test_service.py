"""Store-and-forward with a real InfluxDB that goes away and comes back, restarts of the
historian with a full buffer, the bound on the buffer and its fill level, raw logging.

Time is driven by the test (the historian's clock and the polls' source times), so an outage of
hours takes seconds; the InfluxDB server is really stopped and started.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from historian import (
    Historian,
    HistorianSettings,
    InfluxSettings,
    IntervalGrid,
    RawRule,
    SqliteSettings,
    make_backend,
)
from historian.backends.base import Backend
from tags import TagDB

from ..services import InfluxServer, ServiceUnavailable, free_port, require_services
from .producers import SyntheticMeter

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, tzinfo=TZ)
GRID = IntervalGrid(900, TZ)


@pytest.fixture(scope="module")
def own_influx() -> Iterator[InfluxServer]:
    """An InfluxDB of this module's own: these tests stop and start it."""
    try:
        server = InfluxServer()
        server.start()
    except (ServiceUnavailable, OSError) as exc:
        if require_services():
            pytest.fail(f"required test service unavailable: InfluxDB: {exc}")
        pytest.skip(f"InfluxDB: {exc}")
    yield server
    server.destroy()


class Plant:
    """Meters writing into a TagDB, a historian fed from it, and a clock the test moves."""

    def __init__(self, tmp: Path, backend: Backend, *, max_points: int = 100_000, raw: tuple[RawRule, ...] = ()) -> None:
        self.now = T0.timestamp()
        self.db = TagDB()
        self.meters = [SyntheticMeter(self.db, f"E-{i}", start_kwh=f"{100 * i}.25") for i in range(1, 4)]
        self.fills: list[float] = []
        self.settings = HistorianSettings(
            interval_s=900, close_delay_s=10, spool_path=tmp / "spool.db", max_buffer_points=max_points,
            warn_fill=0.5, write_timeout_s=5, raw_rules=raw,
        )
        self.backend = backend
        self.historian = self._new_historian()
        self.polls: dict[str, list[tuple[float, Decimal]]] = {m.id: [] for m in self.meters}

    def _new_historian(self) -> Historian:
        h = Historian(self.settings, self.backend, GRID, publish_fill=self.fills.append, clock=lambda: self.now)
        self.sub = self.db.subscribe(h.wants, include_reported=True, maxsize=1_000_000)
        return h

    async def restart(self) -> None:
        """Stop the historian (the backend may be down) and start a new one on the same files."""
        self.historian.feed(self.sub.drain())
        self.sub.close()
        await self.historian.shutdown(flush_timeout_s=1)
        self.backend = make_backend(self.backend.settings)  # type: ignore[attr-defined]
        self.historian = self._new_historian()
        await self.historian.open()

    async def run(self, minutes: int, *, step_s: int = 60) -> None:
        """Poll every meter every ``step_s`` for ``minutes``, closing intervals as time passes."""
        end = self.now + minutes * 60
        while self.now < end:
            self.now += step_s
            ts = datetime.fromtimestamp(self.now, TZ)
            for m in self.meters:
                m.consume(Decimal("0.07") * int(m.id[2:]))
                m.poll(ts)
                self.polls[m.id].append((self.now, m.registers["energy_total"]))
            self.historian.feed(self.sub.drain())
            await self.historian.close_due()
            while await self.historian.forwarder.send_once():  # until sent, or it fails
                pass

    async def buffered(self, kind: str = "interval") -> int:
        batches = await self.historian.spool.peek(10**9)
        return sum(len(b.items) for b in batches if b.kind == kind)


async def stored(server: InfluxServer, db: str) -> dict[str, list[tuple[int, int]]]:
    answer = server.query('SELECT "energy_total", "samples" FROM "scada_intervals"."interval" GROUP BY "meter"', db=db)
    out: dict[str, list[tuple[int, int]]] = {}
    for series in answer["results"][0].get("series", []):
        out[series["tags"]["meter"]] = [(row[0], row[1]) for row in series["values"]]
    return out


def check_complete(data: dict[str, list[tuple[int, int]]], plant: Plant, upto: float) -> None:
    """Every interval from T0 to ``upto`` exactly once per meter, and energy that adds up."""
    starts = list(range(int(T0.timestamp()), int(upto), 900))
    end = starts[-1] + 900
    for m in plant.meters:
        rows = data[m.id]
        assert [t for t, _ in rows] == starts, m.id
        total = sum(Decimal(e) for _, e in rows if e is not None) / 1_000_000
        polls = plant.polls[m.id]
        assert total == [v for t, v in polls if t < end][-1] - polls[0][1], m.id


@pytest.mark.influx
async def test_influx_outage_buffers_and_sends_every_interval_once(
    own_influx: InfluxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = "outage_a"
    plant = Plant(tmp_path, make_backend(InfluxSettings(url=own_influx.url, database=db, timeout_s=3)))
    await plant.historian.open()
    try:
        await plant.run(31)  # two intervals closed and sent
        assert plant.historian.spool.points == 0 and plant.historian.forwarder.healthy
        own_influx.stop()
        with caplog.at_level(logging.INFO, logger="historian"):
            await plant.run(4 * 60)  # four hours without InfluxDB
            assert plant.historian.forwarder.healthy is False
            assert await plant.buffered() == 3 * 16 and await plant.buffered("day") == 3 * 16
            assert plant.fills[-1] == pytest.approx(96 / 100_000, abs=1e-4) and plant.fills[-1] > 0
            own_influx.start()
            assert await plant.historian.forwarder.drain(30)
        assert [r.getMessage() for r in caplog.records if r.name == "historian.forward"] == [
            "historian backend unavailable; buffering on disk",
            "historian backend available again; sending the buffer",
        ]
        assert plant.fills[-1] == 0
        await plant.run(30)
        check_complete(await stored(own_influx, db), plant, plant.now - 900)
    finally:
        own_influx.start()
        await plant.historian.shutdown(flush_timeout_s=5)


@pytest.mark.influx
async def test_restart_during_outage_keeps_buffer_and_intervals(own_influx: InfluxServer, tmp_path: Path) -> None:
    db = "outage_b"
    plant = Plant(tmp_path, make_backend(InfluxSettings(url=own_influx.url, database=db, timeout_s=3)))
    await plant.historian.open()
    try:
        await plant.run(20)
        own_influx.stop()
        await plant.run(50)
        mid_interval = plant.now % 900 != 0
        await plant.restart()  # stopped and started again while InfluxDB is away
        assert mid_interval and await plant.buffered() == 3 * 3  # 00:15, 00:30, 00:45
        await plant.run(47)
        await plant.restart()  # and once more
        await plant.run(23)
        own_influx.start()
        assert await plant.historian.forwarder.drain(30)
        await plant.run(16)
        check_complete(await stored(own_influx, db), plant, plant.now - 900)
    finally:
        own_influx.start()
        await plant.historian.shutdown(flush_timeout_s=5)


async def test_buffer_is_bounded_warns_first_and_drops_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = make_backend(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", database="x", timeout_s=1))
    plant = Plant(tmp_path, dead, max_points=20)
    await plant.historian.open()
    try:
        with caplog.at_level(logging.WARNING, logger="historian"):
            await plant.run(31)  # 2 intervals x 3 meters, with their day rollups = 12 points: 60 %
            messages = [r.getMessage() for r in caplog.records]
            assert "historian buffer filling up; data is dropped when it is full" in messages
            assert not any("buffer full" in m for m in messages)
            await plant.run(30)  # 24 points do not fit in 20: the oldest interval and its rollup go
        assert plant.historian.spool.points == 18 and plant.historian.spool.dropped == 6
        assert any(r.getMessage() == "historian buffer full: oldest data dropped" for r in caplog.records)
        assert plant.fills[-1] == 0.9  # whole batches are dropped
        batches = await plant.historian.spool.peek(100)
        first = min(item[1] for b in batches for item in b.items if b.kind == "interval")
        assert first == int(T0.timestamp()) + 900  # the oldest interval went, the rest is in order
    finally:
        await plant.historian.shutdown(flush_timeout_s=0.1)


async def test_raw_logging_with_deadband_and_sqlite_backend(tmp_path: Path) -> None:
    backend = make_backend(SqliteSettings(tmp_path / "h.db"))
    plant = Plant(tmp_path, backend, raw=(RawRule(("*.power",), deadband=0.5), RawRule(("E-1.voltage",), 0.0)))
    await plant.historian.open()
    try:
        ts = T0 + timedelta(seconds=30)
        m = plant.meters[0]
        for k, p in enumerate([1.0, 1.2, 1.49, 1.51, 1.0, 3.0]):
            m.poll(ts + timedelta(seconds=k), power=p, voltage=230.0 if k < 4 else 231.0)
        m.online = False
        m.poll(ts + timedelta(seconds=10))
        plant.historian.feed(plant.sub.drain())
        await plant.historian.flush_raw()
        assert await plant.historian.forwarder.drain(5)
        frame = await plant.historian.query_raw(["E-1.power", "E-1.voltage"], T0, T0 + timedelta(minutes=1))
        power = frame[frame.tag == "E-1.power"]
        # 1.0, then 1.51 (moved 0.51 from the last logged), 1.0, 3.0, and the bad sample
        assert list(power["value"]) == [1.0, 1.51, 1.0, 3.0, 3.0]
        assert list(power["quality"]) == ["good"] * 4 + ["bad"]
        assert list(frame[frame.tag == "E-1.voltage"]["value"]) == [230.0, 231.0, 231.0]
        assert str(frame["time"].iloc[0].tz) == "Asia/Shanghai"
    finally:
        await plant.historian.shutdown(flush_timeout_s=1)


async def test_the_state_is_saved_in_slices_with_the_intake_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint of a large state gives the event loop back between slices (other tasks
    run), the intake waits for it (its changes are fed after, not into a half-written state),
    and the saved text is the aggregator's state."""
    import asyncio
    import json

    from tags import Quality, TagChange, TagValue, slices

    monkeypatch.setattr(slices, "SLICE_S", 0.0)  # back to the loop after every piece, however fast the machine
    plant = Plant(tmp_path, make_backend(SqliteSettings(tmp_path / "history.db")))
    h = plant.historian
    await h.open()
    ts = T0 + timedelta(seconds=5)
    for m in range(3_000):  # ~3,000 meters with an open interval each: many slices
        h.feed([TagChange(f"E-{m:05d}.{p}", None, TagValue(1000 + i, Quality.GOOD, ts, ts), True)
                for i, p in enumerate(("energy_total", "energy_peak", "power"))])
    expected = json.dumps(h.aggregator.state(), separators=(",", ":"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    saved_after: list[int] = []
    save_state = h.spool.save_state

    async def save(text: str) -> None:
        saved_after.append(ticks)
        await save_state(text)

    h.spool.save_state = save  # type: ignore[method-assign]
    sub = plant.db.subscribe(h.wants, include_reported=True, maxsize=1_000)
    intake = asyncio.create_task(h.run_intake(sub))
    other = asyncio.create_task(ticker())
    later = ts + timedelta(seconds=60)
    try:
        checkpoint = asyncio.create_task(h.checkpoint())
        await asyncio.sleep(0)  # the checkpoint holds the intake from here
        fed = h.aggregator.fed
        plant.meters[0].consume(Decimal("1.5"))
        plant.meters[0].poll(later, power=1.0)
        await checkpoint
        assert saved_after[0] >= 10  # the loop ran other work between the ~12 pieces of the state
        assert await h.spool.load_state() == expected  # nothing fed into the state being written
        deadline = asyncio.get_running_loop().time() + 10
        while h.aggregator.fed == fed:  # and the change is fed after
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    finally:
        other.cancel()
        intake.cancel()
        sub.close()
        await h.shutdown(flush_timeout_s=0.1)


async def test_known_meters_are_asked_only_when_an_interval_closes(tmp_path: Path) -> None:
    """Working out the site's meters costs a scan of every tag on a large site: the closer asks
    for them when an interval is due, not on each of its rounds, and then a known meter with no
    reading in the interval still gets its record."""
    plant = Plant(tmp_path, make_backend(SqliteSettings(tmp_path / "history.db")))
    asked: list[float] = []

    def known() -> list[str]:
        asked.append(plant.now)
        return ["E-1", "E-2", "E-3", "E-quiet"]

    plant.historian.known_meters = known
    closed: list[Any] = []
    close_due = plant.historian.aggregator.close_due

    def spy(now_s: float, meters: Any = None) -> list[Any]:
        records = close_due(now_s, meters)
        closed.extend(records)
        return records

    plant.historian.aggregator.close_due = spy  # type: ignore[method-assign]
    await plant.historian.open()
    try:
        await plant.run(14)  # one minute at a time, the first interval not due yet
        assert asked == [] and closed == []
        await plant.run(2)  # 15 min + the close delay have passed
        assert len(asked) == 1
        quiet = [r for r in closed if r.meter == "E-quiet"]
        assert len(quiet) == 1 and quiet[0].values.get("samples") == 0
        assert {r.meter for r in closed} == {"E-1", "E-2", "E-3", "E-quiet"}
    finally:
        await plant.historian.shutdown(flush_timeout_s=1)
