"""Users administration (``/users``, admin only) and the caller's own settings (``/me``).

Disabling a user, resetting a password or "sign out everywhere" ends the user's web sessions,
revokes their API tokens and ends their OPC UA sessions at once. An administrator cannot lock the site out: the last
active administrator can be neither disabled nor demoted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scada.users.auth import AuthError, Permission, Role, UserInfo, UserStore
from scada.users.component import USERS

from ..i18n import LANGUAGES
from ..keys import CONTEXT, SESSIONS
from .router import ApiCall, ApiError, ApiRouter

__all__ = ["router"]

router = ApiRouter("users")

RoleName = Literal[tuple(r.value for r in Role)]  # type: ignore[valid-type]
Language = Literal[tuple(LANGUAGES)]  # type: ignore[valid-type]
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
EMAIL_PATTERN = r"^[^@\s<>\"']{1,64}@[^@\s<>\"']{1,190}$"


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=NAME_PATTERN, description="1-64 letters, digits, or _ . @ -")
    role: RoleName
    password: str = Field(min_length=8, max_length=1024)
    language: Language = "en"
    email: str | None = Field(default=None, max_length=255, pattern=EMAIL_PATTERN)
    reason: str = Field(default="", max_length=500)


class UserUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: RoleName | None = None
    active: bool | None = None
    language: Language | None = None
    email: str | None = Field(default=None, max_length=255, pattern=EMAIL_PATTERN)
    reason: str = Field(min_length=1, max_length=500, description="why (kept in the audit log)")


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    password: str = Field(min_length=8, max_length=1024)
    reason: str = Field(min_length=1, max_length=500)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(min_length=1, max_length=500)


class LanguageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    language: Language


def _user_json(u: UserInfo) -> dict[str, Any]:
    return {
        "name": u.name,
        "role": u.role.value,
        "active": u.active,
        "language": u.language,
        "email": u.email,
        "permissions": sorted(p.value for p in u.permissions),
    }


def _store(call: ApiCall[Any]) -> UserStore:
    return call.request.app[CONTEXT][USERS]


async def _existing(call: ApiCall[Any]) -> UserInfo:
    user = await _store(call).get(call.params["name"])
    if user is None:
        raise ApiError(404, f"unknown user {call.params['name']!r}", field="name")
    return user


async def _end_sessions(call: ApiCall[Any], name: str, reason: str) -> dict[str, int]:
    """End every way the user is signed in: web sessions, API tokens, OPC UA sessions."""
    web_sessions = await call.request.app[SESSIONS].revoke_user(name, call.actor, reason=reason)
    tokens = await _store(call).revoke_tokens(name, call.actor)
    others = await _store(call).end_live_sessions(name, reason)
    return {
        "sessions_ended": web_sessions + sum(others.values()), "web_sessions_ended": web_sessions,
        **{f"{channel}_sessions_ended": n for channel, n in others.items()}, "tokens_revoked": tokens,
    }


async def _other_active_admins(call: ApiCall[Any], name: str) -> int:
    return sum(1 for u in await _store(call).list() if u.role is Role.ADMIN and u.active and u.name != name)


@router.get("/users", permission=Permission.USER_MANAGE, summary="All users", audit=False)
async def list_users(call: ApiCall[Any]) -> dict[str, Any]:
    return {"users": [_user_json(u) for u in await _store(call).list()]}


@router.post("/users", body=UserIn, permission=Permission.USER_MANAGE, status=201, summary="Add a user")
async def add_user(call: ApiCall[UserIn]) -> dict[str, Any]:
    b = call.body
    store = _store(call)
    if await store.get(b.name) is not None:
        raise ApiError(409, f"user {b.name!r} exists", field="name")
    try:
        user = await store.add(
            b.name, b.role, b.password, call.actor, language=b.language, email=b.email, reason=b.reason
        )
    except AuthError as exc:
        raise ApiError(422, str(exc)) from None
    return _user_json(user)


@router.get("/users/{name}", permission=Permission.USER_MANAGE, summary="One user", audit=False)
async def get_user(call: ApiCall[Any]) -> dict[str, Any]:
    return _user_json(await _existing(call))


@router.put(
    "/users/{name}",
    body=UserUpdateIn,
    permission=Permission.USER_MANAGE,
    summary="Change a user's role, state, language or e-mail",
)
async def update_user(call: ApiCall[UserUpdateIn]) -> dict[str, Any]:
    b = call.body
    user = await _existing(call)
    loses_admin = (
        user.role is Role.ADMIN
        and user.active
        and ((b.role is not None and b.role != Role.ADMIN.value) or b.active is False)
    )
    if loses_admin and await _other_active_admins(call, user.name) == 0:
        raise ApiError(
            409,
            f"{user.name!r} is the last active administrator: add another one first",
            field="role" if b.role else "active",
        )
    if b.role is None and b.active is None and b.language is None and b.email is None:
        raise ApiError(422, "nothing to change: give role, active, language or email")
    updated = await _store(call).update(
        user.name, call.actor, role=b.role, active=b.active, language=b.language, email=b.email, reason=b.reason
    )
    out = _user_json(updated)
    if b.active is False and user.active:
        out |= await _end_sessions(call, user.name, f"disabled: {b.reason}")
    return out


@router.post(
    "/users/{name}/password",
    body=PasswordIn,
    permission=Permission.USER_MANAGE,
    summary="Set a user's password (ends their sessions)",
)
async def set_password(call: ApiCall[PasswordIn]) -> dict[str, Any]:
    user = await _existing(call)
    await _store(call).set_password(user.name, call.body.password, call.actor, reason=call.body.reason)
    return {"name": user.name} | await _end_sessions(call, user.name, f"password reset: {call.body.reason}")


@router.post(
    "/users/{name}/sign-out",
    body=ReasonIn,
    permission=Permission.USER_MANAGE,
    summary="End a user's web sessions and revoke their API tokens",
)
async def sign_out(call: ApiCall[ReasonIn]) -> dict[str, Any]:
    user = await _existing(call)
    return {"name": user.name} | await _end_sessions(call, user.name, call.body.reason)


@router.get("/me", summary="The caller: name, role, permissions, language", audit=False)
async def me(call: ApiCall[Any]) -> dict[str, Any]:
    return _user_json(call.user)


@router.put("/me/language", body=LanguageIn, summary="Set the caller's language")
async def set_my_language(call: ApiCall[LanguageIn]) -> dict[str, Any]:
    user = await _store(call).update(
        call.user.name, call.actor, language=call.body.language, reason="language preference"
    )
    return _user_json(user)
