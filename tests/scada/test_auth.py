"""Users, roles, passwords and tokens, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.auth import (
    AuthError,
    Permission,
    Role,
    UserStore,
    hash_password,
    verify_password,
)

ME = Actor("root", "cli")


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$32768$8$1$")
    assert verify_password("correct horse", a)
    assert not verify_password("wrong horse", a)
    assert not verify_password("x", "garbage")


async def test_add_authenticate_and_audit(db: Database) -> None:
    users = UserStore(db)
    u = await users.add("alice", "cashier", "s3cret-pass", ME)
    assert u.role is Role.CASHIER and u.can(Permission.RECHARGE) and not u.can(Permission.USER_MANAGE)
    assert (await users.authenticate("alice", "s3cret-pass")) == u
    assert await users.authenticate("alice", "nope") is None
    assert await users.authenticate("nobody", "s3cret-pass") is None
    entries = await AuditLog(db).query(target_type="user", target_id="alice")
    assert [e.action for e in entries] == ["user.add"] and entries[0].actor == "root"
    assert "s3cret" not in str(entries[0].after)


async def test_bad_user_input_is_refused(db: Database) -> None:
    users = UserStore(db)
    with pytest.raises(AuthError, match="unknown role 'boss'"):
        await users.add("bob", "boss", "long-enough", ME)
    with pytest.raises(AuthError, match="too short"):
        await users.add("bob", "viewer", "short", ME)
    with pytest.raises(AuthError, match="invalid user name"):
        await users.add("bob smith", "viewer", "long-enough", ME)
    await users.add("bob", "viewer", "long-enough", ME)
    with pytest.raises(AuthError, match="exists"):
        await users.add("bob", "viewer", "long-enough", ME)


async def test_disabled_user_cannot_log_in(db: Database) -> None:
    users = UserStore(db)
    await users.add("carol", "operator", "long-enough", ME)
    await users.update("carol", ME, active=False, reason="left")
    assert await users.authenticate("carol", "long-enough") is None


async def test_tokens_are_hashed_expire_and_revoke(db: Database) -> None:
    users = UserStore(db)
    u = await users.add("dave", "engineer", "long-enough", ME)
    token = await users.issue_token(u)
    assert (await users.authenticate_token(token)) == u
    assert await users.authenticate_token(token + "x") is None
    assert await users.authenticate_token("not-a-token") is None
    expired = await users.issue_token(u, ttl=timedelta(seconds=-1))
    assert await users.authenticate_token(expired) is None
    assert await users.revoke_tokens("dave", ME) == 2
    assert await users.authenticate_token(token) is None
    from sqlalchemy import select

    from scada.users.models import ApiToken

    async with db.sessions() as s:
        stored = (await s.scalars(select(ApiToken.token_hash))).all()
    assert token not in stored and len(stored[0]) == 64


async def test_ensure_admin_creates_then_resets(db: Database) -> None:
    users = UserStore(db)
    assert await users.ensure_admin("admin", "first-password", ME) is True
    assert await users.ensure_admin("admin", "second-password", ME) is False
    assert await users.authenticate("admin", "first-password") is None
    admin = await users.authenticate("admin", "second-password")
    assert admin is not None and admin.role is Role.ADMIN and admin.permissions == frozenset(Permission)
