"""Apportionment by hand on a five-room case (a vacant room, a room closed mid-month), runs
that post once, bill lines, and the refusals; on SQLite and PostgreSQL.

November 2026 has 30 days, 720 intervals of an hour (the historian of these tests keeps hourly
intervals). The common meter C uses 300.00 kWh in the month; it is shared among A1..A5 at 0.85 a
kWh (255.00 in all):

====  ======  ===========================  ==================
room  area    account                      days open (of 30)
====  ======  ===========================  ==================
A1    30 m²   open since October           30
A2    20 m²   open since October           30
A3    50 m²   none: vacant                 0 (shares nothing)
A4    40 m²   closed 16 Nov 10:00          15 (the 1st to the 15th)
A5    10 m²   open since October           30
====  ======  ===========================  ==================
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from scada.billing.config import BillingConfig
from scada.billing.service import BillingService
from scada.config import parse_config
from scada.db import Database
from scada.history.service import HistoryService
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.reconcile import reconcile
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.topology.apportion import ApportionmentError, RuleSpec
from scada.topology.models import ApportionmentShare
from scada.topology.service import Topology
from scada.users.audit import Actor
from scada.users.models import AuditEntry
from tags import TagDB

from ...harness import write_lock_held
from .conftest import TZ
from .history import constant_records, open_history, store

NOV = dt.datetime(2026, 11, 1, tzinfo=TZ)
DEC = dt.datetime(2026, 12, 1, tzinfo=TZ)
NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=TZ)
CLOSED = dt.datetime(2026, 11, 16, 10, 0, tzinfo=TZ)
ENGINEER = Actor("eng", "api", "engineer")
CASHIER = Actor("cash", "api", "cashier")
AREAS = {"A1": "30", "A2": "20", "A3": "50", "A4": "40", "A5": "10"}
# kWh per hour: the rooms' own meters, for the consumption key
RATES = {"M1": "0.2", "M2": "0.1", "M3": "0.12", "M4": "0.08", "M5": "0.05"}
C_UNTIL = NOV + dt.timedelta(days=25)  # C uses 0.5 kWh an hour for 25 days: 300.00 kWh
S_FROM = NOV + dt.timedelta(days=1)  # S, over C, uses 0.4 kWh an hour on the 1st (less than C), then 0.6
HOUR = 3600


def site_toml() -> str:
    out = ['[site]\nid = "ap"\nname = "Ap"\ntimezone = "Asia/Shanghai"\n', '[[buildings]]\nid = "B"\nname = "B"\n',
           '[[floors]]\nid = "F"\nbuilding = "B"\nlevel = 1\nname = "F"\n']
    for i, (room, area) in enumerate(AREAS.items(), start=1):
        out.append(f'[[rooms]]\nid = "{room}"\nfloor = "F"\nname = "{room}"\narea_m2 = "{area}"\n')
        out.append(f'[[meters]]\nid = "M{i}"\nkind = "electricity"\nroom = "{room}"\nprofile = "acrel-ddsy1352"\nlink = "gw"\nunit_id = {i}\n')
    # the feeder S over the common meter C, for a loss shared as a source (loss:S)
    out.append('[[meters]]\nid = "S"\nkind = "electricity"\nrole = "common"\nbuilding = "B"\nprofile = "acrel-ddsy1352"\nlink = "gw"\nunit_id = 8\n')
    out.append('[[meters]]\nid = "C"\nkind = "electricity"\nrole = "common"\nbuilding = "B"\nprofile = "acrel-ddsy1352"\nlink = "gw"\nunit_id = 9\n'
               'parent = "S"\n')
    # virtual: what the feeder S feeds beside the common meter C, for a virtual meter as a source
    out.append('[[meters]]\nid = "V"\nkind = "electricity"\nrole = "virtual"\nbuilding = "B"\nformula = "S - C"\n')
    return "\n".join(out)


@dataclass
class Plant:
    db: Database
    topology: Topology
    engine: PrepaidEngine
    history: HistoryService
    accounts: dict[str, int]

    async def rule(self, method: str, *, pricing: Any = Decimal("0.85"), settle: str = "balance", weights: Any = None,
                   schedule: str = "monthly", targets: Any = None, source: str = "C") -> int:
        spec = RuleSpec(f"{method}-{next(_names)}", source, method, targets or {"floor": "F"}, weights, pricing, settle, schedule)  # type: ignore[arg-type]
        return (await self.topology.apportionment.create_rule(spec, ENGINEER)).id

    def billing(self) -> BillingService:
        """The back office over the same database, taking the topology's shares settled on the bill."""
        svc = BillingService(BillingConfig.model_validate({"dunning": {"grace_days": 0}}), self.db, self.engine, self.topology.assets)
        svc.clock = lambda: NOW
        svc.add_pending(self.topology.apportionment)
        return svc

    async def preview(self, rule: int) -> dict[str, Any]:
        result = await self.topology.apportionment.preview(rule, NOV, DEC)
        return result.as_json(2, TZ)


