"""Migrations from empty, on SQLite and PostgreSQL, give exactly the models' schema; a database of
the previous release upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import scada.models  # noqa: F401
from scada.alarms import store
from scada.alarms.alarm import AlarmState
from scada.db import Base, Database
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
