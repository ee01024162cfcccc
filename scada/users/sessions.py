"""Server-side web sessions of the HMI: a random cookie token, its CSRF token, idle and absolute
expiry, and immediate revocation.

Why server-side rather than signed cookies: a logout, a disabled user or an administrator's
"sign out everywhere" must end a session at once, which signed cookies can only do with a
server-side revocation list anyway, plus a signing key to generate, store and rotate. A row per
session gives revocation for free and keeps no secret on the server: like API tokens, only the
SHA-256 of the cookie token is stored, so a copy of the database does not let anyone in.

The CSRF token lives in the same row; pages embed it in every form and the pages' JavaScript
sends it in the ``X-CSRF-Token`` header of every state-changing request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Role, UserInfo
from scada.users.models import User, WebSession
from tags import utcnow

__all__ = ["SessionInfo", "SessionStore"]

# last_seen is refreshed at most this often: a page view must not always be a database write
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str  # the stored hash, never the cookie token
    user: UserInfo
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf_token.encode())  # type: ignore[union-attr]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database, *, idle: timedelta, max_age: timedelta) -> None:
        self.db = db
        self.idle = idle
        self.max_age = max_age

    async def create(self, user: UserInfo, *, address: str, user_agent: str) -> tuple[str, SessionInfo]:
        """A new session for ``user``: returns the cookie token (shown once) and the session."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        row = WebSession(
            id=_hash(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32), created_at=now,
            last_seen_at=now, expires_at=now + self.max_age, address=address[:64], user_agent=user_agent[:200],
        )
        async with self.db.transaction() as s:
            s.add(row)
            AuditLog.record(s, user.actor("hmi"), "session.login", "user", user.name, after={"address": address[:64]})
        return token, SessionInfo(row.id, user, row.csrf_token, now, now, row.expires_at)

    async def resolve(self, token: str) -> SessionInfo | None:
        """The live session of a cookie token, or None (unknown, expired, revoked, user disabled)."""
        if not token or len(token) > 128:
            return None
        sid = _hash(token)
        now = utcnow()
        async with self.db.lookup() as s:  # every page view: never waits for the write lock
            row = (await s.execute(select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.id == sid))).first()
        if row is None:
            return None
        sess, user = row
        if sess.revoked_at is not None or sess.expires_at <= now or sess.last_seen_at + self.idle <= now or not user.active:
            return None
        if now - sess.last_seen_at >= _TOUCH_EVERY:
            async with self.db.transaction() as s:
                await s.execute(update(WebSession).where(WebSession.id == sid).values(last_seen_at=now))
        info = UserInfo(user.id, user.name, Role(user.role), user.active, user.language, user.email)
        return SessionInfo(sess.id, info, sess.csrf_token, sess.created_at, now, sess.expires_at)

    async def revoke(self, session_id: str, actor: Actor, *, reason: str = "logout") -> bool:
        now = utcnow()
        async with self.db.transaction() as s:
            row = await s.get(WebSession, session_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = now
            user = await s.get(User, row.user_id)
            AuditLog.record(s, actor, "session.logout", "user", user.name if user else str(row.user_id), reason=reason)
            return True

    async def revoke_user(self, name: str, actor: Actor, *, reason: str) -> int:
        """End every live session of a user (disabled, password reset, sign out everywhere)."""
        now = utcnow()
        async with self.db.transaction() as s:
            user_id = await s.scalar(select(User.id).where(User.name == name))
            if user_id is None:
                return 0
            result = await s.execute(
                update(WebSession)
                .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None), WebSession.expires_at > now)
                .values(revoked_at=now)
            )
            count = int(result.rowcount or 0)  # type: ignore[attr-defined]
            AuditLog.record(s, actor, "session.revoke", "user", name, reason=reason, after={"revoked": count})
            return count

    async def active_count(self, user_id: int) -> int:
        now = utcnow()
        async with self.db.reads() as s:
            rows = await s.scalars(
                select(WebSession.id).where(
                    WebSession.user_id == user_id, WebSession.revoked_at.is_(None), WebSession.expires_at > now,
                    WebSession.last_seen_at > now - self.idle,
                )
            )
            return len(rows.all())

