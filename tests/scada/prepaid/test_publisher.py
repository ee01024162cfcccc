"""A billing batch publishes its rooms' account tags in one write (``publish_accounts``): the same
values as publishing each room on its own (``publish_account``), rooms not announced yet are
registered, and the balance is the float of the exact decimal amount."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from scada.prepaid.ledger import AccountView, Contact
from scada.prepaid.money import minor_to_decimal
from scada.prepaid.publisher import RoomPublisher
from tags import TagDB

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
POINTS = ("account_state", "balance", "alarm_level", "supply_state")


def _view(room: str, balance_minor: int, *, state: str = "open", level: int = 1, supply: str = "on", id_: int = 1) -> AccountView:
    return AccountView(id_, room, state, balance_minor, 0, 0, None, level, supply, False, False, True, True, (),
                       Contact("", None, None, "en"), "T", None, None, None, T0, None, Decimal(0))


def _values(db: TagDB, rooms: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for room in rooms:
        for p in POINTS:
            v = db.read(f"room:{room}.{p}")
            out[f"{room}.{p}"] = (type(v.value), v.value, v.quality)
    return out


@settings(max_examples=200, deadline=None)
@given(
    balances=st.lists(st.integers(-10**15, 10**15), min_size=1, max_size=6),
    minor_units=st.sampled_from([0, 2, 3]),
    closed=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_one_write_for_the_batch_publishes_what_one_write_per_room_does(balances: list[int], minor_units: int, closed: list[bool]) -> None:
    views = [_view(f"R{i}", b, state="closed" if closed[i] else "open", level=i % 4, supply=("on", "off")[i % 2], id_=i)
             for i, b in enumerate(balances)]
    rooms = [v.room_id for v in views]
    one_by_one, batch = TagDB(), TagDB()
    a = RoomPublisher(one_by_one, minor_units, "CNY")
    b = RoomPublisher(batch, minor_units, "CNY")
    for view in views:
        a.publish_account(view, view.room_id)
    b.publish_accounts(views)  # the rooms were never announced: registered on the way
    assert _values(one_by_one, rooms) == _values(batch, rooms)
    for view in views:
        if view.open:
            assert batch.read(f"room:{view.room_id}.balance").value == float(minor_to_decimal(view.balance_minor, minor_units))


def test_the_batch_write_has_one_timestamp_and_registers_a_room_again_after_it_was_removed() -> None:
    db = TagDB()
    publisher = RoomPublisher(db, 2, "CNY")
    publisher.publish_accounts([_view("R1", 1050), _view("R2", -5, level=3)])
    stamps = {db.read(f"room:{r}.{p}").server_ts for r in ("R1", "R2") for p in POINTS}
    assert len(stamps) == 1
    assert db.read("room:R1.balance").value == 10.5 and db.read("room:R2.alarm_level").value == 3
    for p in POINTS:
        db.unregister(f"room:R1.{p}")
    publisher.publish_accounts([_view("R1", 2000)])
    assert db.read("room:R1.balance").value == 20.0


def test_rooms_without_an_account_and_cleared_holds_publish_what_the_single_calls_do() -> None:
    one_by_one, batch = TagDB(), TagDB()
    a = RoomPublisher(one_by_one, 2, "CNY")
    b = RoomPublisher(batch, 2, "CNY")
    rooms: list[tuple[str, AccountView | None]] = [("R1", None), ("R2", _view("R2", 99)), ("R3", None)]
    for room, view in rooms:
        a.publish_account(view, room)
    b.publish_rooms(rooms)
    names = [f"room:{r}.{p}" for r, _v in rooms for p in POINTS]
    assert [(one_by_one.read(n).value, one_by_one.read(n).quality) for n in names] == [
        (batch.read(n).value, batch.read(n).quality) for n in names]
    assert batch.read("room:R1.account_state").value == "none" and batch.read("room:R1.alarm_level").value == 0
    for m in ("E1", "E2"):
        a.publish_hold(m, None, "")
    b.clear_holds(["E1", "E2"])
    for m in ("E1", "E2"):
        x, y = one_by_one.read(f"{m}.review_hold"), batch.read(f"{m}.review_hold")
        assert (x.value, x.quality, x.detail) == (y.value, y.quality, y.detail)
        assert (y.value, y.detail) == (False, "")
