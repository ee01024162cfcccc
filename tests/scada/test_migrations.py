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