_names = itertools.count(1)


def _share_lines(bill: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A bill's apportionment lines: (amount, quantity, period)."""
    return [(ln["amount"], ln["quantity"], ln["period"]) for ln in bill["lines"] if ln["kind"] == "apportionment"]


def shares(preview: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s["room"]: (s["quantity"], s["amount"]) for s in preview["shares"]}


@pytest.fixture
async def plant(tmp_path: Path, db: Database) -> AsyncIterator[Plant]:
    config = parse_config('[site]\nname = "Ap"\ntimezone = "Asia/Shanghai"\n[prepaid.friendly_credit]\nwindows = []\nweekends = false\n',
                          "<t>", tmp_path)
    await apply_site(db, parse_toml(site_toml(), "<site>"), Actor.system("test"))
    assets = AssetRegistry(db)
    await assets.load()
    tagdb = TagDB()
    engine = PrepaidEngine(config, db, assets, tagdb)
    for tariff, price in (("P60", "0.60"), ("P80", "0.80")):
        await engine.tariffs.create(tariff, tariff, "electricity", TariffDefinition.model_validate({"price": price}), ENGINEER)
    accounts: dict[str, int] = {}
    opened = dt.datetime(2026, 10, 3, 9, 0, tzinfo=TZ)
    async with db.transaction() as s:
        for room in ("A1", "A2", "A4", "A5"):
            closed = CLOSED if room == "A4" else None
            a = Account(
                room_id=room, open_room_id=None if closed else room, state="closed" if closed else "open", opened_at=opened,
                opened_by="t", closed_at=closed, electricity_tariff_id="P60" if room == "A1" else "P80", thresholds=[],
                balance_minor=50_000, remainder=Decimal(0), credit_limit_minor=0, emergency_credit_minor=0, updated_at=opened,
                contact_name="", language="en", protected=False, friendly_credit=True, auto_reconnect=True, alarm_level=0,
                supply_state="on", reconnect_pending=False,
            )
            s.add(a)
            await s.flush()
            s.add(LedgerEntry(account_id=a.id, ts=opened, kind="opening", amount_minor=50_000, balance_after_minor=50_000,
                              actor="t", source="api", reason="opening"))
            accounts[room] = a.id
    await engine.load()
    history = await open_history(tmp_path, assets, HOUR)
    records = constant_records({m: r for m, r in RATES.items() if m != "M4"}, NOV, DEC, HOUR)
    records += constant_records({"S": "0.4"}, NOV, S_FROM, HOUR) + constant_records({"S": "0.6"}, S_FROM, DEC, HOUR)
    records += constant_records({"C": "0.5"}, NOV, C_UNTIL, HOUR) + constant_records({"C": "0"}, C_UNTIL, DEC, HOUR)
    records += constant_records({"M4": RATES["M4"]}, NOV, CLOSED, HOUR) + constant_records({"M4": "2"}, CLOSED, DEC, HOUR)
    await store(history, records)
    topology = Topology(config, db, assets, tagdb, history=lambda: history, prepaid=lambda: engine, clock=lambda: NOW)
    try:
        yield Plant(db, topology, engine, history, accounts)
    finally:
        await history.historian.shutdown(1)
        await engine.supply.idle()
        engine.close()
    report = await reconcile(db, 2)
    assert report.ok, [str(m) for m in report.mismatches]


async def test_golden_shares_by_each_method(plant: Plant) -> None:
    """The source: C uses 600 × 0.5 = 300 kWh, every hour of the month stored; its register's
    step is 0.01 kWh, so 30000 steps are shared.

    **By area** — weights area × days open: A1 30 × 30 = 900, A2 20 × 30 = 600, A4 40 × 15 = 600,
    A5 10 × 30 = 300; 2400 in all (A3 is vacant: its part goes to the others). Steps: A1 30000 ×
    900/2400 = 11250, A2 7500, A4 7500, A5 3750 → 112.50, 75.00, 75.00, 37.50 kWh. At 0.85:
    95.625, 63.75, 63.75, 31.875 = 255.00. Floors in fen 9562, 6375, 6375, 3187 (25499): A1 and A5
    both have .5 left; the last fen goes to the first room, A1.

    **Equally** — weights the days open: 30, 30, 15, 30 (105). Steps 8571.43, 8571.43, 4285.71,
    8571.43 → 8571, 8571, 4285, 8571 (29998); two steps to the largest remainders: A4 (.71), then
    A1 (.43, as A2 and A5, but first): 85.72, 85.71, 42.86, 85.71 kWh. At 0.85: 72.862, 72.8535,
    36.431, 72.8535 = 255.00: floors 7286, 7285, 3643, 7285 (25499); the last fen to the largest
    remainder (.35: A2 and A5, A2 first): 72.86, 72.86, 36.43, 72.85.

    **By ratio** 1 : 2 : 3 : 2 : 1 × days open: A1 30, A2 60, (A3 vacant), A4 30, A5 30 (150):
    60.00, 120.00, 60.00, 60.00 kWh; 51.00, 102.00, 51.00, 51.00.

    **By consumption** — each account's own use while it was open: A1 720 × 0.2 = 144, A2 72,
    A4 (until 16 Nov 10:00: 370 hours × 0.08) 29.6, A5 36; 281.6 in all (A3's meter and A4's use
    after it closed do not count). Steps 15340.91, 7670.45, 3153.41, 3835.23 → 15340, 7670, 3153,
    3835 (29998); two steps to the largest remainders (.91: A1, .45: A2): 153.41, 76.71, 31.53,
    38.35 kWh. At 0.85: 130.3985, 65.2035, 26.8005, 32.5975 = 255.00; floors 13039, 6520, 2680,
    3259 (25498); two fen to the largest remainders (.85: A1, .75: A5): 130.40, 65.20, 26.80, 32.60.

    **Each at its own tariff** — by area (112.50, 75.00, 75.00, 37.50 kWh), A1 at 0.60, the
    others at 0.80: 67.50 + 60.00 + 60.00 + 30.00 = 217.50.
    """
    usage = await plant.topology.usage("C", NOV, DEC)
    assert usage.quantity == Decimal("300") and (usage.intervals, usage.expected) == (720, 720)
    assert plant.topology.usage_source().resolution("C") == Decimal("0.01")

    p = await plant.preview(await plant.rule("area"))
    assert (p["quantity"], p["total"], p["unit"], p["days"], p["vacant"]) == ("300.00", "255.00", "kWh", 30, ["A3"])
    assert shares(p) == {"A1": ("112.50", "95.63"), "A2": ("75.00", "63.75"), "A4": ("75.00", "63.75"), "A5": ("37.50", "31.87")}
    assert [s["key"] for s in p["shares"]][2] == {"area_m2": "40", "days_open": 15, "days": 30}

    p = await plant.preview(await plant.rule("equal"))
    assert shares(p) == {"A1": ("85.72", "72.86"), "A2": ("85.71", "72.86"), "A4": ("42.86", "36.43"), "A5": ("85.71", "72.85")}
    assert p["total"] == "255.00"

    weights = {room: Decimal(w) for room, w in zip(AREAS, ("1", "2", "3", "2", "1"), strict=True)}
    p = await plant.preview(await plant.rule("ratio", weights=weights))
    assert shares(p) == {"A1": ("60.00", "51.00"), "A2": ("120.00", "102.00"), "A4": ("60.00", "51.00"), "A5": ("60.00", "51.00")}
    assert p["shares"][1]["key"] == {"weight": "2", "days_open": 30, "days": 30}

    p = await plant.preview(await plant.rule("consumption"))
    assert {s["room"]: s["key"]["consumption"] for s in p["shares"]} == {"A1": "144", "A2": "72", "A4": "29.6", "A5": "36"}
    assert shares(p) == {"A1": ("153.41", "130.40"), "A2": ("76.71", "65.20"), "A4": ("31.53", "26.80"), "A5": ("38.35", "32.60")}

    p = await plant.preview(await plant.rule("area", pricing="tariff"))
    assert shares(p) == {"A1": ("112.50", "67.50"), "A2": ("75.00", "60.00"), "A4": ("75.00", "60.00"), "A5": ("37.50", "30.00")}
    assert p["total"] == "217.50" and p["pricing"] == "tariff"


async def test_a_loss_shared_by_area(plant: Plant) -> None:
    """The loss of the feeder S over the common meter C (``loss:S``) shared by area.

    S uses 24 × 0.4 + 696 × 0.6 = 9.6 + 417.6 = 427.20 kWh in November, C 300.00: loss 127.20 kWh,
    12720 steps. By area × days open (900 : 600 : 600 : 300 of 2400; A3 vacant): 4770, 3180, 3180,
    1590 → 47.70, 31.80, 31.80, 15.90 kWh. At 0.85: 40.545, 27.03, 27.03, 13.515 = 108.12; floors
    4054, 2703, 2703, 1351 (10811): A1 and A5 both have .5 left, the last fen to the first, A1.
    On the 1st alone S used less than C (9.6 − 12.0 = −2.4 kWh): a negative loss is not shared."""
    rule = await plant.rule("area", source="loss:S")
    p = await plant.preview(rule)
    assert (p["quantity"], p["total"], p["unit"], p["vacant"]) == ("127.20", "108.12", "kWh", ["A3"])
    assert shares(p) == {"A1": ("47.70", "40.55"), "A2": ("31.80", "27.03"), "A4": ("31.80", "27.03"), "A5": ("15.90", "13.51")}
    with pytest.raises(ApportionmentError, match=r"the source loss:S is negative \(-2.4") as err:
        await plant.topology.apportionment.preview(rule, NOV, S_FROM)
    assert err.value.status == 409
    async with plant.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "apportionment")) == 0


