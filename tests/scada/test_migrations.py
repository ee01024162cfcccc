"""Migrations from empty, on SQLite and PostgreSQL, give exactly the models' schema; a database of
the previous release upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import scada.models  # noqa: F401
from scada.alarms import store
from scada.alarms.alarm import AlarmState
from scada.db import Base, Database, engine
from scada.db.engine import alembic_config, async_url


async def test_upgrade_from_empty_matches_models(db: Database) -> None:
    def diff(conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert differences == []
    assert {"sites", "buildings", "floors", "rooms", "meters", "users", "api_tokens", "audit_log"} <= tables


async def test_upgrade_is_idempotent(db: Database) -> None:
    heads = await db.current_revisions()
    await db.upgrade()
    assert await db.current_revisions() == heads
    assert "0001" in heads or heads  # every branch at its head


async def test_an_up_to_date_database_starts_without_running_alembic(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading Alembic's environment and every migration script was most of a start (0.3 s):
    a database at the heads this release ships is left alone; one behind still upgrades (the
    tests of each migration below)."""
    await db.upgrade()  # this process's first upgrade (the fixture copied a migrated file) runs alembic
    at_heads = await db.current_revisions()

    def refuse(*_args: object) -> None:
        raise AssertionError("alembic ran on a database at every head")

    monkeypatch.setattr(engine, "_run_alembic", refuse)
    await db.upgrade()
    scripts = ScriptDirectory.from_config(alembic_config())
    head = max(at_heads)
    behind = scripts.get_revision(head).down_revision  # type: ignore[union-attr]
    assert isinstance(behind, str)
    async with db.engine.begin() as conn:  # one branch a step behind (as recorded): the upgrade must run
        await conn.execute(text("UPDATE alembic_version SET version_num = :behind WHERE version_num = :head"), {"behind": behind, "head": head})
    with pytest.raises(AssertionError, match="alembic ran"):
        await db.upgrade()


async def test_alarms_written_before_0700_upgrade_in_place(db_url: str) -> None:
    """A database at the heads before the OPC UA revision (0700), with an alarm in it, upgrades
    at start with nothing lost: the alarm reads back whole, unconfirmed, without a comment."""
    ours = {"0700"}
    heads = [h for h in ScriptDirectory.from_config(alembic_config()).get_heads() if h not in ours]
    db = Database(async_url(db_url))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: [command.upgrade(alembic_config(c), h) for h in heads])
        assert "0700" not in await db.current_revisions()
        t = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO alarms (key, alarm_class, object_type, object_id, meter_id, room_id, link, priority, state, "
                    "condition_active, message, detail, value, raised_at, last_active_at, cleared_at, acked_at, acked_by, "
                    "ack_reason, shelved_at, shelved_until, shelved_by, shelve_reason, closed_at, activations, updated_at, version) "
                    "VALUES ('comm_loss:meter:E-1', 'comm_loss', 'meter', 'E-1', 'E-1', 'R-1', 'gw-1', 2, 'active_ack', "
                    ":true, 'Communication lost: meter E-1', 'timeout', 'False', :t, :t, NULL, :t, 'olga', 'on it', "
                    "NULL, NULL, NULL, NULL, NULL, 1, :t, 3)"
                ),
                {"t": t, "true": True},
            )
        await db.upgrade()
        assert "0700" in await db.current_revisions()
        async with db.sessions() as session:
            [alarm] = await store.load_open(session)
        assert (alarm.key, alarm.state, alarm.acked_by, alarm.ack_reason, alarm.version) == (
            "comm_loss:meter:E-1", AlarmState.ACTIVE_ACK, "olga", "on it", 3,
        )
        assert alarm.raised_at == t and alarm.condition_active is True
        assert (alarm.confirmed_at, alarm.comment, alarm.shelve_one_shot) == (None, None, False)
    finally:
        await db.dispose()


