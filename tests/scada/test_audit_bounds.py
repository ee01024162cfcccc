"""Audit rows keep a bounded size and hold no control characters, whatever a caller passes: an
8 KB path, a reason with NUL (which PostgreSQL's text refuses), a megabyte snapshot."""

from __future__ import annotations

from decimal import Decimal

from scada.db import Database
from scada.users.audit import LIMITS, MAX_REASON, MAX_SNAPSHOT, Actor, AuditLog


async def test_rows_are_cut_to_their_columns_and_cleaned(db: Database) -> None:
    audit = AuditLog(db)
    await audit.write(
        Actor("x" * 500 + "\x00", "api"), "api.accounts.recharge" + "y" * 200, "api" * 50,
        "/api/v1/rooms/" + "R" * 8000 + "\x00/account", reason="bad\x00reason " * 1000, outcome="rejected",
        after={"method": "POST", "note\x00": "a\x00b", "amount": Decimal("1E+2000000")},
    )
    await audit.write(Actor("big", "api"), "test.big", "api", "t", after={"blob": "z" * 1_000_000})
    [big, row] = await audit.query(limit=2)
    assert len(row.actor) <= LIMITS["actor"] and len(row.action) <= LIMITS["action"]
    assert len(row.target_type) <= LIMITS["target_type"] and len(row.target_id) <= LIMITS["target_id"]
    assert len(row.reason) <= MAX_REASON
    for text in (row.actor, row.target_id, row.reason, *row.after, *map(str, row.after.values())):
        assert "\x00" not in text
    assert row.after["amount"] == "1E+2000000"  # never expanded into two million digits
    assert big.after["truncated"] is True and big.after["size"] > MAX_SNAPSHOT and len(big.after["prefix"]) <= 500