async def test_a_virtual_meter_as_the_source(plant: Plant) -> None:
    """V = S − C, computed from its terms' intervals: 427.20 − 300.00 = 127.20 kWh in November,
    shared by area exactly as the loss of S over C is (see above), and posted by a run: one
    ledger entry per room naming V, adding up to the priced total. On the 1st alone V is
    9.6 − 12.0 = −2.4 kWh: nothing to share."""
    usage = await plant.topology.usage("V", NOV, DEC)
    assert usage.quantity == Decimal("127.2") and not usage.estimated
    assert (usage.intervals, usage.expected) == (30 * 24, 30 * 24)  # November's hours, each counted once (not once per term)
    assert plant.topology.usage_source().resolution("V") == Decimal("0.01")
    rule = await plant.rule("area", source="V")
    p = await plant.preview(rule)
    assert (p["quantity"], p["total"], p["unit"], p["vacant"]) == ("127.20", "108.12", "kWh", ["A3"])
    assert shares(p) == {"A1": ("47.70", "40.55"), "A2": ("31.80", "27.03"), "A4": ("31.80", "27.03"), "A5": ("15.90", "13.51")}
    with pytest.raises(ApportionmentError, match=r"the source V is negative \(-2.4") as err:
        await plant.topology.apportionment.preview(rule, NOV, S_FROM)
    assert err.value.status == 409
    run = await plant.topology.apportionment.run(rule, "2026-11", CASHIER)
    assert run.detail["total"] == "108.12"
    async with plant.db.sessions() as s:
        posted = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment"))).all()
        pending = (await s.scalars(select(ApportionmentShare).where(ApportionmentShare.state == "pending"))).all()
    # A4's account is closed: its share waits for its bill
    assert sorted((e.account_id, e.amount_minor, e.meter_id) for e in posted) == sorted(
        (plant.accounts[room], -minor, "V") for room, minor in (("A1", 4055), ("A2", 2703), ("A5", 1351))
    )
    assert [(p.room_id, p.amount_minor) for p in pending] == [("A4", 2703)]
    assert -sum(e.amount_minor for e in posted) + sum(p.amount_minor for p in pending) == 10812


