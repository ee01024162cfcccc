from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tags import (
    Quality,
    QualityReason,
    TagDB,
    TagMeta,
    TagWrite,
    UnknownTagError,
    by_meters,
    by_points,
    utcnow,
)


def make_db(*names: str, deadband: float | None = None) -> TagDB:
    db = TagDB()
    for n in names:
        db.register(TagMeta(n, deadband=deadband))
    return db


def test_registered_tag_starts_bad_without_value() -> None:
    db = make_db("M1.power")
    v = db.read("M1.power")
    assert v.value is None
    assert v.quality is Quality.BAD
    assert v.reason is QualityReason.NO_VALUE


def test_unknown_tag_is_named_in_error() -> None:
    db = make_db("M1.power")
    with pytest.raises(UnknownTagError, match="M9.power"):
        db.write("M9.power", 1.0)
    with pytest.raises(UnknownTagError):
        db.read("M9.power")


def test_write_sets_value_quality_and_timestamps() -> None:
    db = make_db("M1.power")
    src = datetime(2026, 1, 1, tzinfo=UTC)
    assert db.write("M1.power", 2.5, source_ts=src) is True
    v = db.read("M1.power")
    assert (v.value, v.quality, v.reason, v.source_ts) == (2.5, Quality.GOOD, QualityReason.NONE, src)
    assert v.server_ts >= src


def test_same_value_is_reported_not_changed() -> None:
    db = make_db("M1.power")
    assert db.write("M1.power", 2.5)
    first = db.read("M1.power")
    assert db.write("M1.power", 2.5) is False
    second = db.read("M1.power")
    assert second.server_ts >= first.server_ts
    assert second is not first  # a fresh snapshot with fresh timestamps


def test_int_and_float_of_equal_value_differ_by_type() -> None:
    db = make_db("M1.x")
    db.write("M1.x", 1)
    assert db.write("M1.x", 1.0) is True


def test_bad_quality_keeps_last_value_and_reason() -> None:
    db = make_db("M1.power")
    db.write("M1.power", 3.0)
    assert db.write("M1.power", None, Quality.BAD, QualityReason.TIMEOUT, detail="no answer in 1.0 s")
    v = db.read("M1.power")
    assert v.value == 3.0 and v.quality is Quality.BAD and v.reason is QualityReason.TIMEOUT
    assert v.detail == "no answer in 1.0 s"
    # the same failure again is not a change
    assert db.write("M1.power", None, Quality.BAD, QualityReason.TIMEOUT) is False
    # another reason is
    assert db.write("M1.power", None, Quality.BAD, QualityReason.BAD_FRAME) is True
    # recovery with the same value is a change (quality differs)
    assert db.write("M1.power", 3.0) is True
    assert db.read("M1.power").reason is QualityReason.NONE


def test_good_write_has_no_reason_but_keeps_detail() -> None:
    db = make_db("M1.review_hold")
    db.write("M1.review_hold", True, Quality.GOOD, QualityReason.TIMEOUT, detail="register went backwards")
    v = db.read("M1.review_hold")
    assert v.reason is QualityReason.NONE and v.detail == "register went backwards"


def test_set_quality_marks_many_without_touching_values() -> None:
    db = make_db("M1.a", "M1.b")
    db.write("M1.a", 1.0)
    db.write("M1.b", 2.0)
    assert db.set_quality(["M1.a", "M1.b"], Quality.UNCERTAIN, QualityReason.STALE) == 2
    assert [db.read(n).value for n in ("M1.a", "M1.b")] == [1.0, 2.0]
    assert all(db.read(n).quality is Quality.UNCERTAIN for n in ("M1.a", "M1.b"))


def test_deadband_suppresses_small_changes_but_not_drift() -> None:
    db = make_db("M1.voltage", deadband=1.0)
    assert db.write("M1.voltage", 230.0)
    assert db.write("M1.voltage", 230.4) is False
    assert db.read("M1.voltage").value == 230.4  # reads give the latest sample
    assert db.write("M1.voltage", 230.8) is False
    # each step was < 1.0 but the drift from the last published value is not
    assert db.write("M1.voltage", 231.1) is True
    assert db.write("M1.voltage", 230.2) is False
    assert db.write("M1.voltage", 230.0) is True


def test_deadband_never_hides_quality_changes() -> None:
    db = make_db("M1.voltage", deadband=5.0)
    db.write("M1.voltage", 230.0)
    assert db.write("M1.voltage", 230.1, Quality.UNCERTAIN, QualityReason.STALE) is True
    assert db.write("M1.voltage", 230.1) is True


def test_deadband_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="deadband"):
        TagMeta("M1.x", deadband=-1)


