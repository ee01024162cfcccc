"""Virtual meters: their history from their terms' intervals, their live read-only tag (what
OPC UA publishes), and floors and buildings summed at the ends of the tree only."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from historian import QueryError
from scada.history.service import HistoryService
from scada.opcua.component import site_spec
from scada.site.assets import AssetSnapshot, BuildingInfo, MeterInfo, SiteInfo
from scada.topology.usage import Span, UsageSource
from scada.topology.virtual import VirtualMeters
from tags import Quality, QualityReason, TagChange, TagDB, TagMeta

from .conftest import TZ, SiteDb
from .history import constant_records, open_history, store

DAY = dt.datetime(2026, 11, 5, tzinfo=TZ)
NEXT = DAY + dt.timedelta(days=1)
PER_INTERVAL = {"E1": "0.05", "E2": "0.10", "C1": "0.02", "E3": "0.03", "E4": "0.04", "E5": "0.01", "S1": "0.18", "S2": "0.085"}


@pytest.fixture
async def history(tmp_path: Path, site: SiteDb) -> AsyncIterator[HistoryService]:
    service = await open_history(tmp_path, site.assets)
    await store(service, constant_records(PER_INTERVAL, DAY, NEXT))
    try:
        yield service
    finally:
        await service.historian.shutdown(1)


async def test_virtual_history_is_the_sum_of_its_terms(site: SiteDb, history: HistoryService) -> None:
    """V = S1 + S2: 17.28 + 8.16 = 25.44 kWh a day, 0.265 every 15 minutes. The building's own
    consumption counts only the ends of the tree (E1..E5, C1: 96 × 0.25 = 24.00), not the
    utility meter, the feeders or V."""
    frame = await history.query_by("meter", ["V", "E1"], ["energy_total"], DAY, NEXT, "1d")
    assert {m: round(v, 6) for m, v in frame[["meter", "value"]].itertuples(index=False, name=None)} == {"V": 25.44, "E1": 4.8}
    frame = await history.query_by("meter", ["V"], ["energy_total"], DAY, DAY + dt.timedelta(hours=1))
    assert [round(v, 6) for v in frame["value"]] == [0.265] * 4 and list(frame["intervals"]) == [1] * 4
    frame = await history.query_by("building", ["B"], ["energy_total"], DAY, NEXT, "1d")
    assert round(float(frame["value"].iloc[0]), 6) == 24.0
    with pytest.raises(QueryError, match="has only registers"):
        await history.query_by("meter", ["V"], ["power"], DAY, NEXT, "1d")
    with pytest.raises(QueryError, match="agg must be sum"):
        await history.query_by("meter", ["V"], ["energy_total"], DAY, NEXT, "1d", "max")
    # a term without data leaves the virtual meter without a value
    frame = await history.query_by("meter", ["V"], ["energy_total"], NEXT, NEXT + dt.timedelta(hours=1))
    assert frame["value"].isna().all()
    usage = (await UsageSource(site.db, site.assets.snapshot, history).usage([Span("V", DAY, NEXT)]))[0]
    assert usage.quantity == Decimal("25.44")


async def test_live_tag_and_opc_ua_variable() -> None:
    """V = S1 + S2 with S2 behind a 40:1 transformer: 100.5 + 40 × 2.25 = 190.5 kWh."""

    def meter(mid: str, role: str = "common", multiplier: str = "1", formula: str | None = None) -> MeterInfo:
        return MeterInfo(mid, "electricity", role, None, "B", "p", "gw", 1, None, Decimal(multiplier), None, Decimal(0),
                         None, None, True, formula=formula)

    snap = AssetSnapshot(
        site=SiteInfo("s", "S", "UTC"), buildings={"B": BuildingInfo("B", "s", "B")},
        meters={"S1": meter("S1"), "S2": meter("S2", multiplier="40"), "V": meter("V", "virtual", formula="S1 + S2")},
    )
    tagdb = TagDB()
    for m in ("S1", "S2"):
        tagdb.register(TagMeta(f"{m}.energy_total", meter_id=m, point="energy_total"))
    virtual = VirtualMeters(tagdb)
    virtual.plan(snap)
    assert tagdb.read("V.energy_total").quality is Quality.BAD  # no term read yet
    t1, t2 = dt.datetime(2026, 11, 5, 8, tzinfo=TZ), dt.datetime(2026, 11, 5, 8, 0, 5, tzinfo=TZ)
    tagdb.write("S1.energy_total", 100.5, source_ts=t1)
    tagdb.write("S2.energy_total", 2.25, source_ts=t2)
    assert virtual.wants("S1.energy_total") and not virtual.wants("E1.energy_total")
    virtual.feed([TagChange("S2.energy_total", None, tagdb.read("S2.energy_total"))])
    tv = tagdb.read("V.energy_total")
    assert (tv.value, tv.quality, tv.source_ts) == (190.5, Quality.GOOD, t2)
    tagdb.write("S2.energy_total", None, Quality.BAD, QualityReason.COMM_FAILURE)
    virtual.feed([TagChange("S2.energy_total", None, tagdb.read("S2.energy_total"))])
    assert tagdb.read("V.energy_total").quality is Quality.BAD and tagdb.read("V.energy_total").value == 190.5
    meta = tagdb.meta("V.energy_total")
    assert meta.unit == "kWh" and "read-only" in meta.description
    # OPC UA publishes it under its building, one variable, no method
    spec = await site_spec(snap, tagdb, currency="CNY", site_name="x")
    v = spec.meters["V"]
    assert v.room_id is None and v.building_id == "B" and "virtual" in v.description and "read-only" in v.description
    assert [p.point for p in v.points] == ["energy_total"] and not v.switchable
