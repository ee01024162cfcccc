"""Room and meter condition tags published by the prepaid engine.

``room:<room>.balance`` (float, currency units, display only — money lives in the ledger),
``room:<room>.alarm_level`` (0..3), ``room:<room>.account_state`` (``none``, ``open``,
``closed``), ``room:<room>.supply_state`` (``on``, ``cutting``, ``off``, ``restoring``), and per
meter ``<meter>.review_hold`` (bool; its detail says why: ``jump: register jumped …``).
"""

from __future__ import annotations

from collections.abc import Iterable

from scada.prepaid.ledger import AccountView
from tags import DataType, TagDB, TagMeta, Value
from tags.names import meter_tag, room_tag

__all__ = ["RoomPublisher"]

# the order publish_account writes them in
_ACCOUNT_POINTS = ("account_state", "balance", "alarm_level", "supply_state")


class RoomPublisher:
    def __init__(self, tagdb: TagDB, minor_units: int, currency: str) -> None:
        self.tagdb = tagdb
        self.minor_units = minor_units
        self.currency = currency
        self._names: dict[str, tuple[str, ...]] = {}  # room → its account tags' names

    def register_room(self, room_id: str) -> None:
        self.tagdb.register_many(self._room_metas(room_id))

    def _room_metas(self, room_id: str) -> tuple[TagMeta, ...]:
        # the names kept for publish_rooms are the tag table's own strings (one copy per room)
        state, balance, level, supply = names = tuple(room_tag(room_id, p) for p in _ACCOUNT_POINTS)
        self._names[room_id] = names
        return (
            TagMeta(balance, DataType.FLOAT, self.currency, "prepaid balance (display only)", room_id=room_id, point="balance"),
            TagMeta(
                level, DataType.INT, "", "balance alarm level: 0 none, 1 low, 2 very low, 3 exhausted",
                room_id=room_id, point="alarm_level",
            ),
            TagMeta(state, DataType.STRING, "", "prepaid account: none, open, closed", room_id=room_id, point="account_state"),
            TagMeta(supply, DataType.STRING, "", "supply: on, cutting, off, restoring", room_id=room_id, point="supply_state"),
        )

    def register_meter(self, meter_id: str, room_id: str | None) -> None:
        self.tagdb.register(self._meter_meta(meter_id, room_id))

    @staticmethod
    def _meter_meta(meter_id: str, room_id: str | None) -> TagMeta:
        return TagMeta(
            meter_tag(meter_id, "review_hold"), DataType.BOOL, "", "a register reading is held for review",
            meter_id=meter_id, room_id=room_id, point="review_hold",
        )

    def meters(self, meters: Iterable[tuple[str, str | None]]) -> None:
        """:meth:`register_meter` for each ``(meter, room)``, in one registration (at start:
        50,000 meters registered one call each took a second)."""
        self.tagdb.register_many([self._meter_meta(meter_id, room_id) for meter_id, room_id in meters])

    def publish_account(self, view: AccountView | None, room_id: str) -> None:
        self.publish_rooms(((room_id, view),))

    def publish_accounts(self, views: Iterable[AccountView]) -> None:
        """:meth:`publish_account` for each view of a billing batch, as one tag write with one
        timestamp (the names of each room's tags are built once)."""
        self.publish_rooms((view.room_id, view) for view in views)

    def publish_rooms(self, rooms: Iterable[tuple[str, AccountView | None]]) -> None:
        """:meth:`publish_account` for each ``(room, view)``, as one tag write."""
        db = self.tagdb
        scale = 10 ** self.minor_units
        values: list[tuple[str, Value]] = []
        for room_id, view in rooms:
            names = self._names.get(room_id)
            if names is None or names[0] not in db:
                if room_tag(room_id, "account_state") not in db:
                    self.register_room(room_id)  # keeps the names
                else:
                    self._names[room_id] = tuple(room_tag(room_id, p) for p in _ACCOUNT_POINTS)
                names = self._names[room_id]
            if view is None:
                values += ((names[0], "none"), (names[2], 0))
                continue
            if view.open:
                # the tag is a display value (money lives in the ledger): int / int is the
                # correctly rounded float of the exact amount, as float(Decimal) would be
                balance: float = view.balance_minor / scale
                level = view.alarm_level
            else:
                balance, level = 0.0, 0
            values += ((names[0], view.state), (names[1], balance), (names[2], level), (names[3], view.supply_state))
        db.write_values(values)

    def clear_holds(self, meter_ids: Iterable[str]) -> None:
        """:meth:`publish_hold` of "no hold" for each meter, as one tag write."""
        db = self.tagdb
        values: list[tuple[str, Value]] = []
        for meter_id in meter_ids:
            name = meter_tag(meter_id, "review_hold")
            if name not in db:
                self.register_meter(meter_id, None)
            values.append((name, False))
        db.write_values(values)

    def publish_hold(self, meter_id: str, kind: str | None, detail: str) -> None:
        if meter_tag(meter_id, "review_hold") not in self.tagdb:
            self.register_meter(meter_id, None)
        self.tagdb.write(
            meter_tag(meter_id, "review_hold"), kind is not None, detail=f"{kind}: {detail}" if kind else ""
        )

    def rooms(self, room_ids: Iterable[str]) -> None:
        """:meth:`register_room` for each room, in one registration (the rooms' tags registered
        one call each took seconds at 50,000 rooms)."""
        metas: list[TagMeta] = []
        for room_id in room_ids:
            metas += self._room_metas(room_id)
        self.tagdb.register_many(metas)
