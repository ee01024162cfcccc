"""Feeding the tag contract the way the parts that own the tags do (prepaid engine: room tags;
poller: meter tags), for HMI tests that run without those parts."""

from __future__ import annotations

from scada.site.assets import AssetSnapshot
from tags import TagDB, TagMeta
from tags.model import DataType
from tags.names import meter_tag, room_tag

__all__ = ["publish_room_tags", "publish_meter_tags"]

ROOM_TAGS = {
    "balance": DataType.FLOAT,
    "alarm_level": DataType.INT,
    "supply_state": DataType.STRING,
    "account_state": DataType.STRING,
    "active_alarms": DataType.INT,
    "alarm_priority": DataType.INT,
}


def publish_room_tags(db: TagDB, snap: AssetSnapshot, *, balance: float = 100.0) -> None:
    for room in snap.rooms.values():
        for point, dtype in ROOM_TAGS.items():
            name = room_tag(room.id, point)
            if name not in db:
                db.register(TagMeta(name, dtype, room_id=room.id, point=point))
        db.write(room_tag(room.id, "balance"), balance)
        db.write(room_tag(room.id, "alarm_level"), 0)
        db.write(room_tag(room.id, "supply_state"), "on")
        db.write(room_tag(room.id, "account_state"), "open")
        db.write(room_tag(room.id, "active_alarms"), 0)
        db.write(room_tag(room.id, "alarm_priority"), 0)


def publish_meter_tags(db: TagDB, snap: AssetSnapshot, *, power: float = 0.5) -> None:
    for m in snap.active_meters:
        points = [("comm_ok", DataType.BOOL, "")]
        if m.kind == "electricity":
            points.append(("power", DataType.FLOAT, "kW"))
        for point, dtype, unit in points:
            name = meter_tag(m.id, point)
            if name not in db:
                db.register(TagMeta(name, dtype, unit=unit, meter_id=m.id, room_id=m.room_id, point=point))
        db.write(meter_tag(m.id, "comm_ok"), True)
        if m.kind == "electricity":
            db.write(meter_tag(m.id, "power"), power)
