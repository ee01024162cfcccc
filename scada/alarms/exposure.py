"""Alarm counts as tags, for the OPC UA server and the HMI room grid.

- ``<meter>.active_alarms``: standing alarms of the meter, plus its link's alarm (a link
  alarm stands for the meters it silences);
- ``room:<room>.active_alarms`` and ``room:<room>.alarm_priority`` (highest standing priority,
  0 none): the room's own alarms and those of its meters;
- ``system:alarms.standing`` and ``system:alarms.unacknowledged``: totals.

"Standing" is the operators' active list: active, or cleared but not yet acknowledged.
Only counts that changed are written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from scada.alarms.alarm import Alarm
from scada.site.assets import AssetSnapshot
from tags import DataType, TagDB, TagMeta, TagWrite, names

__all__ = ["AlarmExposure"]


class AlarmExposure:
    def __init__(self, tagdb: TagDB) -> None:
        self.tagdb = tagdb
        self._published: dict[str, int] = {}  # tag -> value written
        self._nonzero: set[str] = set()  # tags whose written value is not 0

    def register(self, snapshot: AssetSnapshot) -> None:
        """Register the tags of every active meter and room (re-run after registry changes);
        new tags start at 0."""
        wanted: set[str] = set()
        for meter in snapshot.active_meters:
            name = names.meter_tag(meter.id, "active_alarms")
            wanted.add(name)
            self._register(TagMeta(name, DataType.INT, description="standing alarms of the meter", meter_id=meter.id,
                                   room_id=meter.room_id, point="active_alarms"))
        for room in snapshot.rooms.values():
            for point, description in (("active_alarms", "standing alarms of the room and its meters"),
                                       ("alarm_priority", "highest standing alarm priority (0 none, 4 critical)")):
                name = names.room_tag(room.id, point)
                wanted.add(name)
                self._register(TagMeta(name, DataType.INT, description=description, room_id=room.id, point=point))
        for point, description in (("standing", "standing alarms"), ("unacknowledged", "unacknowledged alarms")):
            name = names.system_tag("alarms", point)
            wanted.add(name)
            self._register(TagMeta(name, DataType.INT, description=description, point=point))
        for name in [n for n in self._published if n not in wanted]:
            self.tagdb.unregister(name)
            del self._published[name]
            self._nonzero.discard(name)
        new = [n for n in wanted if n not in self._published]
        self.tagdb.write_many(TagWrite(n, 0) for n in new)
        for name in new:
            self._published[name] = 0

    def _register(self, meta: TagMeta) -> None:
        if meta.name not in self.tagdb:
            self.tagdb.register(meta)

    def publish(self, alarms: Iterable[Alarm], snapshot: AssetSnapshot) -> int:
        """Write the counts that changed; returns how many tags were written. The work grows
        with the standing alarms, not with the size of the site."""
        meter_count: dict[str, int] = defaultdict(int)
        room_count: dict[str, int] = defaultdict(int)
        room_priority: dict[str, int] = defaultdict(int)
        link_alarms: dict[str, list[Alarm]] = defaultdict(list)
        standing = unacked = 0
        for a in alarms:
            if not a.standing:
                continue
            standing += 1
            unacked += not a.acknowledged
            if a.object_type == "link":
                link_alarms[a.object_id].append(a)
                continue
            if a.meter_id:
                meter_count[a.meter_id] += 1
            if a.room_id:
                room_count[a.room_id] += 1
                room_priority[a.room_id] = max(room_priority[a.room_id], int(a.priority))
        for link, standing_on_link in link_alarms.items():
            for meter in snapshot.meters_on_link(link):
                for a in standing_on_link:
                    meter_count[meter.id] += 1
                    if meter.room_id:
                        room_count[meter.room_id] += 1
                        room_priority[meter.room_id] = max(room_priority[meter.room_id], int(a.priority))
        values: dict[str, int] = {
            names.system_tag("alarms", "standing"): standing,
            names.system_tag("alarms", "unacknowledged"): unacked,
        }
        values.update((names.meter_tag(m, "active_alarms"), n) for m, n in meter_count.items())
        values.update((names.room_tag(r, "active_alarms"), n) for r, n in room_count.items())
        values.update((names.room_tag(r, "alarm_priority"), p) for r, p in room_priority.items())
        for name in self._nonzero - values.keys():
            values[name] = 0
        writes = [TagWrite(n, v) for n, v in values.items() if n in self._published and self._published[n] != v]
        if writes:
            self.tagdb.write_many(writes)
            for w in writes:
                self._published[w.name] = w.value  # type: ignore[assignment]
        self._nonzero = {n for n, v in values.items() if v and n in self._published}
        return len(writes)
