"""The ``losses`` report on a small tree, by hand, and against the meter topology's own losses
(what ``GET /api/v1/losses`` answers), on SQLite and PostgreSQL::

    U (utility, polled)
    ├── S (feeder, polled)
    │   ├── A (room R1)
    │   └── B (room R2)
    └── M (sub-meter, room R3)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from scada.config import parse_config
from scada.db import Database
from scada.history.service import HistoryService
from scada.reports.charts import chart_data
from scada.reports.config import ReportsConfig
from scada.reports.params import ReportError
from scada.reports.service import ReportService
from scada.reports.sources import Sources
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.topology.service import Topology
from scada.users.audit import Actor
from tags import TagDB

from ..topology.history import constant_records, open_history, store
from .conftest import TZ, local

TREE = """
[site]
id = "loss"
name = "Losses"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B1"
name = "B1"

[[floors]]
id = "F1"
building = "B1"
level = 1
name = "F1"

[[rooms]]
id = "R1"
floor = "F1"
name = "R1"

[[rooms]]
id = "R2"
floor = "F1"
name = "R2"

[[rooms]]
id = "R3"
floor = "F1"
name = "R3"

[[meters]]
id = "U"
kind = "electricity"
role = "utility"
building = "B1"
profile = "acrel-adf400l"
link = "gw"
unit_id = 20
circuit = 1

[[meters]]
id = "S"
kind = "electricity"
role = "common"
building = "B1"
profile = "acrel-adf400l"
link = "gw"
unit_id = 10
circuit = 1
parent = "U"

[[meters]]
id = "A"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
parent = "S"

[[meters]]
id = "B"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2
parent = "S"

