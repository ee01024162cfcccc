"""A database written by the release before the back office upgrades in place: its accounts
and ledger are intact, and every account is a prepaid account with no dunning."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from alembic.script import ScriptDirectory
from sqlalchemy import text

from scada.db import Database, async_url
from scada.db.engine import _run_alembic, alembic_config
from scada.prepaid.reconcile import reconcile


def heads_before_billing() -> list[str]:
    """Every branch's head but the billing branch's (the schema of the release before it)."""
    script = ScriptDirectory.from_config(alembic_config())
    billing = {r.revision for r in script.walk_revisions() if r.revision.startswith("06")}
    out = set()
    for head in script.get_heads():
        rev = script.get_revision(head)
        while rev is not None and rev.revision in billing:
            rev = script.get_revision(rev.down_revision) if isinstance(rev.down_revision, str) else None
        if rev is not None and rev.revision != "0001":
            out.add(rev.revision)
    return sorted(out | {"0200"})


async def applied(db: Database) -> set[str]:
    """Every revision the database holds, including heads implied by a later branch's revision
    (0300 under opcua's 0700 is not kept in the version table once 0700 is applied)."""
    script = ScriptDirectory.from_config(alembic_config())
    return {r.revision for r in script.iterate_revisions(list(await db.current_revisions()), "base")}


async def test_upgrade_keeps_accounts_and_ledger_and_makes_them_prepaid(db_url: str) -> None:
    db = Database(async_url(db_url))
    try:
        before = heads_before_billing()
        assert {"0100", "0200", "0300", "0400"} <= set(before)
        for rev in before:
            async with db.engine.begin() as conn:
                await conn.run_sync(_run_alembic, "upgrade", rev)
        assert set(before) <= await applied(db)
        now = dt.datetime(2026, 11, 3, 2, 0)
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO sites (id, name, timezone) VALUES ('s', 'S', 'Asia/Shanghai')"))
            await conn.execute(text("INSERT INTO buildings (id, site_id, name) VALUES ('B', 's', 'B')"))
            await conn.execute(text("INSERT INTO floors (id, building_id, name, level) VALUES ('F', 'B', 'F', 1)"))
            await conn.execute(text("INSERT INTO rooms (id, floor_id, name, area_m2) VALUES ('R1', 'F', 'R1', '45.5')"))
            await conn.execute(text("INSERT INTO prepaid_tariffs (id, name, commodity, created_at, created_by) VALUES ('T', 'T', 'electricity', :t, 'x')"), {"t": now})
            await conn.execute(text(
                "INSERT INTO prepaid_accounts (id, room_id, open_room_id, state, opened_at, opened_by, electricity_tariff_id, contact_name, language,"
                " credit_limit_minor, thresholds, protected, friendly_credit, auto_reconnect, emergency_credit_minor, balance_minor, remainder,"
                " alarm_level, supply_state, reconnect_pending, updated_at)"
                " VALUES (1, 'R1', 'R1', 'open', :t, 'x', 'T', 'Han', 'zh-CN', 0, '[]', false, true, true, 0, 7500, '0', 1, 'on', false, :t)"), {"t": now})
            for i, (kind, amount, after) in enumerate((("opening", 10000, 10000), ("deduction", -2500, 7500)), start=1):
                await conn.execute(text(
                    "INSERT INTO prepaid_ledger (id, account_id, ts, kind, amount_minor, balance_after_minor, actor, source, reason, cost, meter_id, segment,"
                    " reading_from, reading_to)"
                    " VALUES (:id, 1, :t, :kind, :amount, :after, 'x', 'api', '', :cost, :meter, :seg, :rf, :rt)"),
                    {"id": i, "t": now, "kind": kind, "amount": amount, "after": after, "cost": "25" if kind == "deduction" else None,
                     "meter": "E1" if kind == "deduction" else None, "seg": 1 if kind == "deduction" else None,
                     "rf": "10" if kind == "deduction" else None, "rt": "60" if kind == "deduction" else None})
        await db.upgrade()
        assert "0601" in await db.current_revisions() and set(before) <= await applied(db)
        async with db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT balance_minor, alarm_level, contact_name, mode, dunning_level, dunning_cut FROM prepaid_accounts"))).one()
            ledger = (await conn.execute(text("SELECT id, kind, amount_minor, balance_after_minor FROM prepaid_ledger ORDER BY id"))).all()
            area = (await conn.execute(text("SELECT area_m2 FROM rooms"))).scalar()
            bills = (await conn.execute(text("SELECT count(*) FROM billing_bills"))).scalar()
        assert tuple(row) == (7500, 1, "Han", "prepaid", 0, False)
        assert [tuple(r) for r in ledger] == [(1, "opening", 10000, 10000), (2, "deduction", -2500, 7500)]
        assert Decimal(str(area)) == Decimal("45.5") and bills == 0
        report = await reconcile(db, 2)
        assert [str(m) for m in report.mismatches if "segment" not in str(m)] == []
    finally:
        await db.dispose()
