"""Live room summaries: states from the tag contract, counts, server-side filtering and
paging, and what each batch of tag changes tells the feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hmi.live import CATEGORIES, FilterError, LiveRooms, LiveUpdate, RoomFilter
from scada.config import load_demo_config
from scada.db import Database, async_url
from scada.site.assets import AssetRegistry
from scada.site.component import resolve_site_file
from scada.site.importer import apply_site, parse_site_file
from scada.users.audit import Actor
from tags import DataType, Quality, QualityReason, TagDB, TagMeta
from tags.names import meter_tag, room_tag

from .producers import publish_meter_tags, publish_room_tags


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[AssetRegistry]:
    db = Database(async_url(f"sqlite:///{tmp_path / 'live.db'}"))
    await db.upgrade()
    path = resolve_site_file(load_demo_config(), "embedded:site-demo.toml")
    await apply_site(db, parse_site_file(path), Actor("test", "cli"))
    assets = AssetRegistry(db)
    await assets.load()
    try:
        yield assets
    finally:
        await db.dispose()


@pytest.fixture
def tagdb(registry: AssetRegistry) -> TagDB:
    db = TagDB()
    publish_room_tags(db, registry.snapshot, balance=50.0)
    publish_meter_tags(db, registry.snapshot, power=1.0)
    return db


def _started(registry: AssetRegistry, tagdb: TagDB) -> tuple[LiveRooms, list[LiveUpdate]]:
    live = LiveRooms(registry, tagdb, minor_units=2)
    live.start()
    updates: list[LiveUpdate] = []
    live.add_listener(updates.append)
    return live, updates


def _pump(live: LiveRooms) -> None:
    """Apply what the subscription holds, as the run task does."""
    assert live._sub is not None
    batch = live._sub.drain()
    if batch:
        live._apply(batch)


def _recount(live: LiveRooms) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for room_id in live.matching(RoomFilter()):
        counts[live.summary(room_id)["state"]] += 1  # type: ignore[index]
    return counts


async def test_summary_of_a_fed_room(registry: AssetRegistry, tagdb: TagDB) -> None:
    live, _ = _started(registry, tagdb)
    s = live.summary("B1-R101")
    assert s is not None
    assert s["name"] == "R101" and s["building_name"] == "Building 1" and s["floor_name"] == "F1"
    assert s["balance"] == "50.00" and s["balance_quality"] == "good"
    assert s["supply"] == "on" and s["account"] == "open" and s["alarm_level"] == 0
    assert s["comm"] == "ok" and s["power"] == 1.0 and s["state"] == "ok"
    assert s["ts"] is not None
    # a room with a water meter too: power counts electricity only, both meters count for comms
    s3 = live.summary("B1-R103")
    assert s3 is not None and s3["meters"] == 2 and s3["power"] == 1.0
    live.close()


async def test_unfed_room_is_unknown(registry: AssetRegistry) -> None:
    live, _ = _started(registry, TagDB())
    s = live.summary("B1-R101")
    assert s is not None and s["state"] == "unknown" and s["balance"] is None and s["comm"] == "unknown"
    assert live.counts()["unknown"] == 60
    live.close()


@pytest.mark.parametrize(
    ("writes", "state"),
    [
        ([(meter_tag("E-B1-101", "comm_ok"), False)], "offline"),
        ([(room_tag("B1-R101", "supply_state"), "off")], "off"),
        ([(room_tag("B1-R101", "supply_state"), "cutting")], "off"),
        ([(meter_tag("E-B1-101", "active_alarms"), 1)], "alarm"),
        ([(meter_tag("E-B1-101", "relay_fault"), True)], "alarm"),
        # the room's own (balance) alarms show as "low", not "alarm"
        ([(room_tag("B1-R101", "alarm_level"), 2), (room_tag("B1-R101", "active_alarms"), 1), (room_tag("B1-R101", "alarm_priority"), 2)], "low"),
        ([(room_tag("B1-R101", "alarm_level"), 1)], "low"),
        ([(room_tag("B1-R101", "account_state"), "none")], "no_account"),
        # the worst state wins: offline beats everything
        ([(room_tag("B1-R101", "alarm_level"), 3), (meter_tag("E-B1-101", "comm_ok"), False), (room_tag("B1-R101", "supply_state"), "off")], "offline"),
        ([(room_tag("B1-R101", "supply_state"), "restoring")], "ok"),
    ],
)
async def test_room_states(registry: AssetRegistry, tagdb: TagDB, writes: list[tuple[str, object]], state: str) -> None:
    for point, dtype in (("active_alarms", DataType.INT), ("relay_fault", DataType.BOOL)):
        tagdb.register(TagMeta(meter_tag("E-B1-101", point), dtype))
    live, updates = _started(registry, tagdb)
    for name, value in writes:
        tagdb.write(name, value)  # type: ignore[arg-type]
    _pump(live)
    assert live.summary("B1-R101")["state"] == state  # type: ignore[index]
    assert live.counts() == _recount(live)
    if state != "ok":
        assert updates[-1].category_changed == {"B1-R101"}
        assert live.matching(RoomFilter(state=state)) == ["B1-R101"]  # type: ignore[arg-type]
    live.close()


async def test_quality_is_carried_not_hidden(registry: AssetRegistry, tagdb: TagDB) -> None:
    live, _ = _started(registry, tagdb)
    tagdb.write(meter_tag("E-B1-101", "power"), None, Quality.BAD, QualityReason.COMM_FAILURE)
    tagdb.write(room_tag("B1-R101", "balance"), None, Quality.UNCERTAIN, QualityReason.STALE)
    tagdb.write(meter_tag("E-B1-102", "power"), float("nan"))
    _pump(live)
    s = live.summary("B1-R101")
    assert s is not None
    assert s["power"] == 1.0 and s["power_quality"] == "bad"  # last value, marked bad
    assert s["balance"] == "50.00" and s["balance_quality"] == "uncertain"
    assert live.summary("B1-R102")["power"] is None  # type: ignore[index]
    live.close()


async def test_updates_name_rooms_and_tags(registry: AssetRegistry, tagdb: TagDB) -> None:
    live, updates = _started(registry, tagdb)
    tagdb.write(meter_tag("E-B1-205", "power"), 2.5)
    tagdb.write(room_tag("B1-R301", "balance"), 12.0)
    _pump(live)
    assert len(updates) == 1
    u = updates[0]
    assert u.rooms == {"B1-R205", "B1-R301"} and not u.category_changed and not u.rebuilt
    assert u.tags == {"B1-R205": ["E-B1-205.power"]}
    assert live.summary("B1-R205")["power"] == 2.5  # type: ignore[index]
    assert '"power":2.5' in live.encoded("B1-R205")  # type: ignore[operator]
    live.close()


async def test_filters_paging_and_order(registry: AssetRegistry, tagdb: TagDB) -> None:
    live, _ = _started(registry, tagdb)
    ids = live.matching(RoomFilter())
    assert len(ids) == 60 and ids[:3] == ["B1-R101", "B1-R102", "B1-R103"] and ids[-1] == "B1-R415"
    assert live.matching(RoomFilter(floor="B1-F3"))[0] == "B1-R301"
    assert len(live.matching(RoomFilter(building="B1"))) == 60
    assert live.matching(RoomFilter(q="r41")) == [f"B1-R41{i}" for i in range(6)]
    page = live.page(RoomFilter(floor="B1-F2"), page=2, page_size=10)
    assert page.total == 15 and page.pages == 2 and page.ids == [f"B1-R2{i:02d}" for i in range(11, 16)]
    assert live.page(RoomFilter(), page=99, page_size=50).page == 2  # clamped to the last page
    for bad, field in ((RoomFilter(building="B9"), "building"), (RoomFilter(floor="B1-F9"), "floor")):
        with pytest.raises(FilterError) as err:
            live.check_filter(bad)
        assert err.value.field == field
    live.close()


async def test_registry_reload_rebuilds(registry: AssetRegistry, tagdb: TagDB) -> None:
    live, updates = _started(registry, tagdb)
    await registry.set_active("E-B1-101", False, Actor("test", "cli"), reason="test")
    assert updates[-1].rebuilt
    assert live.summary("B1-R101")["meters"] == 0  # type: ignore[index]
    assert live.room_of_meter("E-B1-101") is None
    live.close()


async def test_run_follows_the_stream(registry: AssetRegistry, tagdb: TagDB) -> None:
    import asyncio

    live, updates = _started(registry, tagdb)
    task = asyncio.get_running_loop().create_task(live.run())
    tagdb.write(meter_tag("E-B1-110", "power"), 4.0)
    for _ in range(100):
        if updates:
            break
        await asyncio.sleep(0.01)
    assert updates and "B1-R110" in updates[0].rooms
    live.close()
    await asyncio.wait_for(task, 1)  # close ends the task