[[meters]]
id = "M"
kind = "electricity"
room = "R3"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 3
parent = "U"
"""

DAY1, DAY2, DAY3 = local(2026, 11, 3), local(2026, 11, 4), local(2026, 11, 5)
# kWh every 15 minutes (96 intervals a day)
FIRST = {"U": "0.20", "S": "0.16", "A": "0.05", "B": "0.10", "M": "0.03"}
SECOND = {"U": "0.135", "S": "0.11", "A": "0.04", "B": "0.06", "M": "0.02"}
THIRD = {"U": "0.10", "S": "0.08", "A": "0.03", "M": "0.01"}  # B sent nothing


@dataclass
class Tree:
    topology: Topology
    service: ReportService


@pytest.fixture
async def tree(db: Database, tmp_path: Path) -> AsyncIterator[Tree]:
    await apply_site(db, parse_toml(TREE, "site.toml"), Actor.system("test"))
    assets = AssetRegistry(db)
    await assets.load()
    history: HistoryService = await open_history(tmp_path, assets)
    await store(history, constant_records(FIRST, DAY1, DAY2) + constant_records(SECOND, DAY2, DAY3)
                + constant_records(THIRD, DAY3, DAY3 + dt.timedelta(days=1)))
    config = parse_config('[site]\nname = "T"\ntimezone = "Asia/Shanghai"\n', "<t>", tmp_path)
    topology = Topology(config, db, assets, TagDB(), history=lambda: history)
    sources = Sources(db, lambda: assets.snapshot, None, TZ, 2, "CNY", ReportsConfig(), usage=topology.usage_source)
    try:
        yield Tree(topology, ReportService(sources))
    finally:
        await history.historian.shutdown(1)


def by_key(rows: list[dict], *keys: str) -> dict[tuple[str, ...], dict]:
    return {tuple(r[k] for k in keys): r for r in rows}


NUMBERS = ("consumption", "children_consumption", "loss", "loss_pct", "children", "children_missing", "missing")


async def test_daily_losses_by_hand_and_as_the_topology_computes_them(tree: Tree) -> None:
    """3 November: S = 96 × 0.16 = 15.36; A + B = 96 × (0.05 + 0.10) = 14.40: loss 0.96 =
    6.25 %. U = 96 × 0.20 = 19.20; S + M = 15.36 + 96 × 0.03 = 15.36 + 2.88 = 18.24: loss 0.96 = 5.00 %.
    4 November: S = 96 × 0.11 = 10.56; A + B = 96 × 0.10 = 9.60: loss 0.96 = 9.0909…% → 9.09 %.
    U = 96 × 0.135 = 12.96; S + M = 10.56 + 1.92 = 12.48: loss 0.48 = 3.7037…% → 3.70 %.
    Per parent: S 25.92 − 24.00 = 1.92 = 7.4074…% → 7.41 %; U 32.16 − 30.72 = 1.44 = 4.4776…% → 4.48 %.
    Per day (both parents): 34.56 − 32.64 = 1.92 = 5.5555…% → 5.56 %; 23.52 − 22.08 = 1.44 =
    6.1224…% → 6.12 %. Overall: 58.08 − 54.72 = 3.36 = 5.7851…% → 5.79 %."""
    report = await tree.service.report("losses", {"from": "2026-11-03", "to": "2026-11-04"})
    body = report.as_json()
    rows = by_key(body["rows"], "day", "meter")
    got = {k: tuple(r[n] for n in NUMBERS) for k, r in rows.items()}
    assert got == {
        ("2026-11-03", "S"): ("15.36", "14.4", "0.96", "6.25", "2", "0", ""),
        ("2026-11-03", "U"): ("19.2", "18.24", "0.96", "5.00", "2", "0", ""),
        ("2026-11-04", "S"): ("10.56", "9.6", "0.96", "9.09", "2", "0", ""),
        ("2026-11-04", "U"): ("12.96", "12.48", "0.48", "3.70", "2", "0", ""),
    }
    assert [(r["day"], r["meter"]) for r in body["rows"]] == [("2026-11-03", "S"), ("2026-11-03", "U"),
                                                              ("2026-11-04", "S"), ("2026-11-04", "U")]
    assert body["unit"] == "kWh" and body["commodity"] == "electricity"
    assert body["totals"] == {"consumption": "58.08", "children_consumption": "54.72", "loss": "3.36", "loss_pct": "5.79",
                              "children": "4", "children_missing": "0", "consumption_missing": "0", "estimated": "0", "missing": None}
    levels = {name: frame for name, _, frame in report.levels()}
    per_meter = {m: (report.text(report.values[0], c), report.text(report.values[2], loss), report.text(report.values[3], pct))
                 for m, c, loss, pct in levels["meter"][["meter", "consumption", "loss", "loss_pct"]].itertuples(index=False)}
    assert per_meter == {"S": ("25.92", "1.92", "7.41"), "U": ("32.16", "1.44", "4.48")}
    per_day = {d: (report.text(report.values[2], loss), report.text(report.values[3], pct))
               for d, loss, pct in levels["day"][["day", "loss", "loss_pct"]].itertuples(index=False)}
    assert per_day == {"2026-11-03": ("1.92", "5.56"), "2026-11-04": ("1.44", "6.12")}
    chart = chart_data(report)
    assert (chart["unit"], chart["categories"], chart["series"]) == ("kWh", ["2026-11-03", "2026-11-04"], [{"name": "loss", "values": [1.92, 1.44]}])

    # the same numbers as the topology's losses day by day (GET /api/v1/losses?by=day)
    topo = [r.as_json(TZ) for r in await tree.topology.losses_by_day(DAY1.date(), DAY2.date())]
    assert len(topo) == len(rows) == 4
    for item in topo:
        row = rows[(item["from"][:10], item["meter"])]
        for name in ("consumption", "children_consumption", "loss", "loss_pct"):
            assert Decimal(row[name]) == Decimal(item[name]), (item["meter"], name)
        assert int(row["children"]) == len({c["meter"] for c in item["children"]})

    # a month in one bucket: the topology's loss over the whole range, per parent
    month = by_key((await tree.service.report("losses", {"from": "2026-11-03", "to": "2026-11-04", "interval": "month"})).as_json()["rows"], "meter")
    whole = {r.meter_id: r for r in await tree.topology.losses(DAY1, DAY3)}
    assert {m: (r["month"], r["loss"], r["loss_pct"]) for (m,), r in month.items()} == {
        "S": ("2026-11", "1.92", "7.41"), "U": ("2026-11", "1.44", "4.48")}
    assert {m: (r.loss, r.loss_pct) for m, r in whole.items()} == {
        "S": (Decimal("1.92"), Decimal("7.41")), "U": (Decimal("1.44"), Decimal("4.48"))}


async def test_a_child_without_data_is_named_and_its_parents_loss_unknown(tree: Tree) -> None:
    """5 November: B sent nothing. S = 7.68, A = 2.88, B unknown: S's children and loss unknown,
    B named; U = 9.60, S + M = 7.68 + 0.96 = 8.64: loss 0.96 = 10.00 %. Over 4–5 November S's
    total is unknown too (a day without B), U's 12.96 + 9.60 = 22.56 − 21.12 = 1.44 = 6.38…% → 6.38 %."""
    report = await tree.service.report("losses", {"from": "2026-11-04", "to": "2026-11-05"})
    body = report.as_json()
    rows = by_key(body["rows"], "day", "meter")
    s = rows[("2026-11-05", "S")]
    assert (s["consumption"], s["children_consumption"], s["loss"], s["loss_pct"], s["children"], s["children_missing"], s["missing"]) == (
        "7.68", None, None, None, "2", "1", "B")
    u = rows[("2026-11-05", "U")]
    assert (u["consumption"], u["children_consumption"], u["loss"], u["loss_pct"], u["missing"]) == ("9.6", "8.64", "0.96", "10.00", "")
    # totals: one day of S lacked a child, so S's (and the overall) children and loss are unknown
    assert (body["totals"]["children_missing"], body["totals"]["loss"], body["totals"]["children_consumption"]) == ("1", None, None)
    assert body["totals"]["consumption"] == "40.8"  # 10.56 + 12.96 + 7.68 + 9.60
    per_meter = {m: tuple(None if v is None or v is pd.NA else int(v) for v in rest)
                 for m, *rest in report.aggregate(["meter"])[["meter", "children_consumption", "loss", "loss_pct", "children_missing"]]
                 .itertuples(index=False)}
    assert per_meter == {"S": (None, None, None, 1), "U": (21_120_000, 1_440_000, 638, 0)}


async def test_without_the_topology_the_report_is_not_available(tree: Tree) -> None:
    bare = ReportService(Sources(tree.service.sources.db, tree.service.sources.snapshot, None, TZ, 2, "CNY", ReportsConfig()))
    assert "losses" not in bare.available and "losses" in tree.service.available
    with pytest.raises(ReportError) as caught:
        bare.parse("losses", {"from": "2026-11-03", "to": "2026-11-04"})
    assert (caught.value.param, caught.value.status) == ("kind", 404) and "topology" in caught.value.message
    # the group is checked before any work: losses are by meter only
    with pytest.raises(ReportError) as caught:
        tree.service.parse("losses", {"from": "2026-11-03", "to": "2026-11-04", "group": "room"})
    assert caught.value.param == "group"
