"""Manual readings: judged against the previous one, stored with who and why, published to the
tag database like a polled reading; a CSV import names every bad row and stores all or none."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from scada.site.assets import MeterInfo
from scada.topology.models import ManualReading
from scada.topology.readings import ReadingError, ReadingInput, judge
from scada.topology.usage import ReadingChain
from scada.users.audit import Actor
from scada.users.models import AuditEntry
from tags import Quality, TagChange

from .conftest import TZ, SiteDb

T0 = dt.datetime(2026, 11, 1, 0, 0, tzinfo=TZ)
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=TZ)
ALICE = Actor("alice", "api", "maintenance")


def meter(max_kw: str | None = "400", multiplier: str = "1") -> MeterInfo:
    return MeterInfo("U", "electricity", "utility", None, "B", "", "", 0, None, Decimal(multiplier), None, Decimal(0),
                     Decimal(max_kw) if max_kw else None, None, True, manual=True)


def test_judge_golden() -> None:
    prev = (Decimal("1000.00"), T0)
    ok = ReadingInput("U", Decimal("10600.00"), T0 + dt.timedelta(days=1))
    # 9,600 kWh in 24 h is 400 kW on average: exactly the maximum, allowed
    assert judge(meter(), prev, ok, now=NOW, margin=Decimal(1)) == []
    # one more register step (0.01) still fits the two steps of slack; 0.03 more does not
    assert judge(meter(), prev, ReadingInput("U", Decimal("10600.02"), ok.ts), now=NOW, margin=Decimal(1)) == []
    [(field, why)] = judge(meter(), prev, ReadingInput("U", Decimal("10600.03"), ok.ts), now=NOW, margin=Decimal(1))
    assert field == "value" and "400.001 kW on average over 24.00 h" in why and "maximum 400 kW" in why
    # a 40:1 transformer makes 240 register units 9,600 kWh
    assert judge(meter(multiplier="40"), prev, ReadingInput("U", Decimal("1240.00"), ok.ts), now=NOW, margin=Decimal(1)) == []
    assert judge(meter(multiplier="40"), prev, ReadingInput("U", Decimal("1241.00"), ok.ts), now=NOW, margin=Decimal(1))
    # no maximum: any rate
    assert judge(meter(None), prev, ReadingInput("U", Decimal("999999"), ok.ts), now=NOW, margin=Decimal(1)) == []
    [(field, why)] = judge(meter(), prev, ReadingInput("U", Decimal("999.99"), ok.ts), now=NOW, margin=Decimal(1))
    assert field == "value" and why.startswith("goes backwards from 1000 ") and "reset" in why
    [(field, why)] = judge(meter(), prev, ReadingInput("U", Decimal("1000"), T0), now=NOW, margin=Decimal(1))
    assert field == "ts" and "after the meter's previous reading" in why
    [(field, why)] = judge(meter(), None, ReadingInput("U", Decimal("1"), NOW + dt.timedelta(hours=1)), now=NOW, margin=Decimal(1))
    assert field == "ts" and "in the future" in why
    # a replaced meter: the old register ended at 1,200, the new one reads 50 from 0: 250 kWh
    reset = ReadingInput("U", Decimal("50"), T0 + dt.timedelta(hours=1), reset=True, final=Decimal("1200"))
    assert judge(meter(), prev, reset, now=NOW, margin=Decimal(1)) == []
    too_much = ReadingInput("U", Decimal("250"), T0 + dt.timedelta(hours=1), reset=True, final=Decimal("1200"))
    assert judge(meter(), prev, too_much, now=NOW, margin=Decimal(1))[0][0] == "value"  # 450 kWh in 1 h
    assert judge(meter(), prev, ReadingInput("U", Decimal("5"), ok.ts, reset=True, final=Decimal("999")), now=NOW,
                 margin=Decimal(1))[0][0] == "final"


def test_chain_interpolates_between_readings_and_across_resets() -> None:
    rows = [
        ManualReading(meter_id="U", ts=T0, value=Decimal("100"), reset=False),
        ManualReading(meter_id="U", ts=T0 + dt.timedelta(days=10), value=Decimal("400"), reset=False),
        ManualReading(meter_id="U", ts=T0 + dt.timedelta(days=20), value=Decimal("30"), reset=True,
                      final=Decimal("450"), initial=Decimal("0")),
    ]
    chain = ReadingChain.of(rows)
    # 300 kWh in the first 10 days; then 50 on the old register and 30 on the new one
    assert chain.between(T0, T0 + dt.timedelta(days=20)) == (380, False)
    # days 5..15: half of 300 + half of 80 = 190, both ends interpolated
    assert chain.between(T0 + dt.timedelta(days=5), T0 + dt.timedelta(days=15)) == (190, True)
    assert chain.between(T0 - dt.timedelta(days=1), T0) is None
    assert chain.between(T0, T0 + dt.timedelta(days=21)) is None


async def test_enter_stores_audits_and_publishes(site: SiteDb) -> None:
    readings = site.readings(clock=lambda: NOW)
    readings.register_tags(site.assets.snapshot)
    sub = site.tagdb.subscribe(lambda n: n == "U.energy_total", name="test")
    first = await readings.enter(ReadingInput("U", Decimal("1000.00"), T0, "monthly reading"), ALICE)
    assert first.source == "manual" and first.entered_by == "alice"
    tv = site.tagdb.read("U.energy_total")
    assert tv.value == 1000.0 and tv.quality is Quality.GOOD and tv.source_ts == T0 and tv.detail == "source=manual"
    second = await readings.enter(ReadingInput("U", Decimal("5800.5"), T0 + dt.timedelta(days=1), "daily round"), ALICE)
    assert second.value == Decimal("5800.5")
    changes = [c for c in sub.drain() if isinstance(c, TagChange)]
    sub.close()
    assert [(c.new.value, c.new.source_ts) for c in changes] == [(1000.0, T0), (5800.5, T0 + dt.timedelta(days=1))]
    async with site.db.sessions() as s:
        audit = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "meter.reading").order_by(AuditEntry.id))).all()
    assert [(a.actor, a.target_id, a.reason) for a in audit] == [("alice", "U", "monthly reading"), ("alice", "U", "daily round")]
    assert audit[1].after["value"] == "5800.5" and audit[1].before["value"] == "1000"


@pytest.mark.parametrize(("value", "ts_days", "field", "why"), [
    ("999.99", 1, "value", "goes backwards"),
    ("20000", 1, "value", "more than the meter's maximum 400 kW"),
    ("1001", 0, "ts", "after the meter's previous reading"),
])
async def test_refused_reading_stores_nothing(site: SiteDb, value: str, ts_days: int, field: str, why: str) -> None:
    readings = site.readings(clock=lambda: NOW)
    readings.register_tags(site.assets.snapshot)
    await readings.enter(ReadingInput("U", Decimal("1000"), T0, "first"), ALICE)
    with pytest.raises(ReadingError) as err:
        await readings.enter(ReadingInput("U", Decimal(value), T0 + dt.timedelta(days=ts_days), "second"), ALICE)
    assert err.value.field == field and why in err.value.message and err.value.status == 422
    async with site.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ManualReading)) == 1
        assert await s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "meter.reading")) == 1
    assert site.tagdb.read("U.energy_total").value == 1000.0


async def test_only_manual_meters_take_readings(site: SiteDb) -> None:
    readings = site.readings(clock=lambda: NOW)
    for meter_id, why in (("E1", "is polled"), ("V", "is virtual"), ("nope", "unknown meter")):
        with pytest.raises(ReadingError, match=why):
            await readings.enter(ReadingInput(meter_id, Decimal(1), T0, "x"), ALICE)


CSV_BAD = """meter,ts,value,reason
U,2026-11-01 00:00,1000,start
U,2026-11-02 00:00,990,backwards
E1,2026-11-02 00:00,5,polled meter
U,2026-11-03,abc,not a number
U,not a time,1200,
W1,2026-11-03 00:00,12.5,water
W1,2026-11-03 00:00,13,same time
U,2026-11-04 00:00,99999999,jump
"""


async def test_csv_dry_run_names_every_bad_row_and_stores_nothing(site: SiteDb) -> None:
    readings = site.readings(clock=lambda: NOW)
    report = await readings.import_csv(CSV_BAD, ALICE, dry_run=True)
    assert [(p.line, p.column) for p in report.problems] == [(3, "value"), (4, "meter"), (5, "value"), (6, "ts"), (8, "ts"), (9, "value")]
    messages = {p.line: p.error for p in report.problems}
    assert messages[3].startswith("goes backwards from 1000 ")
    assert messages[4].startswith("meter E1 is polled")
    assert messages[5].startswith("not a decimal number: 'abc'")
    assert "is not a time" in messages[6]
    assert messages[8] == "line 7 has a reading of W1 at the same time"
    assert "more than the meter's maximum 400 kW" in messages[9]
    assert report.rows == 8 and report.as_json()["valid"] == 2 and report.stored == 0
    # the same file for real: refused whole
    report = await readings.import_csv(CSV_BAD, ALICE, dry_run=False)
    assert report.stored == 0 and len(report.problems) == 6
    async with site.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ManualReading)) == 0


async def test_csv_import_stores_all_in_order_and_publishes(site: SiteDb) -> None:
    readings = site.readings(clock=lambda: NOW)
    readings.register_tags(site.assets.snapshot)
    text = "meter,ts,value,reason\r\nU,2026-11-02 00:00,1500,\r\nU,2026-11-01T00:00:00+08:00,1000,\r\nW1,2026-11-03,12.5,water\r\n"
    dry = await readings.import_csv(text, ALICE, dry_run=True)
    assert dry.problems == [] and dry.stored == 0
    report = await readings.import_csv(text, ALICE, dry_run=False, reason="paper round")
    assert report.problems == [] and report.stored == 3
    stored = await readings.readings("U")
    assert [(r.value, r.ts, r.reason) for r in stored] == [
        (Decimal("1500"), T0 + dt.timedelta(days=1), "paper round"), (Decimal("1000"), T0, "paper round"),
    ]
    assert site.tagdb.read("U.energy_total").value == 1500.0
    assert site.tagdb.read("W1.volume_total").value == 12.5
    # a row older than what is stored is refused
    again = await readings.import_csv("meter,ts,value\nU,2026-11-01 12:00,1200\n", ALICE, dry_run=True)
    assert [(p.line, p.column) for p in again.problems] == [(2, "ts")]


async def test_csv_header_problems(site: SiteDb) -> None:
    readings = site.readings(clock=lambda: NOW)
    report = await readings.import_csv("meter,when,value\nU,2026-11-01,1\n", ALICE, dry_run=True)
    assert [(p.line, p.column, p.error) for p in report.problems] == [
        (1, "when", "unknown column (columns: meter, ts, value, reason, reset, final, initial)"), (1, "ts", "missing column"),
    ]
