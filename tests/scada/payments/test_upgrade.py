"""A database written by the release before online payment and the tenant portal upgrades in
place: its accounts, ledger and users are intact, and the new tables take orders."""

from __future__ import annotations

import datetime as dt

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from scada.db import Database, async_url
from scada.db.engine import _run_alembic, alembic_config


def heads_before_payments() -> list[str]:
    """Every branch's head but the payments branch's (revisions 1100–1199)."""
    script = ScriptDirectory.from_config(alembic_config())
    ours = {r.revision for r in script.walk_revisions() if r.revision.startswith("11")}
    out = set()
    for head in script.get_heads():
        rev = script.get_revision(head)
        while rev is not None and rev.revision in ours:
            rev = script.get_revision(rev.down_revision) if isinstance(rev.down_revision, str) else None
        if rev is not None and rev.revision != "0001":
            out.add(rev.revision)
    return sorted(out)


async def test_upgrade_keeps_accounts_ledger_and_users(db_url: str) -> None:
    db = Database(async_url(db_url))
    try:
        before = heads_before_payments()
        assert {"0200", "0400"} <= set(before) or "0601" in before
        for rev in before:
            async with db.engine.begin() as conn:
                await conn.run_sync(_run_alembic, "upgrade", rev)
        now = dt.datetime(2026, 11, 3, 2, 0)
        async with db.engine.begin() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert "payment_orders" not in tables and "prepaid_ledger" in tables
            await conn.execute(text("INSERT INTO users (name, role, password_hash, active, language, created_at, updated_at)"
                                    " VALUES ('cash1', 'cashier', 'x', true, 'en', :t, :t)"), {"t": now})
            await conn.execute(text("INSERT INTO sites (id, name, timezone) VALUES ('s', 'S', 'Asia/Shanghai')"))
            await conn.execute(text("INSERT INTO buildings (id, site_id, name) VALUES ('B', 's', 'B')"))
            await conn.execute(text("INSERT INTO floors (id, building_id, name, level) VALUES ('F', 'B', 'F', 1)"))
            await conn.execute(text("INSERT INTO rooms (id, floor_id, name) VALUES ('R1', 'F', 'R1')"))
            await conn.execute(text(
                "INSERT INTO prepaid_accounts (id, room_id, open_room_id, state, opened_at, opened_by, contact_name, contact_phone, language,"
                " credit_limit_minor, thresholds, protected, friendly_credit, auto_reconnect, emergency_credit_minor, balance_minor, remainder,"
                " alarm_level, supply_state, reconnect_pending, mode, dunning_level, dunning_cut, updated_at)"
                " VALUES (1, 'R1', 'R1', 'open', :t, 'x', 'Han', '+8613900000001', 'zh-CN', 0, '[]', false, true, true, 0, 7500, '0', 0,"
                " 'on', false, 'prepaid', 0, false, :t)"), {"t": now})
            await conn.execute(text(
                "INSERT INTO prepaid_ledger (id, account_id, ts, kind, amount_minor, balance_after_minor, actor, source, reason, channel,"
                " reference, idem_key) VALUES (1, 1, :t, 'recharge', 7500, 7500, 'cash1', 'api', '', 'cash', 'R-1', 'recharge:cash:R-1')"),
                {"t": now})
        await db.upgrade()
        heads = await db.current_revisions()
        assert any(h.startswith("11") for h in heads)
        async with db.engine.begin() as conn:
            account = (await conn.execute(text("SELECT balance_minor, contact_phone, language FROM prepaid_accounts"))).one()
            ledger = (await conn.execute(text("SELECT kind, amount_minor, idem_key FROM prepaid_ledger"))).all()
            users = (await conn.execute(text("SELECT name, role FROM users"))).all()
            assert tuple(account) == (7500, "+8613900000001", "zh-CN")
            assert [tuple(r) for r in ledger] == [("recharge", 7500, "recharge:cash:R-1")]
            assert [tuple(r) for r in users] == [("cash1", "cashier")]
            await conn.execute(text(
                "INSERT INTO payment_orders (provider, account_id, room_id, amount_minor, currency, state, created_at, created_by, expires_at,"
                " return_url, pay_url, late, detail, updated_at) VALUES ('sandbox', 1, 'R1', 5000, 'CNY', 'created', :t, 'cash1', :t, '', '',"
                " false, '', :t)"), {"t": now})
            assert (await conn.execute(text("SELECT count(*) FROM payment_orders"))).scalar() == 1
    finally:
        await db.dispose()
