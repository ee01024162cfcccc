"""Users, roles, permissions, password hashing and API tokens.

Passwords are hashed with scrypt (memory-hard, in the standard library) in a worker thread so a
login never stalls the event loop. API tokens are random 256-bit strings shown once; only their
SHA-256 is stored (a token has full entropy, so a fast hash is the right tool there).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.models import ApiToken, User
from tags import utcnow

__all__ = [
    "CONTACT_DETAILS",
    "AuthError",
    "Permission",
    "ROLE_PERMISSIONS",
    "Role",
    "UserInfo",
    "UserStore",
    "hash_password",
    "verify_password",
]


class Role(str, enum.Enum):
    ADMIN = "admin"
    OPERATOR = "operator"
    CASHIER = "cashier"
    SUPERVISOR = "supervisor"  # the second pair of eyes: approves what a cashier alone may not do
    ENGINEER = "engineer"
    MAINTENANCE = "maintenance"
    VIEWER = "viewer"


class Permission(str, enum.Enum):
    VIEW = "view"  # pages, live values, rooms, meters
    RELAY_CONTROL = "relay_control"  # trip/close, valve open/close
    ACCOUNT_MANAGE = "account_manage"  # open/close accounts, assign tariffs
    RECHARGE = "recharge"
    REFUND = "refund"  # refunds and reversals
    TARIFF_MANAGE = "tariff_manage"
    HISTORY_EXPORT = "history_export"
    ALARM_ACK = "alarm_ack"
    ALARM_SHELVE = "alarm_shelve"
    METER_SERVICE = "meter_service"  # out of service, replacement, register review
    SITE_MANAGE = "site_manage"  # import site, edit registry
    USER_MANAGE = "user_manage"
    APPROVE = "approve"  # approve or reject another user's request (four-eyes rule)


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({P.VIEW, P.RELAY_CONTROL, P.ALARM_ACK, P.HISTORY_EXPORT}),
    Role.CASHIER: frozenset({P.VIEW, P.RECHARGE, P.REFUND, P.ACCOUNT_MANAGE}),
    Role.SUPERVISOR: frozenset({P.VIEW, P.RECHARGE, P.REFUND, P.ACCOUNT_MANAGE, P.HISTORY_EXPORT, P.APPROVE}),
    Role.ENGINEER: frozenset(
        {P.VIEW, P.TARIFF_MANAGE, P.HISTORY_EXPORT, P.SITE_MANAGE, P.METER_SERVICE, P.RELAY_CONTROL}
    ),
    Role.MAINTENANCE: frozenset({P.VIEW, P.ALARM_ACK, P.ALARM_SHELVE, P.METER_SERVICE, P.HISTORY_EXPORT}),
    Role.VIEWER: frozenset({P.VIEW}),
}

# who may see tenants' contact details (name, phone, e-mail): the roles that manage accounts
CONTACT_DETAILS = Permission.ACCOUNT_MANAGE

_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}", re.ASCII)

# scrypt: N=2**15, r=8 → 32 MiB per hash, ~0.1 s on this class of machine
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class AuthError(Exception):
    pass


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    if not password:
        raise AuthError("empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        got = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), maxmem=256 * 1024 * 1024, dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    # verifying an unknown user's password against this keeps both answers equally slow
    return hash_password(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    name: str
    role: Role
    active: bool
    language: str
    email: str | None

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return self.active and permission in ROLE_PERMISSIONS[self.role]

    @property
    def sees_contacts(self) -> bool:
        """Whether tenants' contact details (name, phone, e-mail) are shown to this user: to
        those who manage accounts (cashier, supervisor, admin), not to anyone else."""
        return self.can(CONTACT_DETAILS)

    def actor(self, source: str) -> Actor:
        return Actor(self.name, source, self.role.value)  # type: ignore[arg-type]


def _info(user: User) -> UserInfo:
    return UserInfo(user.id, user.name, Role(user.role), user.active, user.language, user.email)


log = logging.getLogger(__name__)

# ends a user's live sessions on one channel (OPC UA …): (user name, reason) -> how many
SessionCloser = Callable[[str, str], Awaitable[int]]


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._closers: dict[str, SessionCloser] = {}

    # -- live sessions on other channels --------------------------------------------------------------
    def add_session_closer(self, channel: str, closer: SessionCloser) -> Callable[[], None]:
        """A channel whose live sessions :meth:`end_live_sessions` ends (a component that serves
        users registers itself at its start); returns the unregister callable."""
        self._closers[channel] = closer

        def remove() -> None:
            if self._closers.get(channel) is closer:
                del self._closers[channel]

        return remove

    async def end_live_sessions(self, name: str, reason: str) -> dict[str, int]:
        """End the user's sessions on every registered channel at once (disabled, password reset,
        signed out everywhere); returns how many per channel."""
        ended: dict[str, int] = {}
        for channel, closer in list(self._closers.items()):
            try:
                ended[channel] = await closer(name, reason)
            except Exception:
                log.exception("could not end a user's sessions", extra={"user": name, "channel": channel})
                ended[channel] = 0
        return ended

    @staticmethod
    def validate_name(name: str) -> None:
        if not _NAME.fullmatch(name):
            raise AuthError(f"invalid user name {name!r}: 1-64 letters, digits, or _ . @ -")

    async def add(
        self,
        name: str,
        role: Role | str,
        password: str,
        actor: Actor,
        *,
        language: str = "en",
        email: str | None = None,
        reason: str = "",
    ) -> UserInfo:
        self.validate_name(name)
        try:
            role = Role(role)
        except ValueError:
            raise AuthError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
        if len(password) < 8:
            raise AuthError("password too short: at least 8 characters")
        hashed = await asyncio.to_thread(hash_password, password)
        now = utcnow()
        async with self.db.transaction() as s:
            if await s.scalar(select(User.id).where(User.name == name)) is not None:
                raise AuthError(f"user {name!r} exists")
            user = User(
                name=name, role=role.value, password_hash=hashed, active=True,
                language=language, email=email, created_at=now, updated_at=now,
            )
            s.add(user)
            await s.flush()
            AuditLog.record(s, actor, "user.add", "user", name, reason=reason, after={"role": role.value})
            return _info(user)

    async def set_password(self, name: str, password: str, actor: Actor, reason: str = "") -> None:
        if len(password) < 8:
            raise AuthError("password too short: at least 8 characters")
        hashed = await asyncio.to_thread(hash_password, password)
        async with self.db.transaction() as s:
            user = await s.scalar(select(User).where(User.name == name))
            if user is None:
                raise AuthError(f"no user {name!r}")
            user.password_hash = hashed
            user.updated_at = utcnow()
            AuditLog.record(s, actor, "user.password", "user", name, reason=reason)

    async def update(
        self, name: str, actor: Actor, *, role: Role | str | None = None, active: bool | None = None,
        language: str | None = None, email: str | None = None, reason: str = "",
    ) -> UserInfo:
        async with self.db.transaction() as s:
            user = await s.scalar(select(User).where(User.name == name))
            if user is None:
                raise AuthError(f"no user {name!r}")
            before = {"role": user.role, "active": user.active, "language": user.language, "email": user.email}
            if role is not None:
                user.role = Role(role).value
            if active is not None:
                user.active = active
            if language is not None:
                user.language = language
            if email is not None:
                user.email = email
            user.updated_at = utcnow()
            after = {"role": user.role, "active": user.active, "language": user.language, "email": user.email}
            AuditLog.record(s, actor, "user.update", "user", name, reason=reason, before=before, after=after)
            return _info(user)

    async def get(self, name: str) -> UserInfo | None:
        async with self.db.reads() as s:
            user = await s.scalar(select(User).where(User.name == name))
            return _info(user) if user else None

    async def list(self) -> list[UserInfo]:
        async with self.db.reads() as s:
            return [_info(u) for u in (await s.scalars(select(User).order_by(User.name))).all()]

    async def authenticate(self, name: str, password: str) -> UserInfo | None:
        """The user when name and password match and the user is active, else None."""
        if not _NAME.fullmatch(name) or not password or len(password) > 1024:
            return None  # no such user can exist: refused before any database work
        async with self.db.reads() as s:
            user = await s.scalar(select(User).where(User.name == name))
        stored = user.password_hash if user is not None else await asyncio.to_thread(_dummy_hash)
        ok = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not ok or not user.active:
            return None
        return _info(user)

    async def issue_token(
        self, user: UserInfo, name: str = "api", ttl: timedelta | None = timedelta(hours=12), *, actor: Actor | None = None,
    ) -> str:
        """A new API token of ``user`` (shown once; only its hash is kept), audited under ``actor``
        (default: the user, through the API)."""
        token = "sct_" + secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.transaction() as s:
            s.add(
                ApiToken(
                    user_id=user.id, name=name, token_hash=_token_hash(token), created_at=now,
                    expires_at=(now + ttl) if ttl else None,
                )
            )
            AuditLog.record(s, actor or user.actor("api"), "token.issue", "user", user.name, after={"name": name})
        return token

    async def authenticate_token(self, token: str) -> UserInfo | None:
        if not token.startswith("sct_") or len(token) > 100:
            return None
        now = utcnow()
        async with self.db.lookup() as s:
            row = (
                await s.execute(
                    select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(
                        ApiToken.token_hash == _token_hash(token)
                    )
                )
            ).first()
        if row is None:
            return None
        tok, user = row
        if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= now) or not user.active:
            return None
        return _info(user)

    async def revoke_tokens(self, name: str, actor: Actor) -> int:
        now = utcnow()
        async with self.db.transaction() as s:
            user = await s.scalar(select(User).where(User.name == name))
            if user is None:
                raise AuthError(f"no user {name!r}")
            tokens = (await s.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))).all()
            for t in tokens:
                t.revoked_at = now
            AuditLog.record(s, actor, "token.revoke", "user", name, after={"revoked": len(tokens)})
            return len(tokens)

    async def ensure_admin(self, name: str, password: str, actor: Actor) -> bool:
        """Create the admin or reset its password. Returns True when it was created."""
        existing = await self.get(name)
        if existing is None:
            await self.add(name, Role.ADMIN, password, actor, reason="bootstrap administrator")
            return True
        await self.set_password(name, password, actor, reason="bootstrap administrator password")
        if existing.role is not Role.ADMIN or not existing.active:
            await self.update(name, actor, role=Role.ADMIN, active=True, reason="bootstrap administrator")
        return False

    @staticmethod
    def expires(ttl_s: float) -> datetime:
        return utcnow() + timedelta(seconds=ttl_s)