def test_write_many_uses_one_server_timestamp() -> None:
    db = make_db("M1.a", "M1.b", "M1.c")
    n = db.write_many([TagWrite("M1.a", 1.0), TagWrite("M1.b", 2.0), TagWrite("M1.c", None, Quality.BAD, QualityReason.TIMEOUT)])
    assert n == 3
    stamps = {db.read(x).server_ts for x in ("M1.a", "M1.b", "M1.c")}
    assert len(stamps) == 1


def test_write_values_writes_good_values_with_one_timestamp_and_publishes_changes_only() -> None:
    db = make_db("M1.a", "M1.b")
    db.write("M1.b", 2.0)
    sub = db.subscribe(include_reported=True)
    assert db.write_values([("M1.a", 1.0), ("M1.b", 2.0)]) == 1  # M1.b is unchanged: reported only
    a, b = db.read("M1.a"), db.read("M1.b")
    assert (a.value, a.quality, a.reason) == (1.0, Quality.GOOD, QualityReason.NONE)
    assert a.server_ts == a.source_ts == b.server_ts == b.source_ts
    events = sub.drain()
    assert [(e.name, e.changed) for e in events] == [("M1.a", True), ("M1.b", False)]
    with pytest.raises(UnknownTagError):
        db.write_values([("M9.x", 1.0)])


def test_snapshot_and_filters() -> None:
    db = make_db("M1.power", "M1.energy_total", "M2.power")
    assert set(db.snapshot(by_points(["power"]))) == {"M1.power", "M2.power"}
    assert set(db.snapshot(by_meters(["M1"]))) == {"M1.power", "M1.energy_total"}


def test_reregister_keeps_value_updates_meta() -> None:
    db = make_db("M1.power")
    db.write("M1.power", 4.0)
    db.register(TagMeta("M1.power", unit="kW"))
    assert db.meta("M1.power").unit == "kW"
    assert db.read("M1.power").value == 4.0


def test_register_many_adds_new_tags_without_a_value_and_keeps_the_values_of_known_ones() -> None:
    db = make_db("M1.power")
    db.write("M1.power", 4.0)
    before = db.registrations
    db.register_many([TagMeta("M1.power", unit="kW"), TagMeta("M1.energy_total", unit="kWh"), TagMeta("M2.power")])
    assert db.registrations == before + 2  # what derives from the set of names sees it moved
    assert (db.meta("M1.power").unit, db.read("M1.power").value) == ("kW", 4.0)
    for name in ("M1.energy_total", "M2.power"):
        v = db.read(name)
        assert (v.value, v.quality, v.reason) == (None, Quality.BAD, QualityReason.NO_VALUE)
    db.write("M2.power", 1.0)  # the shared first value is not changed by a write to one of them
    assert db.read("M1.energy_total").value is None and db.read("M2.power").value == 1.0
    db.register_many([])
    assert db.registrations == before + 2


