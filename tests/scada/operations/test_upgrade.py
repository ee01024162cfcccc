"""A database written by the release before operations (every branch at its head, without
revisions 1000-1001) upgrades in place at start: the commands table keeps its rows and gains
the parameter-write columns, and the operations tables appear empty."""

from __future__ import annotations

from sqlalchemy import inspect, text

from scada.db import Database
from scada.db.engine import _run_alembic

BEFORE = ("0100", "0200", "0300", "0400")  # the heads before operations


async def test_upgrade_in_place_keeps_the_commands(db_url: str) -> None:
    from scada.db import async_url

    db = Database(async_url(db_url))
    try:
        async with db.engine.begin() as conn:
            for head in BEFORE:
                await conn.run_sync(_run_alembic, "upgrade", head)
        async with db.engine.begin() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert "jobs" not in tables
            await conn.execute(text(
                "INSERT INTO commands (meter_id, kind, status, detail, attempts, actor, source, reason, requested_at, finished_at) "
                "VALUES ('E-1', 'disconnect', 'confirmed', 'relay open (confirmed by read-back)', 1, 'olga', 'api', 'moved out', "
                "'2026-05-01 10:00:00+00:00', '2026-05-01 10:00:01+00:00')"
            ))
        await db.upgrade()
        assert {"1001"} <= await db.current_revisions()
        async with db.sessions() as s:
            rows = (await s.execute(text("SELECT meter_id, kind, status, actor, reason, block, value, reference FROM commands"))).all()
            jobs = (await s.execute(text("SELECT count(*) FROM jobs"))).scalar()
        assert [tuple(r) for r in rows] == [("E-1", "disconnect", "confirmed", "olga", "moved out", None, None, None)]
        assert jobs == 0
    finally:
        await db.dispose()