async def test_a_run_posts_once_and_settles_a_closed_account_at_its_bill(plant: Plant) -> None:
    rule = await plant.rule("area")
    apportionment = plant.topology.apportionment
    with pytest.raises(ApportionmentError, match="has not ended yet"):
        await apportionment.run(rule, "2026-12", CASHIER)
    with pytest.raises(ApportionmentError, match="like 2026-11"):
        await apportionment.run(rule, "2026-11-05", CASHIER)
    first = await apportionment.run(rule, "2026-11", CASHIER)
    assert not first.replayed and first.detail["total"] == "255.00"
    async with plant.db.sessions() as s:
        entries = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment").order_by(LedgerEntry.account_id))).all()
        pending = (await s.scalars(select(ApportionmentShare).where(ApportionmentShare.state == "pending"))).all()
    # A4's account is closed: its share waits for a bill; the others are deducted from their balance
    assert {e.account_id: e.amount_minor for e in entries} == {
        plant.accounts["A1"]: -9563, plant.accounts["A2"]: -6375, plant.accounts["A5"]: -3187,
    }
    assert all(e.idem_key == f"apportionment:{rule}:2026-11:{e.account_id}" and e.actor == "cash" for e in entries)
    assert [(p.room_id, p.amount_minor) for p in pending] == [("A4", 6375)]
    assert plant.engine.views["A1"].balance_minor == 50_000 - 9563
    again = await apportionment.run(rule, "2026-11", CASHIER)
    assert again.replayed and again.run_id == first.run_id
    async with plant.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "apportionment")) == 3
        audit = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "apportionment.run"))).all()
    assert [(a.actor, a.reason) for a in audit] == [("cash", "period 2026-11")]
    lines = await apportionment.pending_lines(plant.accounts["A4"], "2026-11")
    assert [(ln.room_id, ln.amount_minor, ln.quantity, ln.unit) for ln in lines] == [("A4", 6375, Decimal("75"), "kWh")]
    assert await apportionment.pending_lines(plant.accounts["A4"], "2026-10") == []
    # the closed account's final bill of November takes it, once
    billing = plant.billing()
    result = await billing.run("2026-11", ["A4"], actor=CASHIER)
    assert result.posted == 1 and [_share_lines(b) for b in result.bills] == [[("63.75", "75", "2026-11")]]
    assert await apportionment.pending_lines(plant.accounts["A4"]) == []
    assert (await billing.run("2026-11", ["A4"], actor=CASHIER)).posted == 0


