"""A database written before the topology revisions (meters, an account, its ledger and billing
cursor) upgrades in place with nothing lost: meters are polled (not manual, no formula), have no
parent yet, and the registry and the ledger read as before. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table, func, insert, select

from scada.db import Database, async_url
from scada.db.engine import _run_alembic, alembic_config
from scada.db.types import ExactDecimal
from scada.prepaid.models import Account, LedgerEntry, MeterState
from scada.site.assets import AssetRegistry
from scada.site.models import Building, Floor, MeterParent, Room, Site
from scada.topology.models import ApportionmentRule, ManualReading
from scada.users.audit import Actor


def heads_before_topology() -> list[str]:
    """Every branch's head but the topology branch's (the schema of the release before it)."""
    script = ScriptDirectory.from_config(alembic_config())
    return sorted(h for h in script.get_heads() if not h.startswith("09"))


BEFORE = heads_before_topology()
NOW = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)

# the meters table as those revisions made it
OLD_METERS = Table(
    "meters", MetaData(),
    Column("id", String(64), primary_key=True), Column("kind", String(16)), Column("role", String(16)),
    Column("room_id", String(64)), Column("building_id", String(64)), Column("profile", String(64)),
    Column("link", String(64)), Column("unit_id", Integer), Column("circuit", Integer),
    Column("multiplier", ExactDecimal(12, 4)), Column("install_date", Date), Column("initial_reading", ExactDecimal()),
    Column("max_power_kw", ExactDecimal(12, 3)), Column("replaced_by", String(64)), Column("active", Boolean),
)


@pytest.fixture
async def old_db(db_url: str) -> AsyncIterator[Database]:
    database = Database(async_url(db_url))
    try:
        async with database.engine.begin() as conn:
            for revision in BEFORE:
                await conn.run_sync(_run_alembic, "upgrade", revision)
        yield database
    finally:
        await database.dispose()


async def test_upgrade_keeps_meters_and_accounts(old_db: Database) -> None:
    async with old_db.transaction() as s:
        s.add(Site(id="s", name="S", timezone="Asia/Shanghai"))
        await s.flush()
        s.add(Building(id="B", site_id="s", name="B"))
        await s.flush()
        s.add(Floor(id="F", building_id="B", name="F1", level=1))
        await s.flush()
        s.add(Room(id="R1", floor_id="F", name="R1", area_m2=Decimal("32.5")))
        await s.flush()
        await s.execute(insert(OLD_METERS), [
            {"id": "E1", "kind": "electricity", "role": "tenant", "room_id": "R1", "building_id": "B", "profile": "acrel-ddsy1352",
             "link": "gw", "unit_id": 1, "circuit": None, "multiplier": Decimal(1), "install_date": dt.date(2026, 1, 15),
             "initial_reading": Decimal(0), "max_power_kw": Decimal(10), "replaced_by": None, "active": True},
            {"id": "C1", "kind": "electricity", "role": "common", "room_id": None, "building_id": "B", "profile": "acrel-ddsy1352",
             "link": "gw", "unit_id": 2, "circuit": None, "multiplier": Decimal(40), "install_date": None,
             "initial_reading": Decimal(0), "max_power_kw": None, "replaced_by": None, "active": True},
        ])
        account = Account(
            room_id="R1", open_room_id="R1", state="open", opened_at=NOW, opened_by="t", thresholds=[], balance_minor=9300,
            remainder=Decimal("0.004"), credit_limit_minor=0, emergency_credit_minor=0, updated_at=NOW, contact_name="",
            language="en", protected=False, friendly_credit=True, auto_reconnect=True, alarm_level=0, supply_state="on",
            reconnect_pending=False,
        )
        s.add(account)
        await s.flush()
        s.add(LedgerEntry(account_id=account.id, ts=NOW, kind="deduction", amount_minor=-700, balance_after_minor=9300,
                          actor="system:prepaid", source="engine", reason="consumption", meter_id="E1", quantity=Decimal("11.666")))
        s.add(MeterState(meter_id="E1", account_id=account.id, segment=1, last_reading=Decimal("123.45"), last_ts=NOW,
                         hold_detail="", retired=False, updated_at=NOW))
    assert {"0100", "0300", "0400", "0601"} <= set(BEFORE) and any(h.startswith("02") for h in BEFORE)  # prepaid's head moves on
    # every one applied (a revision another depends on, 0300 under 0700, leaves the version table)
    script = ScriptDirectory.from_config(alembic_config())
    applied = {r.revision for r in script.iterate_revisions(list(await old_db.current_revisions()), "base")}
    assert set(BEFORE) <= applied and not {r for r in applied if r.startswith("09")}

    await old_db.upgrade()

    assert {"0901"} <= await old_db.current_revisions()
    registry = AssetRegistry(old_db)
    await registry.load()
    meters = registry.snapshot.meters
    assert set(meters) == {"E1", "C1"}
    assert all(m.polled and not m.manual and m.formula is None for m in meters.values())
    assert (meters["E1"].link, meters["E1"].unit_id, meters["E1"].max_power_kw) == ("gw", 1, Decimal(10))
    assert meters["C1"].multiplier == Decimal(40)
    assert registry.snapshot.parent_of("E1") is None and registry.snapshot.rooms["R1"].area_m2 == Decimal("32.5")
    async with old_db.sessions() as s:
        a = await s.scalar(select(Account))
        assert a is not None and (a.balance_minor, a.remainder, a.state) == (9300, Decimal("0.004"), "open")
        e = await s.scalar(select(LedgerEntry))
        assert e is not None and (e.kind, e.amount_minor, e.quantity) == ("deduction", -700, Decimal("11.666"))
        st = await s.get(MeterState, "E1")
        assert st is not None and st.last_reading == Decimal("123.45")
        for table in (MeterParent, ManualReading, ApportionmentRule):
            assert await s.scalar(select(func.count()).select_from(table)) == 0
    # and the upgraded schema takes the new rows
    await registry.set_parent("E1", "C1", Actor.system("test"))
    assert registry.snapshot.parent_of("E1") == "C1"
