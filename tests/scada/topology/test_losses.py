"""Losses down a three-level tree, by hand; a parent changed mid-day; the daily job's loss tags
and day rollups; the ``loss_high`` alarm class."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from scada.alarms.store import AlarmFilter
from scada.config import parse_config
from scada.db import Database
from scada.history.service import HistoryService
from scada.topology.losses import compute_losses
from scada.topology.readings import ReadingInput
from scada.topology.service import Topology
from scada.topology.usage import UsageSource
from scada.users.audit import Actor
from tags import DataType, Quality, TagMeta

from ..alarms.site import build_site, engine_for, no_delays, site_toml
from .conftest import TZ, SiteDb
from .history import constant_records, open_history, store

DAY = dt.datetime(2026, 11, 5, tzinfo=TZ)
NEXT = DAY + dt.timedelta(days=1)
PER_INTERVAL = {  # kWh every 15 minutes
    "E1": "0.05", "E2": "0.10", "C1": "0.02",  # below S1: 0.17
    "E3": "0.03", "E4": "0.04", "E5": "0.01",  # below S2: 0.08
    "S1": "0.18", "S2": "0.085",
}
ALICE = Actor("alice", "api", "maintenance")


@pytest.fixture
async def history(tmp_path: Path, site: SiteDb) -> AsyncIterator[HistoryService]:
    service = await open_history(tmp_path, site.assets)
    await store(service, constant_records(PER_INTERVAL, DAY, NEXT + dt.timedelta(days=1)))
    # the utility meter is read by hand at midnight: 1000.00, then 1027.00 a day later
    readings = site.readings(clock=lambda: NEXT + dt.timedelta(days=2))
    for value, t in (("1000.00", DAY), ("1027.00", NEXT)):
        await readings.enter(ReadingInput("U", Decimal(value), t, "round"), ALICE)
    try:
        yield service
    finally:
        await service.historian.shutdown(1)


def source(site: SiteDb, history: HistoryService) -> UsageSource:
    return UsageSource(site.db, site.assets.snapshot, history)


async def test_loss_over_a_three_level_tree(site: SiteDb, history: HistoryService) -> None:
    """One day, 96 intervals of 15 minutes.

    S1 = 96 × 0.18 = 17.28 kWh; its children E1 + E2 + C1 = 96 × (0.05 + 0.10 + 0.02) = 16.32:
    loss 0.96 kWh = 0.96 / 17.28 = 5.5555…% → 5.56 %.
    S2 = 96 × 0.085 = 8.16; E3 + E4 + E5 = 96 × 0.08 = 7.68: loss 0.48 = 5.8823…% → 5.88 %.
    U (read by hand) = 1027.00 − 1000.00 = 27.00; S1 + S2 = 25.44: loss 1.56 = 5.7777…% → 5.78 %.
    """
    rows = {r.meter_id: r for r in await compute_losses(source(site, history), site.assets.snapshot, DAY, NEXT)}
    assert set(rows) == {"U", "S1", "S2"}
    got = {m: (r.consumption.quantity, r.children_total, r.loss, r.loss_pct, r.estimated) for m, r in rows.items()}
    assert got == {
        "S1": (Decimal("17.28"), Decimal("16.32"), Decimal("0.96"), Decimal("5.56"), False),
        "S2": (Decimal("8.16"), Decimal("7.68"), Decimal("0.48"), Decimal("5.88"), False),
        "U": (Decimal("27"), Decimal("25.44"), Decimal("1.56"), Decimal("5.78"), False),
    }
    assert rows["S1"].consumption.intervals == 96 and rows["S1"].consumption.expected == 96
    assert [c.meter_id for c in rows["S1"].children] == ["C1", "E1", "E2"]
    # half a day: the utility meter is interpolated between its readings (27.00 / 2 = 13.50)
    half = {r.meter_id: r for r in await compute_losses(source(site, history), site.assets.snapshot, DAY, DAY + dt.timedelta(hours=12))}
    assert (half["U"].consumption.quantity, half["U"].children_total, half["U"].loss, half["U"].estimated) == (
        Decimal("13.5"), Decimal("12.72"), Decimal("0.78"), True,
    )
    # after its last reading the utility meter's consumption is not known, nor its loss
    later = {r.meter_id: r for r in await compute_losses(source(site, history), site.assets.snapshot, NEXT, NEXT + dt.timedelta(days=1))}
    assert later["U"].loss is None and "its readings do not cover the period" in later["U"].notes()[0]
    assert later["S1"].loss == Decimal("0.96")


async def test_a_parent_changed_mid_day_counts_each_child_where_it_was(site: SiteDb, history: HistoryService) -> None:
    """E5 moves from S2 to S1 at noon: S1's children use 16.32 + 48 × 0.01 = 16.80 (loss 0.48),
    S2's 7.68 − 0.48 = 7.20 (loss 0.96); the total below U is the same."""
    await site.assets.set_parent("E5", "S1", Actor.system("test"), valid_from=DAY + dt.timedelta(hours=12))
    rows = {r.meter_id: r for r in await compute_losses(source(site, history), site.assets.snapshot, DAY, NEXT)}
    assert (rows["S1"].children_total, rows["S1"].loss) == (Decimal("16.80"), Decimal("0.48"))
    assert (rows["S2"].children_total, rows["S2"].loss) == (Decimal("7.20"), Decimal("0.96"))
    e5 = [(c.start, c.end) for c in rows["S1"].children if c.meter_id == "E5"]
    assert e5 == [(DAY + dt.timedelta(hours=12), NEXT)]
    assert rows["U"].loss == Decimal("1.56")