@pytest.mark.parametrize("bad", [{"name": ""}, {"name": " M1.power"}, {"name": "M1.power", "deadband": -1.0}])
def test_tag_metadata_is_checked_when_made(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid tag name|deadband must be >= 0"):
        TagMeta(**bad)  # type: ignore[arg-type]


async def test_subscriber_receives_changes_in_order() -> None:
    db = make_db("M1.power", "M2.power")
    async with db.subscribe(name="t") as sub:
        db.write("M1.power", 1.0)
        db.write("M2.power", 2.0)
        db.write("M1.power", 3.0)
        db.write("M1.power", 3.0)  # reported only: not delivered
        got = [(c.name, c.new.value, c.old.value if c.old else None) for c in sub.drain()]
    assert got == [("M1.power", 1.0, None), ("M2.power", 2.0, None), ("M1.power", 3.0, 1.0)]


async def test_include_reported_delivers_fresh_samples() -> None:
    db = make_db("M1.power")
    sub = db.subscribe(include_reported=True)
    db.write("M1.power", 1.0)
    db.write("M1.power", 1.0)
    changes = sub.drain()
    sub.close()
    assert [c.changed for c in changes] == [True, False]


async def test_filtered_subscription() -> None:
    db = make_db("M1.power", "M1.energy_total")
    sub = db.subscribe(by_points(["energy_total"]))
    db.write("M1.power", 1.0)
    db.write("M1.energy_total", 10.0)
    assert [c.name for c in sub.drain()] == ["M1.energy_total"]
    sub.close()


async def test_waiting_reader_wakes_on_write_and_ends_on_close() -> None:
    db = make_db("M1.power")
    sub = db.subscribe()
    received: list[float] = []

    async def reader() -> None:
        async for change in sub:
            received.append(change.new.value)  # type: ignore[arg-type]

    task = asyncio.create_task(reader(), name="reader")
    await asyncio.sleep(0)
    db.write("M1.power", 1.5)
    await asyncio.sleep(0)
    db.write("M1.power", 2.5)
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert received == [1.5, 2.5]
    assert sub not in db.subscriptions


async def test_a_cancelled_wait_leaves_a_new_readers_wait_hooked() -> None:
    """A wait cancelled while another reader starts waiting (billing's wait for the stream's next
    changes, given up when its batch came back first): the cancelled one ends a loop turn later
    and must not unhook the new one."""
    db = make_db("M1.power")
    sub = db.subscribe()
    first = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    second = asyncio.create_task(sub.get())  # scheduled before the cancellation below
    first.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert first.cancelled() and not second.done()
    db.write("M1.power", 1.5)
    change = await asyncio.wait_for(second, 1)
    assert change.new.value == 1.5


async def test_stalled_subscriber_is_bounded_and_gets_newest_values() -> None:
    """A subscriber that never reads: the writer goes on, memory stays bounded,
    the newest value of every tag is delivered and the dropped intermediates are counted."""
    tags = [f"M{i}.power" for i in range(100)]
    db = make_db(*tags)
    stalled = db.subscribe(maxsize=50, name="stalled")
    fast = db.subscribe(maxsize=100_000, name="fast")
    writes = 0
    for rnd in range(1000):
        for n in tags:
            db.write(n, float(rnd))
            writes += 1
        assert stalled.pending <= 50 + len(tags)
    # the writer was never blocked: all writes are already in the table
    assert all(db.read(n).value == 999.0 for n in tags)
    assert fast.pending == writes

    changes = stalled.drain()
    latest: dict[str, float] = {}
    for c in changes:
        latest[c.name] = c.new.value  # type: ignore[assignment]
    assert latest == {n: 999.0 for n in tags}
    assert stalled.delivered + stalled.dropped == writes
    assert stalled.dropped > 0 and stalled.overflowed >= 1
    # a coalesced change spans from the oldest undelivered to the newest value
    tail = [c for c in changes if c.name == "M5.power"][-1]
    assert tail.changed and tail.new.value == 999.0 and tail.old is not None and tail.old.value < 999.0
    stalled.close()
    fast.close()


async def test_subscriber_catches_up_after_overflow_in_tag_order() -> None:
    db = make_db("A.x", "B.x")
    sub = db.subscribe(maxsize=2)
    db.write("A.x", 1.0)
    db.write("B.x", 1.0)
    db.write("A.x", 2.0)  # overflow starts
    db.write("B.x", 2.0)
    db.write("A.x", 3.0)  # replaces A 2.0
    values = [(c.name, c.new.value) for c in sub.drain()]
    assert values == [("A.x", 1.0), ("B.x", 1.0), ("A.x", 3.0), ("B.x", 2.0)]
    assert sub.dropped == 1
    # back to FIFO once drained
    db.write("A.x", 4.0)
    db.write("A.x", 5.0)
    assert [c.new.value for c in sub.drain()] == [4.0, 5.0]
    sub.close()


async def test_an_overflow_drained_in_parts_keeps_its_order_and_every_newest_value() -> None:
    """The reader takes a coalesced backlog a batch at a time while the writer goes on: every
    tag's changes arrive in the order written, each tag's newest value last, and the items
    delivered plus those coalesced away account for every write."""
    tags = [f"M{i}.x" for i in range(500)]
    db = make_db(*tags)
    sub = db.subscribe(maxsize=50)
    writes = 0
    for round_ in range(3):  # 1,500 writes into a FIFO of 50: coalesced by tag
        for t in tags:
            db.write(t, float(round_))
            writes += 1
    seen: dict[str, list[float]] = {t: [] for t in tags}
    first = sub.drain(120)
    assert [c.name for c in first[:50]] == tags[:50] and all(c.new.value == 0.0 for c in first[:50])
    for c in first:
        seen[c.name].append(c.new.value)  # type: ignore[arg-type]
    for t in tags[:200]:  # written while the rest of the backlog waits
        db.write(t, 9.0)
        writes += 1
    while batch := sub.drain(120):
        for c in batch:
            seen[c.name].append(c.new.value)  # type: ignore[arg-type]
    for t, values in seen.items():
        assert values == sorted(values) and values[-1] == (9.0 if t in tags[:200] else 2.0), t
    assert sub.delivered + sub.dropped == writes
    sub.close()


async def test_a_backlog_taken_in_parts_while_every_tag_is_written_stays_within_its_bound() -> None:
    """A reader behind a writer of every tag: at most ``maxsize`` plus one item per tag is held
    however the reading and writing interleave, and every tag's newest value still arrives last."""
    tags = [f"M{i}.x" for i in range(300)]
    db = make_db(*tags)
    sub = db.subscribe(maxsize=40)
    last: dict[str, float] = {}
    for round_ in range(12):
        for t in tags:
            db.write(t, float(round_))
            assert sub.pending <= 40 + len(tags)
        for c in sub.drain(70 + 13 * round_):
            last[c.name] = c.new.value  # type: ignore[assignment]
    while batch := sub.drain(50):
        for c in batch:
            assert c.new.value >= last.get(c.name, -1.0), c
            last[c.name] = c.new.value  # type: ignore[assignment]
    assert last == dict.fromkeys(tags, 11.0)
    sub.close()


async def test_get_batch_returns_all_pending() -> None:
    db = make_db("A.x")
    sub = db.subscribe()
    for i in range(5):
        db.write("A.x", float(i))
    batch = await sub.get_batch(limit=3)
    assert [c.new.value for c in batch] == [0.0, 1.0, 2.0]
    assert sub.pending == 2
    sub.close()


async def test_wait_wakes_on_a_change_without_taking_it_and_ends_on_close() -> None:
    db = make_db("A.x")
    sub = db.subscribe()
    waiter = asyncio.create_task(sub.wait(), name="waiter")
    await asyncio.sleep(0)
    assert not waiter.done()
    db.write("A.x", 1.0)
    await asyncio.wait_for(waiter, 1)
    # whoever drains first gets the change: the waiter took nothing
    assert sub.pending == 1 and [c.new.value for c in sub.drain()] == [1.0]
    waiter = asyncio.create_task(sub.wait(), name="waiter")
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.close()
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(sub.wait(), 1)  # closed: returns at once


async def test_unsubscribed_gets_nothing_more() -> None:
    db = make_db("A.x")
    sub = db.subscribe()
    sub.close()
    db.write("A.x", 1.0)
    assert sub.pending == 0
    with pytest.raises(StopAsyncIteration):
        await sub.get()


# -- keep newest: observations a gateway replays after an outage --------------------------------
async def test_keep_newest_an_older_observation_does_not_replace_the_current_value() -> None:
    db = make_db("M1.energy_total")
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    shown = db.subscribe(include_reported=True)  # a display: newest only
    history = db.subscribe(include_reported=True, include_late=True)
    db.write("M1.energy_total", 100.0, source_ts=t0, keep_newest=True)
    db.write("M1.energy_total", 90.0, source_ts=t0 - timedelta(minutes=20), keep_newest=True)  # replayed
    db.write("M1.energy_total", 95.0, source_ts=t0 - timedelta(minutes=10), keep_newest=True)  # replayed
    current = db.read("M1.energy_total")
    assert (current.value, current.source_ts) == (100.0, t0)
    assert [(c.new.value, c.late) for c in shown.drain()] == [(100.0, False)]
    got = [(c.new.value, c.new.source_ts, c.late) for c in history.drain()]
    assert got == [
        (100.0, t0, False),
        (90.0, t0 - timedelta(minutes=20), True),
        (95.0, t0 - timedelta(minutes=10), True),
    ]
    assert db.stats()["late"] == 2
    # a newer observation replaces it as usual
    db.write("M1.energy_total", 101.0, source_ts=t0 + timedelta(minutes=1), keep_newest=True)
    assert db.read("M1.energy_total").value == 101.0
    shown.close()
    history.close()


async def test_keep_newest_a_tag_never_written_takes_a_replayed_observation() -> None:
    db = make_db("M1.energy_total")  # registered now: "no value" is no observation
    old = utcnow() - timedelta(hours=1)
    db.write("M1.energy_total", 5.0, source_ts=old, keep_newest=True)
    assert db.read("M1.energy_total").value == 5.0


async def test_without_keep_newest_the_last_write_wins() -> None:
    db = make_db("M1.power")
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    db.write("M1.power", 1.0, source_ts=t0)
    db.write("M1.power", 2.0, source_ts=t0 - timedelta(minutes=1))
    assert db.read("M1.power").value == 2.0


async def test_late_observations_do_not_coalesce_with_current_ones() -> None:
    db = make_db("M1.energy_total")
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    sub = db.subscribe(include_late=True, maxsize=1)
    db.write("M1.energy_total", 1.0, source_ts=t0, keep_newest=True)  # fills the FIFO
    db.write("M1.energy_total", 3.0, source_ts=t0 + timedelta(minutes=2), keep_newest=True)  # overflow
    db.write("M1.energy_total", 2.0, source_ts=t0 + timedelta(minutes=1), keep_newest=True)  # late, overflow
    got = [(c.new.value, c.late) for c in sub.drain()]
    sub.close()
    assert got == [(1.0, False), (3.0, False), (2.0, True)]
