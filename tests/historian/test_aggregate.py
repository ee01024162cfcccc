"""Interval aggregation from a real TagDB's change stream, with time driven by the test."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historian.aggregate import IntervalAggregator
from historian.grid import IntervalGrid
from historian.records import MICRO, IntervalRecord
from tags import TagDB, TagWrite

from .producers import SyntheticMeter

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, 0, 0, tzinfo=SHANGHAI)  # in the past: source times are believed
GRID = IntervalGrid(900, SHANGHAI)


class Rig:
    """A TagDB, a subscription with reports, and an aggregator fed from it."""

    def __init__(self, grid: IntervalGrid = GRID, start: datetime = T0) -> None:
        self.db = TagDB()
        self.sub = self.db.subscribe(include_reported=True, maxsize=1_000_000)
        self.agg = IntervalAggregator(grid, start.timestamp(), delay_s=10)
        self.records: list[IntervalRecord] = []

    def pump(self) -> None:
        for change in self.sub.drain():
            self.agg.feed(change)

    def close(self, now: datetime, meters: list[str] | None = None) -> list[IntervalRecord]:
        self.pump()
        out = self.agg.close_due(now.timestamp(), meters)
        self.records += out
        return out

    def of(self, meter: str) -> list[IntervalRecord]:
        return [r for r in self.records if r.meter == meter]


def kwh(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


def test_deltas_add_up_to_register_difference_and_land_in_their_tou_period() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="1234.56")
    rng = random.Random(7)
    first_polled: Decimal | None = None
    t = T0 + timedelta(seconds=5)
    expected: dict[tuple[int, str], Decimal] = {}
    while t < T0 + timedelta(hours=24):
        amount = Decimal(rng.randint(0, 30)) / 100  # 0.00 .. 0.30 kWh between polls
        hour = t.hour
        m.consume(amount, hour)
        m.poll(t)
        if first_polled is None:
            first_polled = m.registers["energy_total"]
        start = GRID.start_of(t.timestamp())
        period = "sharp" if hour in (19, 20) else "peak" if hour in (8, 9, 10, 11, 17, 18, 21) else "valley" if hour in (0, 1, 2, 3, 4, 5, 6, 23) else "flat"
        expected[(start, f"energy_{period}")] = expected.get((start, f"energy_{period}"), Decimal(0)) + amount
        t += timedelta(seconds=rng.randint(20, 90))
    rig.close(T0 + timedelta(hours=24, seconds=11))
    recs = rig.of("E-1")
    assert len(recs) == 96 and [r.start for r in recs] == list(range(int(T0.timestamp()), int(T0.timestamp()) + 86400, 900))
    # the first interval has no earlier reading: it counts from its first poll
    assert recs[0].values["flag_first"] == 1
    total = sum(kwh(int(r.values["energy_total"])) for r in recs)
    assert total == m.registers["energy_total"] - first_polled
    for period in ("sharp", "peak", "flat", "valley"):
        for r in recs[1:]:
            got = kwh(int(r.values.get(f"energy_{period}", 0)))
            assert got == expected.get((r.start, f"energy_{period}"), Decimal(0)), (period, r.start)
    for r in recs[1:]:
        tou = sum(kwh(int(r.values[f"energy_{p}"])) for p in ("sharp", "peak", "flat", "valley"))
        assert tou == kwh(int(r.values["energy_total"]))
    assert all(r.values["flag_gap"] == 0 and r.values["flag_reset"] == 0 for r in recs)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=1, max_value=1800), st.decimals(min_value=0, max_value=50, places=3)),
        min_size=2,
        max_size=120,
    ),
    i=st.integers(min_value=0, max_value=10_000),
    j=st.integers(min_value=0, max_value=10_000),
)
def test_any_range_of_intervals_sums_to_the_register_difference(steps: list[tuple[int, Decimal]], i: int, j: int) -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="98765.432")
    t = T0
    readings: list[tuple[datetime, Decimal]] = []  # what was polled, in order
    for gap, amount in steps:
        t += timedelta(seconds=gap)
        m.consume(amount)
        m.poll(t)
        readings.append((t, m.registers["energy_total"]))
    rig.close(t + timedelta(minutes=16))
    recs = [r for r in rig.of("E-1") if "energy_total" in r.values]
    lo, hi = sorted((i % len(recs), j % len(recs)))
    span = recs[lo:hi + 1]
    got = sum(kwh(int(r.values["energy_total"])) for r in span)

    def last_reading_before(end: int) -> Decimal:
        return [v for ts, v in readings if ts.timestamp() < end][-1]

    end_reading = last_reading_before(span[-1].start + 900)
    if lo == 0:
        start_reading = readings[0][1]  # the first interval counts from the first poll
    else:
        start_reading = last_reading_before(span[0].start)
    assert got == end_reading - start_reading


def test_gap_consumption_lands_where_the_meter_returns_flagged() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="500.00")
    t = T0 + timedelta(seconds=30)
    for _ in range(4):  # polls during the first interval
        m.consume("0.05")
        m.poll(t)
        t += timedelta(minutes=3)
    last_good = t - timedelta(minutes=3)
    m.online = False
    while t < T0 + timedelta(minutes=60):  # three intervals without answers
        m.consume("0.10")
        m.poll(t)
        t += timedelta(minutes=3)
    m.online = True
    m.consume("0.10")
    m.poll(t)
    rig.close(T0 + timedelta(minutes=75, seconds=11))
    recs = rig.of("E-1")
    assert [r.start - int(T0.timestamp()) for r in recs] == [0, 900, 1800, 2700, 3600]
    offline = recs[1:4]
    for r in offline:
        assert "energy_total" not in r.values  # unknown, not zero
        assert r.values["samples"] > 0 and r.values["good_samples"] == 0
        assert r.values["flag_gap"] == 0
    back = recs[4]
    assert back.values["flag_gap"] == 1
    assert back.values["gap_from"] == int(last_good.timestamp())
    # all of the gap's consumption, exactly, in the interval where it returned
    expected = m.registers["energy_total"] - (Decimal("500.00") + Decimal("0.20"))
    assert kwh(int(back.values["energy_total"])) == expected
    assert back.values["good_samples"] == 1


def test_register_going_backwards_is_flagged_and_invents_nothing() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="800.00")
    t = T0 + timedelta(seconds=10)
    m.poll(t)
    rig.close(T0 + timedelta(minutes=15, seconds=11))
    t = T0 + timedelta(minutes=16)
    m.consume("1.25")
    m.poll(t)  # 801.25
    m.registers["energy_total"] = Decimal("3.00")  # the meter was replaced / reset
    m.poll(t + timedelta(minutes=1))
    m.consume("0.50")
    m.poll(t + timedelta(minutes=2))  # 3.50
    rig.close(T0 + timedelta(minutes=30, seconds=11))
    rec = rig.of("E-1")[-1]
    assert rec.values["flag_reset"] == 1
    assert kwh(int(rec.values["energy_total"])) == Decimal("1.25") + Decimal("0.50")
    # a backwards step across the interval boundary is flagged too
    m.registers["energy_total"] = Decimal("1.00")
    m.poll(T0 + timedelta(minutes=31))
    rig.close(T0 + timedelta(minutes=45, seconds=11))
    rec = rig.of("E-1")[-1]
    assert rec.values["flag_reset"] == 1 and rec.values["energy_total"] == 0


def test_samples_good_share_and_analog_statistics() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1")
    t = T0 + timedelta(seconds=1)
    for k, p in enumerate([1.0, 3.0, 2.0, 6.0]):
        m.poll(t + timedelta(seconds=60 * k), power=p, voltage=220.0 + k)
    m.online = False
    m.poll(t + timedelta(seconds=300))
    m.poll(t + timedelta(seconds=360))
    rig.close(T0 + timedelta(minutes=15, seconds=11))
    (rec,) = rig.records
    # one poll writes nine tags with one source time: one sample
    assert rec.values["samples"] == 6 and rec.values["good_samples"] == 4
    assert (rec.values["power_min"], rec.values["power_avg"], rec.values["power_max"]) == (1.0, 3.0, 6.0)
    assert rec.values["voltage_max"] == 223.0 and rec.values["current_avg"] == 6.5


def test_every_tracked_meter_gets_every_interval_once() -> None:
    rig = Rig()
    SyntheticMeter(rig.db, "E-1").poll(T0 + timedelta(seconds=5))
    out = rig.close(T0 + timedelta(hours=1, seconds=11), meters=["E-1", "E-2"])
    keys = [(r.meter, r.start) for r in out]
    assert len(keys) == len(set(keys)) == 8
    quiet = [r for r in out if r.meter == "E-2"]
    assert all(r.values["samples"] == 0 and "energy_total" not in r.values for r in quiet)
    assert rig.close(T0 + timedelta(hours=1, seconds=12)) == []


def test_late_and_out_of_order_readings() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="10.00")
    m.poll(T0 + timedelta(minutes=14))
    rig.close(T0 + timedelta(minutes=15, seconds=11))
    # a poll stamped in the closed interval arrives late: the newest closed interval takes it
    # (it is revised at the next close)
    m.consume("0.40")
    m.poll(T0 + timedelta(minutes=14, seconds=30))
    # an older reading arriving after a newer one is placed by its time
    m.consume("0.10")
    m.poll(T0 + timedelta(minutes=20))
    stale = m.registers["energy_total"]
    m.registers["energy_total"] = Decimal("10.45")
    m.poll(T0 + timedelta(minutes=19))
    m.registers["energy_total"] = stale
    rig.close(T0 + timedelta(minutes=30, seconds=11))
    first, revised, rec = rig.of("E-1")
    assert first.start == revised.start == int(T0.timestamp())
    assert (first.values["energy_total"], revised.values["energy_total"]) == (0, 400_000)
    assert revised.values["samples"] == 2
    assert rec.start == int((T0 + timedelta(minutes=15)).timestamp())
    assert kwh(int(rec.values["energy_total"])) == Decimal("0.10")
    assert rec.values["flag_reset"] == 0


def test_state_round_trip_continues_exactly() -> None:
    """Saving and restoring mid-interval gives the same records as running through."""
    straight, restarted = Rig(), Rig()
    meters = [SyntheticMeter(straight.db, "E-1"), SyntheticMeter(restarted.db, "E-1")]
    rng = random.Random(3)
    t = T0 + timedelta(seconds=3)
    for k in range(90):
        amount = Decimal(rng.randint(0, 99)) / 100
        for m in meters:
            m.consume(amount)
            m.poll(t, power=float(k))
        if k == 37:  # stop (mid-interval), serialise, start a fresh aggregator from the state
            restarted.pump()
            saved = json.loads(json.dumps(restarted.agg.state()))
            restarted.agg = IntervalAggregator(GRID, t.timestamp(), delay_s=10)
            restarted.agg.load_state(saved, t.timestamp())
        t += timedelta(seconds=37)
    end = t + timedelta(minutes=16)
    assert straight.close(end) == restarted.close(end)


def test_intervals_while_the_server_was_down_are_not_invented() -> None:
    rig = Rig()
    m = SyntheticMeter(rig.db, "E-1", start_kwh="10.00")
    m.poll(T0 + timedelta(minutes=5))
    rig.pump()
    saved = json.loads(json.dumps(rig.agg.state()))
    # the server stops at 00:05 and starts again at 01:07
    back = T0 + timedelta(hours=1, minutes=7)
    agg = IntervalAggregator(GRID, back.timestamp(), delay_s=10)
    agg.load_state(saved, back.timestamp())
    rig.agg = agg
    m.consume("2.00")
    m.poll(back + timedelta(seconds=10))
    out = rig.close(T0 + timedelta(hours=1, minutes=15, seconds=11))
    assert [r.start - int(T0.timestamp()) for r in out] == [0, 3600]  # the stopped-in one, then the restart's
    assert out[0].values["samples"] == 1
    assert out[1].values["flag_gap"] == 1 and kwh(int(out[1].values["energy_total"])) == Decimal("2.00")


def test_water_volume_delta() -> None:
    rig = Rig()
    w = SyntheticMeter(rig.db, "W-1", start_kwh="12.345", water=True)
    w.poll(T0 + timedelta(minutes=1))
    w.consume("0.017")
    w.poll(T0 + timedelta(minutes=16))
    rig.close(T0 + timedelta(minutes=30, seconds=11))
    rec = rig.of("W-1")[-1]
    assert kwh(int(rec.values["volume_total"])) == Decimal("0.017")


@pytest.mark.parametrize(
    ("zone", "length", "local"),
    [("Asia/Kolkata", 3600, "10:00"), ("Asia/Kathmandu", 900, "10:15"), ("Europe/Berlin", 1800, "10:00"), ("UTC", 60, "10:27")],
)
def test_grid_is_aligned_to_the_site_clock(zone: str, length: int, local: str) -> None:
    tz = ZoneInfo(zone)
    grid = IntervalGrid(length, tz)
    t = datetime(2024, 7, 1, 10, 27, 40, tzinfo=tz) if zone != "Asia/Kathmandu" else datetime(2024, 7, 1, 10, 29, tzinfo=tz)
    start = datetime.fromtimestamp(grid.start_of(t.timestamp()), tz)
    assert start.strftime("%H:%M") == local


def test_grid_refuses_lengths_not_dividing_an_hour() -> None:
    for bad in (0, 30, 7 * 60, 7200):
        with pytest.raises(ValueError, match="dividing an hour"):
            IntervalGrid(bad, UTC)


def test_analog_block_read_apart_does_not_count_extra_samples() -> None:
    rig = Rig()
    SyntheticMeter(rig.db, "E-1")
    for k in range(4):
        ts = T0 + timedelta(seconds=10 + 60 * k)
        rig.db.write_many([TagWrite("E-1.energy_total", 5.0 + k, source_ts=ts), TagWrite("E-1.energy_peak", 1.0, source_ts=ts)])
        rig.db.write_many([TagWrite("E-1.power", float(k), source_ts=ts + timedelta(seconds=1))])
    rig.close(T0 + timedelta(minutes=15, seconds=11))
    (rec,) = rig.records
    assert rec.values["samples"] == 4 and rec.values["good_samples"] == 4
    assert rec.values["power_max"] == 3.0


def test_source_times_not_believed_use_the_server_time() -> None:
    """A naive source time, or one far in the future, does not break intake: the server's
    time stands in."""
    before = datetime.now(UTC)
    rig = Rig(start=before)
    SyntheticMeter(rig.db, "E-1")
    rig.db.write("E-1.energy_total", 10.0, source_ts=datetime(2030, 1, 1))  # no zone
    rig.db.write("E-1.energy_total", 11.0, source_ts=datetime(2099, 1, 1, tzinfo=UTC))
    rig.pump()
    after = datetime.now(UTC)
    out = [r for r in rig.close(after + timedelta(minutes=31)) if "energy_total" in r.values]
    # both readings in one interval, the one the server wrote them in: a delta of 1 kWh
    assert len(out) == 1 and out[0].values["energy_total"] == 1_000_000
    assert out[0].start in (GRID.start_of(before.timestamp()), GRID.start_of(after.timestamp()))
