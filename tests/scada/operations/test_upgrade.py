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
        assert {"1002"} <= await db.current_revisions()
        async with db.sessions() as s:
            rows = (await s.execute(text("SELECT meter_id, kind, status, actor, reason, block, value, reference FROM commands"))).all()
            jobs = (await s.execute(text("SELECT count(*) FROM jobs"))).scalar()
        assert [tuple(r) for r in rows] == [("E-1", "disconnect", "confirmed", "olga", "moved out", None, None, None)]
        assert jobs == 0
    finally:
        await db.dispose()


def heads_before_customers() -> list[str]:
    """Every branch's head, with operations at 1001: the release before prepared accounts named
    the back office's customers."""
    from alembic.script import ScriptDirectory

    from scada.db.engine import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    later = {r.revision for r in script.walk_revisions() if r.revision.startswith("10") and r.revision > "1001"}
    out = set()
    for head in script.get_heads():
        rev = script.get_revision(head)
        while rev is not None and rev.revision in later:
            rev = script.get_revision(rev.down_revision) if isinstance(rev.down_revision, str) else None
        if rev is not None:
            out.add(rev.revision)
    return sorted(out)


async def test_upgrade_in_place_keeps_the_prepared_accounts(db_url: str) -> None:
    from scada.db import async_url

    db = Database(async_url(db_url))
    try:
        before = heads_before_customers()
        assert "1001" in before and "0601" in before
        for rev in before:
            async with db.engine.begin() as conn:
                await conn.run_sync(_run_alembic, "upgrade", rev)
        async with db.engine.begin() as conn:
            assert "customer_id" not in {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("prepared_accounts"))}
            await conn.execute(text("INSERT INTO sites (id, name, timezone) VALUES ('s', 'S', 'Asia/Shanghai')"))
            await conn.execute(text("INSERT INTO buildings (id, site_id, name) VALUES ('B', 's', 'B')"))
            await conn.execute(text("INSERT INTO floors (id, building_id, name, level) VALUES ('F', 'B', 'F', 1)"))
            await conn.execute(text("INSERT INTO rooms (id, floor_id, name, area_m2) VALUES ('R1', 'F', 'R1', '45.5')"))
            await conn.execute(text(
                "INSERT INTO prepared_accounts (room_id, pending_room_id, state, customer, contact_phone, language, mode, tariff_id,"
                " opening_minor, source, created_at, created_by) VALUES ('R1', 'R1', 'prepared', 'Li Lei', '+8613800000001', 'zh-CN',"
                " 'prepaid', 'FLAT', 10000, 'rooms.csv:2', '2026-05-01 10:00:00+00:00', 'olga')"
            ))
        await db.upgrade()
        assert "1002" in await db.current_revisions()
        async with db.sessions() as s:
            rows = (await s.execute(text("SELECT room_id, pending_room_id, state, customer, contact_phone, opening_minor, source, customer_id"
                                         " FROM prepared_accounts"))).all()
        assert [tuple(r) for r in rows] == [("R1", "R1", "prepared", "Li Lei", "+8613800000001", 10000, "rooms.csv:2", None)]
    finally:
        await db.dispose()
