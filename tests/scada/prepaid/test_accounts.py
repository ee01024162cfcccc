"""Account operations on a real database: open, recharge (idempotent), refund, reversal, close."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from scada.prepaid.accounts import PostResult, RechargeItem
from scada.prepaid.errors import PrepaidError
from scada.prepaid.models import MeterSegment
from scada.prepaid.tariff_definition import TariffDefinition
from scada.users.audit import AuditLog

from ...harness import write_lock_held
from .conftest import CASHIER, T0, Site


async def test_open_records_opening_entry_baselines_and_audit(site: Site) -> None:
    await site.flat_tariff()
    view = await site.open("R1", opening=5_000, readings={"E1": "100.5"}, contact=None)
    assert view.balance_minor == 5_000 and view.state == "open" and view.supply_state == "on"
    _, entries = await site.engine.ledger("R1")
    assert [(e.kind, e.amount_minor, e.balance_after_minor, e.actor) for e in entries] == [("opening", 5000, 5000, "cashier1")]
    async with site.db.sessions() as s:
        seg = (await s.scalars(select(MeterSegment).where(MeterSegment.meter_id == "E1"))).one()
    assert seg.baseline == Decimal("100.5") and seg.segment == 1
    audit = await AuditLog(site.db).query(action="account.open")
    assert audit and audit[0].actor == "cashier1" and audit[0].after["room"] == "R1"
    assert site.tagdb.read("room:R1.account_state").value == "open"
    assert site.tagdb.read("room:R1.balance").value == 50.0
    with pytest.raises(PrepaidError, match="already has an open account"):
        await site.open("R1")


async def test_open_refuses_a_missing_tariff_for_a_meter_kind(site: Site) -> None:
    await site.flat_tariff()
    with pytest.raises(PrepaidError) as err:
        await site.open("R2")  # R2 has a water meter
    assert err.value.field == "tariffs.water" and err.value.status == 422
    with pytest.raises(PrepaidError) as err:
        await site.open("R1", tariff="NOPE")
    assert err.value.field == "tariffs.electricity"
    with pytest.raises(PrepaidError) as err:
        await site.open("R9")
    assert err.value.status == 404


async def test_recharge_is_idempotent_by_channel_and_reference(site: Site) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=0)
    first = await site.engine.recharge("R1", 10_000, channel="cash", reference="POS-1", actor=CASHIER)
    again = await site.engine.recharge("R1", 10_000, channel="cash", reference="POS-1", actor=CASHIER)
    assert not first.replayed and again.replayed and again.entry.id == first.entry.id
    assert again.account.balance_minor == 10_000
    other_channel = await site.engine.recharge("R1", 500, channel="wechat", reference="POS-1", actor=CASHIER)
    assert not other_channel.replayed and other_channel.account.balance_minor == 10_500
    with pytest.raises(PrepaidError) as err:
        await site.engine.recharge("R1", 9_999, channel="cash", reference="POS-1", actor=CASHIER)
    assert err.value.status == 409 and err.value.field == "reference"


async def test_concurrent_recharges_with_one_reference_post_once(site: Site) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=0)
    results = await asyncio.gather(*[
        site.engine.recharge("R1", 2_000, channel="cash", reference="DUP", actor=CASHIER) for _ in range(5)
    ])
    assert len({r.entry.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    view = await site.engine.account("R1")
    assert view is not None and view.balance_minor == 2_000


async def test_recharge_many_posts_each_once_in_one_transaction(site: Site) -> None:
    await site.flat_tariff()
    opened = await site.open("R1", opening=0)
    first = await site.engine.recharge("R1", 1_000, channel="sandbox", reference="T0", actor=CASHIER)
    seen: list[list[PostResult | PrepaidError]] = []

    async def within(_s: object, results: list[PostResult | PrepaidError]) -> None:
        seen.append(results)

    items = [
        RechargeItem("R1", 2_000, "sandbox", "T1"),
        RechargeItem("R1", 3_000, "sandbox", "T2", account_id=opened.id),
        RechargeItem("R1", 2_000, "sandbox", "T1"),  # the same recharge again in the batch: answers the first
        RechargeItem("R1", 1_000, "sandbox", "T0"),  # posted before: a replay
        RechargeItem("R1", 999, "sandbox", "T2"),  # its reference used for another amount
        RechargeItem("R1", 500, "sandbox", "T3", account_id=opened.id + 1000),  # not the room's open account
        RechargeItem("R9", 500, "sandbox", "T4"),  # no open account
        RechargeItem("R1", 0, "sandbox", "T5"),
    ]
    out = await site.engine.accounts.recharge_many(items, actor=CASHIER, within=within)
    assert seen == [out]
    ok = [r for r in out if isinstance(r, PostResult)]
    assert [(r.entry.amount_minor, r.account.balance_minor, r.replayed) for r in ok] == [
        (2_000, 3_000, False), (3_000, 6_000, False), (2_000, 3_000, True), (1_000, 6_000, True)]  # a replay: the account as it is
    assert ok[0].entry.id == ok[2].entry.id and ok[3].entry.id == first.entry.id and ok[0].entry.id is not None
    errors = [(r.status, r.field) for r in out if isinstance(r, PrepaidError)]
    assert errors == [(409, "reference"), (404, None), (404, None), (422, "amount")]
    view = await site.engine.account("R1")
    assert view is not None and view.balance_minor == 6_000
    _, entries = await site.engine.ledger("R1")
    assert sorted(e.reference for e in entries if e.kind == "recharge") == ["T0", "T1", "T2"]
    assert len(await AuditLog(site.db).query(action="account.recharge")) == 3


async def test_refund_and_reversal(site: Site) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=1_000)
    r = await site.engine.recharge("R1", 5_000, channel="cash", reference="A", actor=CASHIER)
    with pytest.raises(PrepaidError, match="more than the balance"):
        await site.engine.refund("R1", 6_001, actor=CASHIER, reason="moving out")
    with pytest.raises(PrepaidError) as err:
        await site.engine.refund("R1", 100, actor=CASHIER, reason=" ")
    assert err.value.field == "reason"
    refund = await site.engine.refund("R1", 1_000, actor=CASHIER, reason="overpaid")
    assert refund.account.balance_minor == 5_000 and refund.entry.amount_minor == -1_000
    rev = await site.engine.reverse(r.entry.id, actor=CASHIER, reason="card payment bounced")
    assert rev.entry.kind == "reversal" and rev.entry.amount_minor == -5_000 and rev.entry.reverses_id == r.entry.id
    assert rev.account.balance_minor == 0
    with pytest.raises(PrepaidError, match="already reversed"):
        await site.engine.reverse(r.entry.id, actor=CASHIER, reason="again")
    with pytest.raises(PrepaidError, match="cannot be reversed"):
        await site.engine.reverse(rev.entry.id, actor=CASHIER, reason="undo the undo")
    with pytest.raises(PrepaidError) as err:
        await site.engine.reverse(999_999, actor=CASHIER, reason="x")
    assert err.value.status == 404
    actions = [e.action for e in await AuditLog(site.db).query(target_type="account")]
    assert {"account.refund", "account.recharge", "account.open"} <= set(actions)
    assert [e.action for e in await AuditLog(site.db).query(target_type="ledger")] == ["ledger.reverse"]


async def test_close_bills_final_reading_refunds_and_detaches(site: Site) -> None:
    await site.flat_tariff(price="0.5")
    await site.open("R1", opening=10_000)  # no baseline given: the first reading is the baseline
    await site.feed("E1", [(T0, "100"), (T0 + dt.timedelta(hours=1), "102")])
    view, settlement = await site.engine.close_account("R1", actor=CASHIER, reason="tenant moved out", final_readings={"E1": Decimal("104")})
    # 4 kWh × 0.50 = 2.00 billed; 100.00 − 2.00 = 98.00 refunded
    assert view.state == "closed" and view.balance_minor == 0
    assert settlement is not None and settlement.amount_minor == -9_800 and settlement.kind == "settlement"
    _, entries = await site.engine.ledger("R1")
    assert [e.kind for e in reversed(entries)] == ["opening", "deduction", "deduction", "settlement"]
    async with site.db.sessions() as s:
        seg = (await s.scalars(select(MeterSegment).where(MeterSegment.meter_id == "E1"))).one()
    assert seg.final_reading == Decimal("104") and seg.ended_at is not None
    assert site.tagdb.read("room:R1.account_state").value == "closed"
    # a new account starts a new segment; the old one stays closed
    reopened = await site.open("R1", opening=0, readings={"E1": "104"})  # baseline 104, now
    assert reopened.id != view.id
    await site.feed("E1", [(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), "106")])
    assert (await site.engine.account("R1")).balance_minor == -100  # type: ignore[union-attr]


async def test_close_refuses_arrears_and_unknown_meters(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100)
    await site.feed("E1", [(T0, "0"), (T0 + dt.timedelta(hours=1), "5")])
    with pytest.raises(PrepaidError, match="owes 4.00"):
        await site.engine.close_account("R1", actor=CASHIER, reason="x")
    with pytest.raises(PrepaidError) as err:
        await site.engine.close_account("R1", actor=CASHIER, reason="x", final_readings={"E2": Decimal(1)})
    assert err.value.field == "final_readings.E2"
    view = await site.engine.account("R1")
    assert view is not None and view.state == "open"


async def test_room_contact(site: Site) -> None:
    from scada.prepaid.ledger import Contact

    await site.flat_tariff()
    await site.open("R1", contact=Contact("Li Lei", "+8613800000000", "li@example.com", "zh-CN"))
    assert await site.engine.room_contact("R1") == Contact("Li Lei", "+8613800000000", "li@example.com", "zh-CN")
    assert await site.engine.room_contact("R2") is None  # no account
    await site.open("R3", contact=Contact("Nobody", None, None, "en"))
    assert await site.engine.room_contact("R3") is None  # nothing to reach them by


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_tariff_lookups_do_not_wait_for_sqlites_write_lock(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time-of-use checks look up a meter's tariff once a meter (every meter at a site's start)
    and the HMI at every tariff page: a lookup is a read, and waits for no writer."""
    await site.flat_tariff()
    with write_lock_held(site.db.url.database or "", monkeypatch):  # a lookup that took the lock fails soon
        info = await site.engine.tariffs.get("FLAT")
        assert info is not None and info.id == "FLAT"
        assert [t.id for t in await site.engine.tariffs.list()] == ["FLAT"]
        assert await site.engine.tariffs.get("NONE") is None


async def test_a_tariff_version_is_parsed_once_and_a_new_one_is_seen(site: Site) -> None:
    """Lookups parse a version's definition once (it never changes once written); a version added
    later, and every version of another tariff, come back as written."""
    await site.flat_tariff("FLAT", price="0.5")
    await site.flat_tariff("OTHER", price="0.7")
    first = await site.engine.tariffs.get("FLAT")
    again = await site.engine.tariffs.get("FLAT")
    assert first is not None and again is not None
    assert again.versions[0].definition is first.versions[0].definition
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    await site.engine.tariffs.add_version("FLAT", TariffDefinition.model_validate({"price": "0.6"}), CASHIER, effective_from=later)
    listed = {t.id: t for t in await site.engine.tariffs.list()}
    prices = [str(v.definition.price) for v in listed["FLAT"].versions]
    assert prices == ["0.5", "0.6"] and [str(v.definition.price) for v in listed["OTHER"].versions] == ["0.7"]
    assert listed["FLAT"].versions[0].definition is first.versions[0].definition
