"""The asset snapshot's per-room, per-link and per-floor lookups and the historian's set of
metered meters: indexed or kept between calls, and still the same answers as a scan of
everything, in the same order, after the tags or the snapshot change."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from scada.history.component import _MeterIds
from scada.site.assets import AssetSnapshot, FloorInfo, MeterInfo, RoomInfo
from tags import DataType, TagDB, TagMeta


def meter(i: int, room: str | None, link: str, *, active: bool = True, role: str = "tenant") -> MeterInfo:
    return MeterInfo(
        id=f"E-{i}", kind="electricity", role=role, room_id=room, building_id="B1", profile="p", link=link,
        unit_id=i % 247 + 1, circuit=None, multiplier=Decimal(1), install_date=None, initial_reading=Decimal(0),
        max_power_kw=None, replaced_by=None, active=active,
    )


def random_snapshot(rng: random.Random) -> AssetSnapshot:
    floors = {f"F{i}": FloorInfo(f"F{i}", "B1", f"F{i}", i) for i in range(4)}
    rooms = {f"R{i}": RoomInfo(f"R{i}", rng.choice(list(floors)), "B1", f"R{i}", None) for i in range(30)}
    room_ids = [*rooms, None, "R-unknown"]
    meters = {}
    for i in rng.sample(range(1000), 120):  # ids out of order: the answers keep the snapshot's order
        m = meter(i, rng.choice(room_ids), f"L{rng.randrange(5)}", active=rng.random() > 0.2,
                  role=rng.choice(["tenant", "tenant", "common", "virtual"]))
        meters[m.id] = m
    return AssetSnapshot(floors=floors, rooms=rooms, meters=meters)


def test_lookups_answer_as_a_scan_of_every_meter_and_room() -> None:
    rng = random.Random(7)
    for _ in range(20):
        snap = random_snapshot(rng)
        for room in [*snap.rooms, None, "R-unknown", "R-none"]:
            for active_only in (True, False):
                scan = [m for m in snap.meters.values() if m.room_id == room and (m.active or not active_only)]
                assert snap.meters_of_room(room, active_only=active_only) == scan  # type: ignore[arg-type]
        for link in ["L0", "L1", "L2", "L3", "L4", "L9"]:
            assert snap.meters_on_link(link) == [m for m in snap.meters.values() if m.link == link and m.active]
        for floor in [*snap.floors, "F9"]:
            assert snap.rooms_on_floor(floor) == [r for r in snap.rooms.values() if r.floor_id == floor]


def test_a_lookup_answer_is_the_callers_to_change() -> None:
    snap = random_snapshot(random.Random(1))
    room = next(m.room_id for m in snap.meters.values() if m.room_id and m.active)
    first = snap.meters_of_room(room)
    first.clear()
    assert snap.meters_of_room(room)
    link = next(iter(snap.meters.values())).link
    snap.meters_on_link(link).clear()
    assert snap.meters_on_link(link) == [m for m in snap.meters.values() if m.link == link and m.active]


def register_meter(tagdb: TagDB, meter_id: str, points: tuple[str, ...] = ("energy_total", "power")) -> None:
    for p in points:
        tagdb.register(TagMeta(f"{meter_id}.{p}", DataType.FLOAT))


def test_the_historians_meter_set_follows_the_tags_and_the_snapshot() -> None:
    tagdb = TagDB()
    snap = AssetSnapshot(meters={m.id: m for m in (meter(1, "R1", "L"), meter(2, "R1", "L"), meter(3, None, "L", role="virtual"))})
    assets: Any = SimpleNamespace(snapshot=snap)
    for m in ("E-1", "E-2", "E-3"):
        register_meter(tagdb, m)
    register_meter(tagdb, "E-4", ("comm_ok",))  # no recorded point
    tagdb.register(TagMeta("E-5:relay.state", DataType.FLOAT))  # not a meter's own tag
    ids = _MeterIds(tagdb, assets)
    first = ids()
    assert first == {"E-1", "E-2"}  # the virtual meter's history is computed, not recorded
    assert ids() is first  # nothing moved: not worked out again

    register_meter(tagdb, "E-6")  # a tag of a meter not (yet) in the snapshot counts
    assert ids() == {"E-1", "E-2", "E-6"}
    for p in ("energy_total", "power"):
        tagdb.unregister(f"E-1.{p}")
    assert ids() == {"E-2", "E-6"}
    tagdb.unregister("E-1.power")  # gone already: nothing changes
    kept = ids()
    assert ids() is kept

    assets.snapshot = replace(snap, meters={**snap.meters, "E-2": replace(snap.meters["E-2"], role="virtual")})
    assert ids() == {"E-6"}