async def test_daily_job_publishes_loss_tags_and_stores_day_rollups(tmp_path: Path, site: SiteDb, history: HistoryService) -> None:
    config = parse_config('[site]\nname = "T"\ntimezone = "Asia/Shanghai"\n', "<t>", tmp_path)
    topology = Topology(config, site.db, site.assets, site.tagdb, history=lambda: history,
                        clock=lambda: NEXT + dt.timedelta(hours=1))
    assert topology.losses_due_day() == DAY.date()  # 01:00 is after losses_at (00:30)
    assert topology.losses_due_day(NEXT + dt.timedelta(minutes=10)) == DAY.date() - dt.timedelta(days=1)
    await topology.tick()
    assert topology.losses_done == DAY.date()
    s1 = site.tagdb.read("S1.loss_pct")
    assert (s1.value, s1.quality, s1.source_ts) == (5.56, Quality.GOOD, NEXT)
    assert site.tagdb.meta("U.loss_pct").unit == "%" and site.tagdb.read("U.loss_pct").value == 5.78
    await history.historian.forwarder.drain(5)
    frame = await history.query_by("meter", ["loss:U", "loss:S2"], ["energy_total"], DAY, NEXT, "1d")
    assert {m: v for m, v in frame[["meter", "value"]].itertuples(index=False, name=None)} == {"loss:U": 1.56, "loss:S2": 0.48}
    # the next day the utility meter has no reading yet: its loss is unknown (bad), the others' good
    topology.clock = lambda: NEXT + dt.timedelta(days=1, hours=1)
    await topology.tick()
    assert site.tagdb.read("U.loss_pct").quality is Quality.BAD and site.tagdb.read("S1.loss_pct").quality is Quality.GOOD


async def test_loss_high_alarm_class(db: Database) -> None:
    assets = await build_site(db, site_toml(1))
    config = no_delays(classes={"loss_high": {"limit": 8.0, "deadband_pct": 10.0}})
    async with engine_for(db, assets, config) as engine:
        tags = engine.tagdb
        tags.register(TagMeta("E-R001.loss_pct", DataType.FLOAT, unit="%", meter_id="E-R001", point="loss_pct"))
        tags.write("E-R001.loss_pct", 5.2)
        await engine.settle()
        assert engine.active() == []
        tags.write("E-R001.loss_pct", 12.5)
        await engine.settle()
        [alarm] = engine.active(AlarmFilter(classes=frozenset({"loss_high"})))
        assert alarm.object_type == "meter" and alarm.object_id == "E-R001" and alarm.link == "gw-1"
        assert alarm.detail == "loss 12.5 % of the meter's consumption over the last day (limit 8 %)"
        tags.write("E-R001.loss_pct", 7.5, Quality.UNCERTAIN)  # estimated: says nothing
        await engine.settle()
        assert engine.get(alarm.id).condition_active  # type: ignore[union-attr]
        tags.write("E-R001.loss_pct", 7.5)  # inside the deadband (7.2..8): still active
        await engine.settle()
        assert engine.get(alarm.id).condition_active  # type: ignore[union-attr]
        tags.write("E-R001.loss_pct", 7.1)
        await engine.settle()
        assert not engine.get(alarm.id).condition_active  # type: ignore[union-attr]
