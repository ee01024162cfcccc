"""The deduction engine on a real database: exactly once, holds for review, registers, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import Text, func, select
from sqlalchemy import cast as sa_cast

from scada.db import Database
from scada.prepaid.errors import PrepaidError
from scada.prepaid.models import LedgerEntry, MeterSegment, MeterState
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_definition import TariffDefinition
from tags import Quality, QualityReason

from .conftest import CASHIER, T0, Site, write_meter

H = dt.timedelta(hours=1)


async def deductions(site: Site, meter: str | None = None) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.kind == "deduction").order_by(LedgerEntry.id)
    if meter:
        stmt = stmt.where(LedgerEntry.meter_id == meter)
    async with site.db.sessions() as s:
        return list((await s.scalars(stmt)).all())


async def balance(site: Site, room: str = "R1") -> int:
    view = await site.engine.account(room)
    assert view is not None
    return view.balance_minor


async def test_readings_are_billed_with_the_remainder_carried(site: Site) -> None:
    await site.flat_tariff(price="0.5683")
    await site.open("R1", opening=10_000)
    # baseline 1000.00, then +0.01 kWh three times, then +12.34
    await site.feed("E1", [(T0, "1000.00"), (T0 + H, "1000.01"), (T0 + 2 * H, "1000.02"), (T0 + 3 * H, "1000.03"), (T0 + 5 * H, "1012.37")])
    rows = await deductions(site)
    # exact costs 0.005683 ×3 then 7.012822; running totals 0.005683, 0.011366, 0.017049, 7.029871
    # rounded running totals 0.01, 0.01, 0.02, 7.03 → deductions 1, 0, 1, 701 fen
    assert [-r.amount_minor for r in rows] == [1, 0, 1, 701]
    assert sum(r.cost for r in rows) == Decimal("7.029871")  # type: ignore[misc]
    assert await balance(site) == 10_000 - 703
    assert [(r.reading_from, r.reading_to) for r in rows] == [
        (Decimal("1000.00"), Decimal("1000.01")), (Decimal("1000.01"), Decimal("1000.02")),
        (Decimal("1000.02"), Decimal("1000.03")), (Decimal("1000.03"), Decimal("1012.37")),
    ]


async def test_a_replayed_or_older_reading_is_not_billed_again(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.feed("E1", [(T0, "10"), (T0 + H, "12")])
    await site.feed("E1", [(T0 + H, "12"), (T0, "10"), (T0 + H, "12")])
    # the same reading billed by a second engine (a restart that replays the stream)
    await site.new_engine().bill([Reading("E1", Decimal("12"), T0 + H)])
    assert [-r.amount_minor for r in await deductions(site)] == [200]
    assert await balance(site) == 9_800


async def test_restart_continues_from_the_committed_cursor(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.feed("E1", [(T0, "10"), (T0 + H, "11")])
    restarted = site.new_engine()
    await restarted.load()
    await restarted.bill([Reading("E1", Decimal("11"), T0 + H), Reading("E1", Decimal("13.5"), T0 + 2 * H)])
    restarted.close()
    assert [-r.amount_minor for r in await deductions(site)] == [100, 250]


async def test_backwards_register_is_held_until_reset(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.feed("E1", [(T0, "500"), (T0 + H, "501")])
    await site.feed("E1", [(T0 + 2 * H, "3"), (T0 + 3 * H, "5")])  # reset to ~0, keeps counting
    assert site.tagdb.read("E1.review_hold").value is True
    assert site.tagdb.read("E1.review_hold").detail.startswith("backwards:")
    holds = await site.engine.holds()
    assert [(h.meter_id, h.kind, h.last_reading, h.reading) for h in holds] == [("E1", "backwards", Decimal("501"), Decimal("5"))]
    assert len(await deductions(site)) == 1  # nothing billed while held
    with pytest.raises(PrepaidError, match="cannot be accepted"):
        await site.engine.resolve_hold("E1", "accept", actor=CASHIER, reason="looks fine")
    # the operator says: the old register ended at 501.5, the new one started at 0
    await site.engine.resolve_hold("E1", "reset", actor=CASHIER, reason="meter reset by the vendor", final_reading=Decimal("501.5"), new_baseline=Decimal("0"))
    assert site.tagdb.read("E1.review_hold").value is False
    await site.feed("E1", [(T0 + 4 * H, "6")])
    rows = await deductions(site, "E1")
    assert [(r.segment, r.reading_from, r.reading_to, -r.amount_minor) for r in rows] == [
        (1, Decimal("500"), Decimal("501"), 100),
        (1, Decimal("501"), Decimal("501.5"), 50),
        (2, Decimal("0"), Decimal("6"), 600),
    ]
    async with site.db.sessions() as s:
        segs = (await s.scalars(select(MeterSegment).where(MeterSegment.meter_id == "E1").order_by(MeterSegment.segment))).all()
    assert [(g.segment, g.baseline, g.final_reading) for g in segs] == [(1, Decimal("500"), Decimal("501.5")), (2, Decimal("0"), None)]


async def test_implausible_jump_is_held_and_can_be_accepted(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    # 10 kW max: 10 kWh per hour is the most one hour allows (+0.02 register slack)
    await site.feed("E1", [(T0, "100"), (T0 + H, "110.02")])
    assert site.tagdb.read("E1.review_hold").value is False
    await site.feed("E1", [(T0 + 2 * H, "130"), (T0 + 3 * H, "131")])
    assert (await site.engine.holds())[0].kind == "jump"
    assert [-r.amount_minor for r in await deductions(site)] == [1002]
    await site.engine.resolve_hold("E1", "accept", actor=CASHIER, reason="confirmed on site: a heater ran")
    assert [(r.reading_to, -r.amount_minor) for r in await deductions(site)] == [(Decimal("110.02"), 1002), (Decimal("131"), 2098)]
    assert await balance(site) == 100_000 - 3100


async def test_rollover_accept_bills_across_the_wrap(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    # a 6-digit display with 2 decimals wraps at 10000.00 (a 16-bit count at 0.01 wraps at 655.36)
    await site.feed("E1", [(T0, "9999.50"), (T0 + H, "0.70")])
    hold = (await site.engine.holds())[0]
    assert hold.kind == "rollover" and "10000" in hold.detail
    await site.engine.resolve_hold("E1", "accept", actor=CASHIER, reason="display rolled over")
    rows = await deductions(site)
    assert [(r.segment, r.reading_from, r.reading_to, -r.amount_minor) for r in rows] == [
        (1, Decimal("9999.50"), Decimal("10000"), 50), (2, Decimal("0"), Decimal("0.70"), 70),
    ]
    await site.feed("E1", [(T0 + 2 * H, "1.70")])
    assert await balance(site) == 100_000 - 220


async def test_multiplier_applies_to_the_register_difference(site: Site) -> None:
    await site.flat_tariff(price="0.5")
    await site.open("R3", opening=10_000)
    await site.feed("E3", [(T0, "10.00"), (T0 + H, "10.05")])  # 0.05 × CT 40 = 2 kWh
    rows = await deductions(site)
    assert rows[0].quantity == Decimal("2.0000") and -rows[0].amount_minor == 100


async def test_water_meter_with_a_water_tariff(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.flat_tariff("WATER", price="3.5", commodity="water")
    await site.open("R2", opening=10_000, water="WATER")
    await site.engine.bill([Reading("W2", Decimal("5.000"), T0), Reading("E2", Decimal("1"), T0)])
    await site.engine.bill([Reading("W2", Decimal("5.250"), T0 + H), Reading("E2", Decimal("3"), T0 + H)])
    rows = await deductions(site)
    assert sorted((r.meter_id, r.tariff_id, -r.amount_minor) for r in rows) == [("E2", "FLAT", 200), ("W2", "WATER", 88)]


async def test_tier_usage_accumulates_across_readings(site: Site) -> None:
    defn = TariffDefinition.model_validate({"price": "0.5", "tiers": {"cycle": "monthly", "blocks": [{"up_to": "10"}, {"adder": "0.5"}]}})
    await site.engine.tariffs.create("TIER", "tiers", "electricity", defn, CASHIER)
    await site.open("R1", opening=10_000, tariff="TIER")
    # March: 8 kWh at 0.50, then 4 kWh: 2 in block 1 and 2 in block 2 (+0.50): 2.00 + 1.00
    await site.feed("E1", [(T0, "0"), (T0 + H, "8"), (T0 + 2 * H, "12")])
    assert [-r.amount_minor for r in await deductions(site)] == [400, 300]


async def test_price_change_applies_from_its_effective_time(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + 2 * H
    await site.engine.tariffs.add_version("FLAT", TariffDefinition.model_validate({"price": "2"}), CASHIER, effective_from=start)
    # the running engine picks the new version up (it was added after the engine loaded tariffs)
    await site.feed("E1", [(start - 2 * H, "0"), (start - H, "1"), (start + H, "3")])
    # 1 kWh before (1.00); then 2 kWh over an hour either side of the change: 1 × 1.00 + 1 × 2.00
    assert [-r.amount_minor for r in await deductions(site)] == [100, 300]
    with pytest.raises(Exception, match="in the past"):
        await site.engine.tariffs.add_version("FLAT", TariffDefinition.model_validate({"price": "3"}), CASHIER, effective_from=start - 10 * H)


async def test_balance_alarm_levels_fire_once_and_clear_on_recharge(site: Site) -> None:
    await site.flat_tariff(price="1")
    # defaults: low at 20.00, very low at 5.00, exhausted at 0
    await site.open("R1", opening=3_000)
    level = lambda: site.tagdb.read("room:R1.alarm_level").value  # noqa: E731
    await site.feed("E1", [(T0, "0"), (T0 + H, "5")])
    assert level() == 0 and site.tagdb.read("room:R1.balance").value == 25.0
    await site.feed("E1", [(T0 + 2 * H, "10")])
    assert level() == 1
    await site.feed("E1", [(T0 + 5 * H, "26")])
    assert level() == 2
    await site.feed("E1", [(T0 + 6 * H, "31")])
    assert level() == 3 and site.tagdb.read("room:R1.balance").value == -1.0
    # a small recharge lifts the balance to 4.00: very low again, not exhausted
    await site.engine.recharge("R1", 500, channel="cash", reference="r1", actor=CASHIER)
    assert level() == 2
    await site.engine.recharge("R1", 10_000, channel="cash", reference="r2", actor=CASHIER)
    assert level() == 0


async def test_days_of_credit_threshold(site: Site) -> None:
    await site.flat_tariff(price="1")
    from scada.prepaid.levels import Threshold

    await site.open("R1", opening=10_000, thresholds=(Threshold(1, days=Decimal("3")),))
    now = dt.datetime.now(dt.UTC)
    await site.feed("E1", [(now - 5 * H, "0"), (now - H, "40")])  # 40.00 today → ≥ 40/day
    await site.engine.refresh_daily_costs()
    await site.feed("E1", [(now, "41")])
    # 59.00 left at ≥ 41.00 a day is less than 3 days
    assert site.tagdb.read("room:R1.alarm_level").value == 1


async def test_stream_groups_registers_ignores_bad_quality(site: Site) -> None:
    tou = {"periods": [{"name": n, "price": p} for n, p in (("sharp", "1.2"), ("peak", "1.0"), ("flat", "0.6"), ("valley", "0.3"))],
           "seasons": [{"workday": [["00:00", "valley"], ["08:00", "flat"], ["22:00", "valley"]]}]}
    await site.engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": tou}), CASHIER)
    await site.open("R1", opening=10_000, tariff="TOU")
    task = asyncio.create_task(site.engine.run_billing(), name="billing")
    try:
        while not any(sub.name == "prepaid" for sub in site.tagdb.subscriptions):
            await asyncio.sleep(0)
        regs = {"sharp": 1.0, "peak": 2.0, "flat": 3.0, "valley": 4.0}
        write_meter(site.tagdb, "E1", T0, 10.0, regs)
        # the registers say 1 kWh at peak and 1 at valley even though the time says "flat"
        write_meter(site.tagdb, "E1", T0 + H, 12.0, {**regs, "peak": 3.0, "valley": 5.0})
        # a bad read keeps the old value with bad quality: ignored
        site.tagdb.set_quality([f"E1.energy_{p}" for p in ("total", "sharp", "peak", "flat", "valley")], Quality.BAD, QualityReason.TIMEOUT, source_ts=T0 + 2 * H)
        for _ in range(200):
            if len(await deductions(site)) >= 1:
                break
            await asyncio.sleep(0.01)
        # registers incomplete (one bad): split by time, 1 kWh in the flat period
        write_meter(site.tagdb, "E1", T0 + 3 * H, 13.0, {**regs, "peak": 3.0, "valley": 5.0})
        site.tagdb.write("E1.energy_peak", 3.5, Quality.UNCERTAIN, source_ts=T0 + 4 * H)
        site.tagdb.write("E1.energy_total", 13.5, source_ts=T0 + 4 * H)
        for _ in range(200):
            if len(await deductions(site)) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await deductions(site)
    assert [(r.reading_to, -r.amount_minor, (r.detail or {}).get("by_registers", False)) for r in rows] == [
        (Decimal("12.0"), 130, True),  # 1 × 1.0 + 1 × 0.3
        (Decimal("13.0"), 60, False),  # registers unchanged but +1 kWh: split by time, 10:00-12:00 is flat: 0.60
        (Decimal("13.5"), 30, False),  # peak register uncertain: split by time, flat 0.5 × 0.6
    ]


async def test_meter_replacement_bills_final_and_starts_new_meter(site: Site) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.feed("E1", [(T0, "100"), (T0 + H, "101")])
    view = await site.engine.replace_meter("E1", "E1B", actor=CASHIER, reason="display broken", final_reading=Decimal("102.5"), initial_reading=Decimal("0.2"))
    assert view is not None and view.balance_minor == 10_000 - 250
    assert site.assets.snapshot.meters["E1B"].active and not site.assets.snapshot.meters["E1"].active
    now = dt.datetime.now(dt.UTC)
    await site.feed("E1B", [(now + H, "1.2")])
    await site.feed("E1", [(now + H, "200")])  # the old meter's register is no longer billed
    rows = await deductions(site)
    assert [(r.meter_id, r.reading_from, r.reading_to, -r.amount_minor) for r in rows] == [
        ("E1", Decimal("100"), Decimal("101"), 100), ("E1", Decimal("101"), Decimal("102.5"), 150),
        ("E1B", Decimal("0.2"), Decimal("1.2"), 100),
    ]
    # repeating the replacement (e.g. after a crash) changes nothing
    await site.engine.replace_meter("E1", "E1B", actor=CASHIER, reason="retry", final_reading=Decimal("102.5"), initial_reading=Decimal("0.2"))
    async with site.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "deduction")) == 3
        assert (await s.get(MeterState, "E1")).retired  # type: ignore[union-attr]


async def test_a_meter_added_to_a_room_is_billed_from_its_first_reading(site: Site) -> None:
    from scada.site.models import Meter

    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    async with site.db.transaction() as s:
        s.add(Meter(id="E1X", kind="electricity", role="tenant", room_id="R1", building_id="B", profile="p", link="gw",
                    unit_id=9, multiplier=Decimal(1), initial_reading=Decimal(0), max_power_kw=Decimal(10), active=True))
    await site.assets.load()
    await site.feed("E1X", [(T0, "50"), (T0 + H, "52.5")])
    rows = await deductions(site, "E1X")
    assert [(r.reading_from, r.reading_to, -r.amount_minor) for r in rows] == [(Decimal("50"), Decimal("52.5"), 250)]
    async with site.db.sessions() as s:
        seg = (await s.scalars(select(MeterSegment).where(MeterSegment.meter_id == "E1X"))).one()
    assert seg.baseline == Decimal("50") and seg.reason == "meter added to the room"


async def test_late_readings_from_a_replay_are_billed_once_in_time_order(site: Site) -> None:
    """A gateway's replay reaches billing as late tag changes: readings newer than the last billed
    one are billed in time order, older ones never again; the total is the consumption once."""
    await site.flat_tariff(price="1")
    await site.open("R1", opening=100_000)
    billing = asyncio.create_task(site.engine.run_billing(), name="billing")
    try:
        def gateway(ts: dt.datetime, value: float) -> None:
            site.tagdb.write("E1.energy_total", value, source_ts=ts, keep_newest=True)

        gateway(T0, 10.0)
        await asyncio.sleep(0.2)
        # the gateway dies: the tags are marked bad now; its buffer comes back before a live reading
        site.tagdb.set_quality(["E1.energy_total"], Quality.BAD, QualityReason.COMM_FAILURE, "gateway dead", source_ts=T0 + 4 * H)
        for k, value in ((1, 11.0), (2, 12.5), (3, 13.0)):
            gateway(T0 + k * H, value)  # late: older than the bad mark
        assert site.tagdb.read("E1.energy_total").quality is Quality.BAD  # the display: the newest
        gateway(T0 + 5 * H, 15.0)  # live again
        for k, value in ((1, 11.0), (2, 12.5), (3, 13.0)):
            gateway(T0 + k * H, value)  # resent: older than what was billed
        for _ in range(100):
            rows = await deductions(site)
            if rows and rows[-1].reading_to == Decimal("15"):
                break
            await asyncio.sleep(0.05)
    finally:
        billing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await billing
    rows = await deductions(site)
    assert [(r.reading_from, r.reading_to) for r in rows] == [
        (Decimal("10"), Decimal("11")), (Decimal("11"), Decimal("12.5")), (Decimal("12.5"), Decimal("13")), (Decimal("13"), Decimal("15")),
    ]
    assert await balance(site) == 100_000 - 500


async def test_the_cursor_registers_are_read_back_as_written_across_batches_and_a_restart(site: Site) -> None:
    # the batch reads the cursor's registers as the column's text (STATES_BY_ID) and writes them
    # as text: each later reading is still priced from the registers, also by an engine that
    # starts with nothing remembered, and the stored text is what encoding the dict gives
    tou = {"periods": [{"name": n, "price": p} for n, p in (("sharp", "1.2"), ("peak", "1.0"), ("flat", "0.6"), ("valley", "0.3"))],
           "seasons": [{"workday": [["00:00", "valley"], ["08:00", "flat"], ["22:00", "valley"]]}]}
    await site.engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": tou}), CASHIER)
    await site.open("R1", opening=10_000, tariff="TOU")

    def reading(hours: int, peak: str, valley: str) -> Reading:
        regs = {"sharp": Decimal("1.00"), "peak": Decimal(peak), "flat": Decimal("3.00"), "valley": Decimal(valley)}
        return Reading("E1", sum(regs.values(), Decimal(0)), T0 + hours * H, regs)

    await site.engine.bill([reading(0, "2.00", "4.00")])  # the baseline
    await site.engine.bill([reading(1, "3.00", "5.00")])  # +1 peak, +1 valley
    await site.engine.bill([reading(2, "3.50", "5.00")])  # +0.5 peak
    await site.new_engine().bill([reading(3, "3.50", "5.25")])  # +0.25 valley, nothing remembered
    rows = await deductions(site)
    assert [(-r.amount_minor, (r.detail or {}).get("by_registers")) for r in rows] == [(130, True), (50, True), (8, True)]
    async with site.db.sessions() as s:
        text = await s.scalar(select(sa_cast(MeterState.last_registers, Text)).where(MeterState.meter_id == "E1"))
    assert text == json.dumps({"sharp": "1.00", "peak": "3.50", "flat": "3.00", "valley": "5.25"})


def _deductions_seen_from_another_thread(url: object) -> int:
    """The committed deductions, counted on a connection of another thread (this one's loop is
    blocked by the caller)."""

    async def count() -> int:
        db = Database(url)  # type: ignore[arg-type]
        try:
            async with db.reads() as s:
                return int(await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "deduction")) or 0)
        finally:
            await db.dispose()

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(asyncio.run(count())))
    thread.start()
    thread.join(30)
    return seen[0]


async def test_billing_commits_while_the_servers_loop_does_not_turn(site: Site) -> None:
    """run_billing's transactions run on a loop of their own: a batch taken from the stream
    commits while the server's loop is busy (at site scale it never idles), instead of waiting a
    turn of that loop per statement with the write lock held."""
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    billing = asyncio.create_task(site.engine.run_billing(), name="billing")
    try:
        while not any(sub.name == "prepaid" for sub in site.tagdb.subscriptions):
            await asyncio.sleep(0)
        write_meter(site.tagdb, "E1", T0, 10.0)  # the baseline
        stats = site.engine.stats
        for _ in range(1000):
            if stats["processed"] >= 1 and stats["processed"] == stats["readings"]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the stream's copy of what the engine's start read from the tags
        taken = stats["readings"]
        write_meter(site.tagdb, "E1", T0 + H, 12.0)
        while stats["readings"] == taken:
            await asyncio.sleep(0)  # the billing task takes the reading and hands its batch over
        deadline = time.monotonic() + 10
        committed = 0
        while committed == 0 and time.monotonic() < deadline:
            committed = _deductions_seen_from_another_thread(site.db.url)  # the loop does not turn here
            time.sleep(0.02)
        assert committed == 1
    finally:
        billing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await billing
    assert [(r.reading_from, r.reading_to) for r in await deductions(site)] == [(Decimal("10"), Decimal("12"))]
    assert await balance(site) == 10_000 - 200


async def test_a_meter_whose_reading_breaks_the_batch_is_isolated_and_the_others_billed(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.open("R3", opening=10_000)
    await site.engine.bill([Reading("E1", Decimal("10"), T0), Reading("E3", Decimal("5"), T0)])  # baselines
    charge = site.engine.biller.charge

    def breaks_on_e1(st, *args, **kwargs):  # type: ignore[no-untyped-def]
        if st.meter_id == "E1":
            raise ZeroDivisionError("E1's reading breaks the batch")
        return charge(st, *args, **kwargs)

    monkeypatch.setattr(site.engine.biller, "charge", breaks_on_e1)
    with caplog.at_level("WARNING", logger="scada.prepaid.engine"):
        await site.engine.bill([Reading("E1", Decimal("11"), T0 + H), Reading("E3", Decimal("5.1"), T0 + H)])
    assert [(r.meter_id, r.reading_to) for r in await deductions(site)] == [("E3", Decimal("5.1"))]
    batch = [r for r in caplog.records if r.getMessage().startswith("billing a batch failed")]
    assert len(batch) == 1 and batch[0].error == "E1's reading breaks the batch" and batch[0].meters == 2  # type: ignore[attr-defined]
    single = [r for r in caplog.records if r.getMessage().startswith("billing a reading failed")]
    assert [r.meter for r in single] == ["E1"]  # type: ignore[attr-defined]