async def test_settle_by_bill_posts_nothing_to_balances(plant: Plant) -> None:
    rule = await plant.rule("equal", settle="bill")
    await plant.topology.apportionment.run(rule, "2026-11", CASHIER)
    async with plant.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "apportionment")) == 0
    lines = await plant.topology.apportionment.pending_lines(plant.accounts["A1"], "2026-11")
    assert [ln.amount_minor for ln in lines] == [7286] and lines[0].description.startswith("equal-")


async def test_shares_settled_on_the_bill_go_on_the_months_bill_once(plant: Plant) -> None:
    """A rule settled on the bill: its run posts nothing; the billing run of November posts each
    share as an ``apportionment`` entry on the month's last instant and shows it as a line of the
    bill (rule, period, quantity, unit, price); the bill's total is the share; a second billing
    run, and December's, post nothing; the ledger reconciles and statements list the shares."""
    billing = plant.billing()
    rule = await plant.rule("equal", settle="bill")
    run = await plant.topology.apportionment.run(rule, "2026-11", CASHIER)
    # 255.00 by days open: 30 : 30 : 15 : 30 (A3 vacant); the last fen to A1 and A2 (ties to the first)
    want = {"A1": "72.86", "A2": "72.86", "A4": "36.43", "A5": "72.85"}
    assert {s["room"]: s["amount"] for s in run.detail["shares"]} == want
    quantities = {s["room"]: s["quantity"] for s in run.detail["shares"]}
    preview = await billing.run("2026-11", preview=True, actor=CASHIER)
    assert {b["room"]: _share_lines(b) for b in preview.bills} == {r: [(a, quantities[r], "2026-11")] for r, a in want.items()}
    async with plant.db.sessions() as s:  # a preview posts nothing and takes nothing
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "apportionment")) == 0
        assert {sh.state for sh in (await s.scalars(select(ApportionmentShare))).all()} == {"pending"}

    result = await billing.run("2026-11", actor=CASHIER)
    assert result.issued == 4 and result.posted == 4
    bills = {b["room"]: b for b in result.bills}
    assert {r: _share_lines(b) for r, b in bills.items()} == {r: [(a, quantities[r], "2026-11")] for r, a in want.items()}
    for room, amount in want.items():
        bill = bills[room]
        [line] = [ln for ln in bill["lines"] if ln["kind"] == "apportionment"]
        assert (line["rule"], line["unit"], line["unit_price"], line["method"], line["source"]) == (rule, "kWh", "0.85", "equal", "C")
        assert line["label"].startswith("equal-")
        # the only entry of November: the bill's total is the share, taken from the opening 500.00
        assert (bill["total"], bill["opening_balance"], bill["closing_balance"]) == (amount, "500.00", format(Decimal("500.00") - Decimal(amount), "f"))
    assert sum(Decimal(b["total"]) for b in bills.values()) == Decimal("255.00")
    async with plant.db.sessions() as s:
        shares = (await s.scalars(select(ApportionmentShare).order_by(ApportionmentShare.room_id))).all()
        entries = {e.id: e for e in (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment"))).all()}
    assert [(sh.room_id, sh.state, sh.bill_ref) for sh in shares] == [(r, "billed", "2026-11") for r in want]
    for sh in shares:
        e = entries[sh.ledger_entry_id]
        assert (e.account_id, -e.amount_minor, e.ts, e.idem_key, e.actor) == (
            sh.account_id, sh.amount_minor, DEC - dt.timedelta(microseconds=1), f"apportionment:{rule}:2026-11:{sh.account_id}", "system:billing")
    assert plant.engine.views["A1"].balance_minor == 50_000 - 7286

    again = await billing.run("2026-11", actor=CASHIER)
    assert (again.issued, again.posted) == (0, 0) and len(again.bills) == 4
    billing.clock = lambda: dt.datetime(2027, 1, 2, 9, 0, tzinfo=TZ)
    december = await billing.run("2026-12", actor=CASHIER)
    assert december.posted == 0 and all(_share_lines(b) == [] for b in december.bills)
    async with plant.db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "apportionment")) == 4
    report = await reconcile(plant.db, 2)
    assert report.ok, [str(m) for m in report.mismatches]
    assert report.by_kind["apportionment"] == -25500
    statement = (await billing.statement("A1", NOV, DEC)).as_json(2)
    [item] = [e for e in statement["entries"] if e["kind"] == "apportionment"]
    assert (item["amount"], item["quantity"], item["unit"]) == ("-72.86", quantities["A1"], "kWh")
    assert statement["totals"]["apportionment"] == "-72.86" and statement["closing_balance"] == "427.14"


