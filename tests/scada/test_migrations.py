"""Migrations from empty, on SQLite and PostgreSQL, give exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import scada.models  # noqa: F401
from scada.db import Base, Database


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
