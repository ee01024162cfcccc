"""Property tests: random reading sequences with gaps, replays, bad reads, resets and restarts.

Whatever the sequence, once the last true reading is in: the deductions add up to the price
of the total consumption to the minor unit (rounded once), no reading is billed twice, and the
ledger reconciles (the ``site`` fixture runs ``reconcile`` after every test).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from scada.prepaid.models import LedgerEntry
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.models import Meter, Room
from tags import Quality, QualityReason, TagWrite

from .conftest import CASHIER, Site, register_meter_tags

PERIODS = ("sharp", "peak", "flat", "valley")
PRICES = {"sharp": Decimal("1.2"), "peak": Decimal("1.0"), "flat": Decimal("0.6"), "valley": Decimal("0.3")}
_ids = itertools.count(1)
_clock = [dt.datetime(2026, 1, 5, tzinfo=dt.UTC)]


@dataclass
class Step:
    kind: str  # consume | replay | bad | reset | restart | gap
    seconds: int = 60
    deltas: tuple[int, ...] = (0, 0, 0, 0)  # per period, in register steps of 0.01 kWh


step = st.one_of(
    st.builds(Step, st.just("consume"), st.integers(1, 7200), st.tuples(*[st.integers(0, 200)] * 4)),
    st.builds(Step, st.just("gap"), st.integers(1, 7200), st.tuples(*[st.integers(0, 200)] * 4)),
    st.builds(Step, st.just("replay")),
    st.builds(Step, st.just("bad"), st.integers(1, 600)),
    st.builds(Step, st.just("restart")),
    st.builds(Step, st.just("reset"), st.integers(1, 600)),
)


@dataclass
class Meter_:
    id: str
    registers: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # true values, 0.01 kWh steps
    offset: int = 0  # what a reset subtracted from the displayed total
    sent: list[tuple[dt.datetime, list[int], int]] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.registers) - self.offset


async def new_room_and_meter(site: Site) -> str:
    n = next(_ids)
    room, meter = f"PR{n}", f"PE{n}"
    async with site.db.transaction() as s:
        s.add(Room(id=room, floor_id="B-F1", name=room))
        await s.flush()
        s.add(Meter(id=meter, kind="electricity", role="tenant", room_id=room, building_id="B", profile="p", link="gw",
                    unit_id=100 + n % 100, multiplier=Decimal(1), initial_reading=Decimal(0), max_power_kw=Decimal(10) ** 6, active=True))
    await site.assets.load()
    register_meter_tags(site.tagdb, [meter])
    return room


def money_round(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def run_sequence(site: Site, steps: list[Step], *, tou: bool) -> None:
    room = await new_room_and_meter(site)
    tariff = "PTOU" if tou else "PFLAT"
    if await site.engine.tariffs.get(tariff) is None:
        definition = {"tou": {"periods": [{"name": p, "price": str(PRICES[p])} for p in PERIODS],
                              "seasons": [{"workday": [["00:00", "valley"], ["08:00", "flat"], ["22:00", "valley"]]}]}} if tou else {"price": "0.5683"}
        await site.engine.tariffs.create(tariff, tariff, "electricity", TariffDefinition.model_validate(definition), CASHIER)
    await site.open(room, opening=10_000_000, tariff=tariff)
    m = Meter_(room.replace("PR", "PE"))
    engine = site.engine
    sub = site.tagdb.subscribe(lambda n: n.startswith(m.id + "."), include_reported=True, name="prop")

    def write(ts: dt.datetime, quality: Quality = Quality.GOOD) -> None:
        writes = [TagWrite(f"{m.id}.energy_total", m.total() / 100, quality, source_ts=ts,
                           reason=QualityReason.NONE if quality is Quality.GOOD else QualityReason.TIMEOUT)]
        if tou:
            writes += [TagWrite(f"{m.id}.energy_{p}", m.registers[i] / 100, quality, source_ts=ts,
                                reason=QualityReason.NONE if quality is Quality.GOOD else QualityReason.TIMEOUT) for i, p in enumerate(PERIODS)]
        site.tagdb.write_many(writes)
        if quality is Quality.GOOD:
            m.sent.append((ts, list(m.registers), m.offset))

    async def deliver() -> None:
        engine.ingest(sub.drain())
        await engine.bill_pending()

    consumed = [0, 0, 0, 0]
    try:
        for s in steps:
            _clock[0] += dt.timedelta(seconds=s.seconds)
            now = _clock[0]
            if s.kind in ("consume", "gap"):
                for i, d in enumerate(s.deltas if tou else (sum(s.deltas), 0, 0, 0)):
                    m.registers[i] += d
                    consumed[i] += d
                if s.kind == "consume":
                    write(now)
            elif s.kind == "replay" and m.sent:
                ts, regs, offset = m.sent[len(m.sent) // 2]
                saved, saved_offset = m.registers, m.offset
                m.registers, m.offset = list(regs), offset
                write(ts)
                m.registers, m.offset = saved, saved_offset
            elif s.kind == "bad":
                write(now, Quality.BAD)
            elif s.kind == "restart":
                await deliver()
                if engine is not site.engine:
                    engine.close()
                engine = site.new_engine()
                await engine.load()
            elif s.kind == "reset" and not tou:
                # the register is read, then reset to 0 (a reset between two reads would lose
                # what it counted since the last read: no meter data can tell that amount)
                write(now)
                await deliver()
                before = m.total()
                m.offset = sum(m.registers)
                _clock[0] += dt.timedelta(seconds=1)
                write(_clock[0])
                await deliver()
                if any(h.meter_id == m.id for h in await engine.holds()):
                    await engine.resolve_hold(m.id, "reset", actor=CASHIER, reason="reset", final_reading=Decimal(before) / 100,
                                              new_baseline=Decimal(0))
            await deliver()
        # the last true reading arrives
        _clock[0] += dt.timedelta(hours=1)
        write(_clock[0])
        await deliver()
    finally:
        sub.close()
        if engine is not site.engine:
            engine.close()
    async with site.db.sessions() as sess:
        view = await site.engine.account(room)
        assert view is not None
        rows = (await sess.scalars(select(LedgerEntry).where(LedgerEntry.account_id == view.id, LedgerEntry.kind == "deduction"))).all()
    deducted = -sum(r.amount_minor for r in rows)
    # consumption from the first good reading on: the first reading is the baseline
    first_ts, first_regs, first_offset = min(m.sent, key=lambda x: x[0])
    if not tou:
        billed_qty = sum(r.quantity for r in rows)  # type: ignore[misc]
        true_qty = Decimal(sum(consumed) - (sum(first_regs) - 0)) / 100
        # what came before the first reading is not this account's
        assert billed_qty == true_qty, (billed_qty, true_qty)
        assert deducted == money_round(true_qty * Decimal("0.5683"))
    else:
        per_period = [Decimal(m.registers[i] - first_regs[i]) / 100 for i in range(4)]
        expected = sum(q * PRICES[p] for q, p in zip(per_period, PERIODS, strict=False))
        assert deducted == money_round(expected), (deducted, expected)
    keys = [(r.segment, r.reading_to) for r in rows]
    assert len(keys) == len(set(keys)), "a reading was billed twice"


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(steps=st.lists(step, min_size=1, max_size=25))
async def test_flat_sequences_bill_the_true_consumption(site: Site, steps: list[Step]) -> None:
    # the first reading must be good and before any reset, so the baseline is a true reading
    await run_sequence(site, [Step("consume", 60, (1, 0, 0, 0)), *steps], tou=False)


@SETTINGS
@given(steps=st.lists(step.filter(lambda s: s.kind != "reset"), min_size=1, max_size=25))
async def test_tou_sequences_priced_from_registers(site: Site, steps: list[Step]) -> None:
    await run_sequence(site, [Step("consume", 60, (1, 1, 1, 1)), *steps], tou=True)