async def test_refusals(plant: Plant) -> None:
    apportionment = plant.topology.apportionment
    for spec, field in (
        (RuleSpec("x", "NOPE", "area", {"floor": "F"}, None, Decimal(1), "balance", "monthly"), "source"),
        (RuleSpec("x", "C", "area", {"rooms": ["A1", "ZZ"]}, None, Decimal(1), "balance", "monthly"), "targets.rooms"),
        (RuleSpec("x", "C", "ratio", {"floor": "F"}, None, Decimal(1), "balance", "monthly"), "weights"),
        (RuleSpec("x", "C", "ratio", {"floor": "F"}, {"A1": Decimal(1)}, Decimal(1), "balance", "monthly"), "weights"),
        (RuleSpec("x", "C", "area", {"floor": "F"}, {"A1": Decimal(1)}, Decimal(1), "balance", "monthly"), "weights"),
    ):
        with pytest.raises(ApportionmentError) as err:
            await apportionment.create_rule(spec, ENGINEER)
        assert err.value.field == field
    rule = await plant.rule("area", targets={"rooms": ["A3"]})
    with pytest.raises(ApportionmentError, match="no target room had an open account"):
        await apportionment.preview(rule, NOV, DEC)
    with pytest.raises(ApportionmentError, match="no known quantity"):
        await apportionment.preview(await plant.rule("area"), DEC, DEC + dt.timedelta(days=1))


