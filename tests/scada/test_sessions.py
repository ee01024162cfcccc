"""Server-side web sessions on SQLite and PostgreSQL: expiry, revocation, disabled users."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.auth import UserStore
from scada.users.models import WebSession
from scada.users.sessions import SessionStore
from tags import utcnow

ACTOR = Actor("test", "cli")


async def _store(db: Database) -> tuple[SessionStore, UserStore]:
    users = UserStore(db)
    await users.add("op", "operator", "operator-password", ACTOR)
    return SessionStore(db, idle=timedelta(minutes=30), max_age=timedelta(hours=8)), users


async def test_create_resolve_and_logout(db: Database) -> None:
    store, users = await _store(db)
    user = await users.get("op")
    assert user is not None
    token, session = await store.create(user, address="127.0.0.1", user_agent="test")
    resolved = await store.resolve(token)
    assert resolved is not None and resolved.user.name == "op" and resolved.csrf_token == session.csrf_token
    assert resolved.csrf_ok(session.csrf_token) and not resolved.csrf_ok("") and not resolved.csrf_ok("x" * 43)
    # only the hash of the token is stored
    async with db.sessions() as s:
        ids = (await s.scalars(select(WebSession.id))).all()
    assert token not in ids and len(ids) == 1
    assert await store.revoke(session.id, user.actor("hmi"))
    assert await store.resolve(token) is None
    assert not await store.revoke(session.id, user.actor("hmi"))
    actions = [e.action for e in await AuditLog(db).query(target_id="op")]
    assert "session.login" in actions and "session.logout" in actions


async def test_unknown_and_malformed_tokens(db: Database) -> None:
    store, _ = await _store(db)
    assert await store.resolve("") is None
    assert await store.resolve("nope") is None
    assert await store.resolve("x" * 10_000) is None


async def test_idle_and_absolute_expiry(db: Database) -> None:
    store, users = await _store(db)
    user = await users.get("op")
    assert user is not None
    token, session = await store.create(user, address="127.0.0.1", user_agent="")
    async with db.transaction() as s:
        await s.execute(update(WebSession).where(WebSession.id == session.id).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    assert await store.resolve(token) is None  # idle too long
    token2, session2 = await store.create(user, address="127.0.0.1", user_agent="")
    async with db.transaction() as s:
        await s.execute(update(WebSession).where(WebSession.id == session2.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await store.resolve(token2) is None  # past its absolute end


async def test_use_refreshes_idle_time(db: Database) -> None:
    store, users = await _store(db)
    user = await users.get("op")
    assert user is not None
    token, session = await store.create(user, address="127.0.0.1", user_agent="")
    async with db.transaction() as s:
        await s.execute(update(WebSession).where(WebSession.id == session.id).values(last_seen_at=utcnow() - timedelta(minutes=29)))
    assert await store.resolve(token) is not None
    async with db.sessions() as s:
        seen = await s.scalar(select(WebSession.last_seen_at).where(WebSession.id == session.id))
    assert seen is not None and utcnow() - seen < timedelta(seconds=5)


async def test_disabled_user_and_revoke_user(db: Database) -> None:
    store, users = await _store(db)
    user = await users.get("op")
    assert user is not None
    t1, _ = await store.create(user, address="a", user_agent="")
    t2, _ = await store.create(user, address="b", user_agent="")
    assert await store.active_count(user.id) == 2
    await users.update("op", ACTOR, active=False)
    assert await store.resolve(t1) is None
    await users.update("op", ACTOR, active=True)
    assert await store.resolve(t1) is not None
    assert await store.revoke_user("op", ACTOR, reason="test") == 2
    assert await store.resolve(t1) is None and await store.resolve(t2) is None
    assert await store.revoke_user("nobody", ACTOR, reason="test") == 0


async def test_role_change_applies_to_live_session(db: Database) -> None:
    store, users = await _store(db)
    user = await users.get("op")
    assert user is not None
    token, _ = await store.create(user, address="a", user_agent="")
    await users.update("op", ACTOR, role="viewer")
    resolved = await store.resolve(token)
    assert resolved is not None and resolved.user.role.value == "viewer"
