"""What the address space is built from: the registry's hierarchy and the registered tags."""

from __future__ import annotations

from decimal import Decimal

from protocols.opcua import SeriesKind
from scada.opcua.component import _point, site_spec
from scada.site.assets import (
    AssetSnapshot,
    BuildingInfo,
    FloorInfo,
    MeterInfo,
    RoomInfo,
    SiteInfo,
)
from tags import DataType, TagDB, TagMeta, names
from tags.slices import Slicer


def meter(mid: str, kind: str, room: str | None, *, active: bool = True, role: str = "tenant") -> MeterInfo:
    return MeterInfo(mid, kind, role, room, "B1", "p", "gw", 1, None, Decimal(1), None, Decimal(0), None, None, active)


def snapshot() -> AssetSnapshot:
    return AssetSnapshot(
        site=SiteInfo("s", "Site S", "UTC"),
        buildings={"B1": BuildingInfo("B1", "s", "Building 1")},
        floors={"F1": FloorInfo("F1", "B1", "F1", 1)},
        rooms={"R1": RoomInfo("R1", "F1", "B1", "R101", None), "R2": RoomInfo("R2", "F1", "B1", "R102", None)},
        meters={
            "E1": meter("E1", "electricity", "R1"),
            "W1": meter("W1", "water", "R1"),
            "E2": meter("E2", "electricity", "R2"),
            "OLD": meter("OLD", "electricity", "R2", active=False),
            "C1": meter("C1", "electricity", None, role="common"),
        },
    )


async def test_spec_from_registry_and_tags() -> None:
    db = TagDB()
    db.register(TagMeta("E1.energy_total", DataType.FLOAT, "kWh"))
    db.register(TagMeta("E1.relay_closed", DataType.BOOL))
    db.register(TagMeta("E1.active_alarms", DataType.INT))
    db.register(TagMeta("W1.volume_total", DataType.FLOAT, "m3", "cold water"))
    db.register(TagMeta("W1.valve_open", DataType.BOOL))
    db.register(TagMeta("E2.power", DataType.FLOAT))  # no unit in the meta: the catalogue's
    db.register(TagMeta("OLD.power", DataType.FLOAT, "kW"))
    db.register(TagMeta("room:R1.balance", DataType.FLOAT))
    db.register(TagMeta("room:R1.active_alarms", DataType.INT))
    db.register(TagMeta("room:R1.alarm_priority", DataType.INT))
    db.register(TagMeta("link:gw.comm_ok", DataType.BOOL))
    db.register(TagMeta("system:historian.buffer_fill", DataType.FLOAT))
    spec = await site_spec(snapshot(), db, currency="CNY", site_name="fallback")
    spec.check()
    assert spec.name == "Site S"
    assert set(spec.meters) == {"E1", "W1", "E2", "C1"}  # inactive meters are not published
    assert spec.meters["C1"].room_id is None and "common-area" in spec.meters["C1"].description
    assert spec.meters["E1"].switchable and spec.meters["W1"].switchable and not spec.meters["E2"].switchable
    assert spec.meters["W1"].kind == "water"
    e1 = {p.point: p for p in spec.meters["E1"].points}
    assert set(e1) == {"energy_total", "relay_closed", "active_alarms"}
    assert e1["energy_total"].unit == "kWh" and e1["energy_total"].description.startswith("Active energy")
    assert e1["active_alarms"].data_type is DataType.INT and not e1["active_alarms"].derived
    assert {p.point: p for p in spec.meters["W1"].points}["volume_total"].description == "cold water"
    assert spec.meters["E2"].points[0].unit == "kW"
    r1 = [p.point for p in spec.rooms["R1"].points]
    assert r1[:4] == ["balance", "supply_state", "alarm_level", "account_state"]
    assert set(r1[4:]) == {"active_alarms", "alarm_priority"}
    r2 = {p.point: p for p in spec.rooms["R2"].points}
    assert set(r2) == {"balance", "supply_state", "alarm_level", "account_state"}  # carried even unfed
    assert all(p.derived for p in r2.values())
    assert r2["balance"].unit == "CNY" and r2["balance"].tag == "room:R2.balance"
    assert r2["alarm_level"].data_type is DataType.INT and r2["supply_state"].data_type is DataType.STRING
    assert {p.point: p for p in spec.rooms["R1"].points}["balance"].unit == "CNY"


async def test_the_sliced_spec_is_the_same_spec() -> None:
    db = TagDB()
    for mid in ("E1", "W1", "E2", "C1"):
        db.register(TagMeta(f"{mid}.power", DataType.FLOAT, "kW"))
    db.register(TagMeta("room:R1.balance", DataType.FLOAT))
    db.register(TagMeta("link:gw.comm_ok", DataType.BOOL))
    plain = await site_spec(snapshot(), db, currency="CNY", site_name="fallback", slicer=Slicer(float("inf")))  # one slice
    sliced = await site_spec(snapshot(), db, currency="CNY", site_name="fallback", slicer=Slicer(0.0))  # a slice a step
    assert sliced == plain and set(sliced.meters) == {"E1", "W1", "E2", "C1"} and set(sliced.links) == {"gw"}


async def test_every_point_is_what_the_one_tag_function_makes() -> None:
    # the spec works a point's unit and description out once per shape: tags of one point with
    # different units or descriptions, and a history that differs per tag, still get their own
    db = TagDB()
    db.register(TagMeta("E1.power", DataType.FLOAT))
    db.register(TagMeta("E2.power", DataType.FLOAT, "W"))
    db.register(TagMeta("W1.power", DataType.FLOAT, "", "pump power"))
    db.register(TagMeta("C1.power", DataType.FLOAT))
    db.register(TagMeta("E1.note", DataType.STRING))
    db.register(TagMeta("room:R1.balance", DataType.FLOAT))
    db.register(TagMeta("room:R2.balance", DataType.FLOAT, "USD"))
    db.register(TagMeta("link:gw.comm_ok", DataType.BOOL))

    def history(tag: str) -> SeriesKind | None:
        return SeriesKind.INTERVALS if tag.startswith("E1.") else None

    spec = await site_spec(snapshot(), db, currency="CNY", site_name="fallback", history=history)
    made = [p for m in spec.meters.values() for p in m.points] + [p for r in spec.rooms.values() for p in r.points]
    made += [p for link in spec.links.values() for p in link.points]
    by_tag = {p.tag: p for p in made}
    for name in db.names():
        parsed = names.parse(name)
        assert by_tag[name] == _point(db.meta(name), parsed.kind, parsed.point, currency="CNY", history=history), name
    assert by_tag["E1.power"].unit == "kW" and by_tag["E2.power"].unit == "W" and by_tag["W1.power"].description == "pump power"
    assert by_tag["C1.power"].description == by_tag["E1.power"].description != "pump power"
    assert by_tag["E1.power"].history is SeriesKind.INTERVALS and by_tag["C1.power"].history is None
    assert by_tag["E1.note"].history is None  # text is never historized
    assert by_tag["room:R1.balance"].unit == "CNY" and by_tag["room:R2.balance"].unit == "USD"