_days = itertools.count(0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["area", "equal", "consumption"]), price=st.decimals(min_value=Decimal("0.01"), max_value=5, places=4))
async def test_a_second_run_posts_nothing(plant: Plant, method: str, price: Decimal) -> None:
    rule = await plant.rule(method, pricing=price, schedule="daily")
    period = (NOV.date() + dt.timedelta(days=next(_days) % 30)).isoformat()

    async def posted() -> list[tuple[int, int]]:
        async with plant.db.sessions() as s:
            rows = (await s.execute(select(LedgerEntry.account_id, LedgerEntry.amount_minor).where(LedgerEntry.kind == "apportionment")
                                    .order_by(LedgerEntry.id))).all()
        return [(a, m) for a, m in rows]

    first = await plant.topology.apportionment.run(rule, period, CASHIER)
    after_first = await posted()
    second = await plant.topology.apportionment.run(rule, period, CASHIER)
    assert second.replayed and not first.replayed and await posted() == after_first
    async with plant.db.sessions() as s:
        rows = (await s.scalars(select(ApportionmentShare).where(ApportionmentShare.run_id == first.run_id))).all()
        entries = (await s.scalars(select(LedgerEntry).where(LedgerEntry.idem_key.like(f"apportionment:{rule}:{period}:%")))).all()
    # the shares add up to the priced total; those of open accounts are in the ledger, A4's (closed) waits for a bill
    assert sum(r.amount_minor for r in rows) == int(Decimal(first.detail["total"]) * 100)
    assert sorted(-e.amount_minor for e in entries) == sorted(r.amount_minor for r in rows if r.state == "posted")


async def test_due_periods_run_by_themselves_once(plant: Plant) -> None:
    topology = plant.topology
    topology.clock = lambda: dt.datetime(2026, 11, 10, 12, 0, tzinfo=TZ)  # the rule is made in November
    rule = await plant.rule("area")
    apportionment = topology.apportionment
    assert apportionment.due_period("monthly", dt.datetime(2026, 12, 1, 0, 30, tzinfo=TZ), (1, 0)) == "2026-10"
    assert apportionment.due_period("monthly", dt.datetime(2026, 12, 1, 1, 0, tzinfo=TZ), (1, 0)) == "2026-11"
    assert apportionment.due_period("daily", dt.datetime(2026, 12, 1, 1, 0, tzinfo=TZ), (1, 0)) == "2026-11-30"
    assert apportionment.due_period("daily", dt.datetime(2026, 12, 1, 0, 59, tzinfo=TZ), (1, 0)) == "2026-11-29"
    # on the 1st before 01:00 October is due, which ended before the rule was made: nothing runs
    topology.clock = lambda: dt.datetime(2026, 12, 1, 0, 30, tzinfo=TZ)
    assert await topology.run_due_apportionments() == 0
    topology.clock = lambda: dt.datetime(2026, 12, 1, 1, 5, tzinfo=TZ)
    assert await topology.run_due_apportionments() == 1
    assert await topology.run_due_apportionments() == 0  # done already
    runs = await apportionment.runs(rule)
    assert [(r["period"], r["total"], r["created_by"]) for r in runs] == [("2026-11", "255.00", "system:apportionment")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_tick_with_its_periods_done_takes_no_write_lock(plant: Plant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tick looks at every active rule every minute; once its due period has run it only
    reads (on SQLite: without the write lock, which another writer may hold meanwhile)."""
    topology = plant.topology
    topology.clock = lambda: dt.datetime(2026, 11, 10, 12, 0, tzinfo=TZ)
    rule = await plant.rule("area")
    topology.clock = lambda: dt.datetime(2026, 12, 1, 1, 5, tzinfo=TZ)
    assert await topology.run_due_apportionments() == 1
    with write_lock_held(plant.db.url.database or "", monkeypatch):  # a lookup that took the lock fails soon
        assert await topology.run_due_apportionments() == 0
        assert [r["period"] for r in await topology.apportionment.runs(rule)] == ["2026-11"]