async def test_a_database_of_the_previous_release_upgrades_in_place_with_its_data(db_url: str) -> None:
    """The schema at the heads before this release's revisions (every branch but ``approvals``),
    filled with users, a site, an account, its ledger and audit entries; then the upgrade at
    start: every row is still there, and the new tables work."""
    import datetime as dt

    from alembic import command
    from alembic.script import ScriptDirectory

    from scada.approvals.service import ApprovalService
    from scada.db import async_url
    from scada.db.engine import alembic_config
    from scada.prepaid.models import Account, LedgerEntry
    from scada.site.importer import apply_site, parse_toml
    from scada.users.audit import Actor
    from scada.users.auth import Role, UserInfo, UserStore

    script = ScriptDirectory.from_config(alembic_config())
    new = {r.revision for r in script.iterate_revisions("approvals@head", "0001") if r.revision != "0001"}
    previous = [h for h in script.get_heads() if h not in new]
    assert new == {"0500"} and previous

    db = Database(async_url(db_url))
    try:
        async with db.engine.begin() as conn:
            for head in previous:
                await conn.run_sync(lambda c, h=head: command.upgrade(alembic_config(c), h))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "approval_requests" not in tables and "prepaid_ledger" in tables

        actor = Actor("migration-test", "cli")
        await UserStore(db).add("cash1", Role.CASHIER, "cashier-password", actor)
        await apply_site(db, parse_toml(SITE, "<site>"), actor)
        now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        async with db.transaction() as s:
            a = Account(room_id="R1", open_room_id="R1", state="open", opened_at=now, opened_by="cash1", contact_name="Li Lei",
                        contact_phone="+8613800000000", language="zh-CN", credit_limit_minor=0, thresholds=[], balance_minor=1500,
                        remainder=0, updated_at=now)
            s.add(a)
            await s.flush()
            s.add(LedgerEntry(account_id=a.id, ts=now, kind="opening", amount_minor=1000, balance_after_minor=1000, actor="cash1", source="api"))
            s.add(LedgerEntry(account_id=a.id, ts=now, kind="recharge", amount_minor=500, balance_after_minor=1500, actor="cash1",
                              source="api", channel="cash", reference="R-1", idem_key="recharge:cash:R-1"))
        before = {name: await _rows(db, name) for name in KEPT}
        assert all(before.values()), before

        await db.upgrade()  # what the server does at start
        assert {name: await _rows(db, name) for name in KEPT} == before
        # every head applied (a head another branch depends on, 0300 under opcua's 0700, is implied
        # by it and not kept in the version table; a revision with depends_on takes its
        # dependency's place there), and nothing but heads kept
        current = await db.current_revisions()
        applied = {r.revision for r in script.iterate_revisions(list(current), "base")}
        assert set(script.get_heads()) <= applied and current <= set(script.get_heads())
        # the new table takes requests
        approvals = ApprovalService(db, expire_after=dt.timedelta(hours=1))

        async def run(view: object, approver: object) -> dict[str, str]:
            return {"done": "yes"}

        approvals.register("test.kind", run)
        request = await approvals.request("test.kind", "room:R1", {"amount": "5.00"}, actor)
        done = await approvals.approve(request.id, UserInfo(9, "super1", Role.SUPERVISOR, True, "en", None), source="api")
        assert done.state == "executed" and done.result == {"done": "yes"}
    finally:
        await db.dispose()


SITE = """
[site]
id = "m"
name = "Migrated"

[[buildings]]
id = "B"
name = "B"

[[floors]]
id = "F1"
building = "B"
level = 1
name = "F1"

[[rooms]]
id = "R1"
floor = "F1"
name = "R1"

[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
"""
KEPT = ("users", "sites", "rooms", "meters", "prepaid_accounts", "prepaid_ledger", "audit_log")


async def _rows(db: Database, table: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    async with db.sessions() as s:
        return [tuple(r) for r in (await s.execute(text(f"SELECT * FROM {table} ORDER BY 1"))).all()]


async def test_meter_address_upgrade_keeps_the_meters_written_before(db_url: str) -> None:
    """A database of the release before the meter address column (0800) upgrades in place."""
    from sqlalchemy import text

    from scada.db import async_url
    from scada.db.engine import _run_alembic

    database = Database(async_url(db_url))
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "upgrade", "heads")
            await conn.run_sync(_run_alembic, "downgrade", "0800-1")
        assert "0800" not in await database.current_revisions()
        async with database.engine.begin() as conn:
            await conn.execute(text("INSERT INTO sites (id, name, timezone) VALUES ('S', 'Site', 'UTC')"))
            await conn.execute(text("INSERT INTO buildings (id, site_id, name) VALUES ('B1', 'S', 'B')"))
            await conn.execute(text(
                "INSERT INTO meters (id, kind, role, building_id, profile, link, unit_id, multiplier, initial_reading, active) "
                "VALUES ('E-1', 'electricity', 'common', 'B1', 'acrel-ddsy1352', 'gw-1', 7, 40, 12.5, true)"
            ))
        await database.upgrade()
        assert "0800" in await database.current_revisions()
        async with database.engine.connect() as conn:
            row = (await conn.execute(text("SELECT id, unit_id, address, multiplier FROM meters"))).one()
        assert (row.id, row.unit_id, row.address, float(row.multiplier)) == ("E-1", 7, None, 40.0)
    finally:
        await database.dispose()


async def test_the_billing_cursors_and_balances_keep_room_for_hot_updates(db: Database) -> None:
    """Migration 0201: on PostgreSQL the two tables every billing batch updates row by row have
    a fill factor of 60 (SQLite has no such setting)."""
    if db.dialect != "postgresql":
        return
    async with db.engine.connect() as conn:
        options = dict((await conn.execute(text(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('prepaid_meter_state', 'prepaid_accounts')"
        ))).all())
    assert options == {"prepaid_meter_state": ["fillfactor=60"], "prepaid_accounts": ["fillfactor=60"]}
