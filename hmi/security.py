"""Cookies, sessions and CSRF protection of the web pages, and the session-based API caller.

- The session cookie carries a random token (HttpOnly, SameSite=Strict, Secure over HTTPS);
  the server keeps the session (:mod:`scada.users.sessions`).
- Forms of a logged-in user carry the session's CSRF token; the pages' scripts send it in the
  ``X-CSRF-Token`` header. Anonymous forms (login, language on the login page) use a
  double-submit token: a random cookie whose value must come back in the form.
- API clients keep using bearer tokens; a request with an ``Authorization`` header is never
  resolved through the cookie.
- Tenants (the tenant portal, ``/tenant/``) have a session of their own kind in a cookie of its
  own (``scada_tenant``), resolved only by the portal's pages and by the API routes declared
  ``tenant=True``: no operator page, feed or API route ever looks at it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from scada.config import CONFIG
from scada.tenants.component import TENANTS
from scada.tenants.service import Tenant
from scada.users.auth import UserInfo
from scada.users.component import USERS

from .api.router import AUDIT_ACTOR, ApiError
from .keys import CONTEXT, SESSION, SESSIONS, TENANT

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "anonymous_csrf_token",
    "check_anonymous_csrf",
    "clear_session_cookie",
    "csrf_matches",
    "remember_anonymous_csrf",
    "session_middleware",
    "session_or_bearer_user",
    "set_cookie",
    "TENANT_COOKIE",
    "tenant_of",
    "tenant_caller",
    "clear_tenant_cookie",
]

SESSION_COOKIE = "scada_session"
TENANT_COOKIE = "scada_tenant"
ANON_CSRF_COOKIE = "scada_csrf"
LANG_COOKIE = "scada_lang"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# resolved without a session lookup: they never depend on who asks
_PUBLIC_PREFIXES = ("/static/", "/favicon.ico")


def _secure(request: web.Request) -> bool:
    mode = request.app[CONTEXT][CONFIG].hmi.secure_cookies
    return mode == "always" or (mode == "auto" and request.secure)


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, *, max_age: int | None = None, http_only: bool = True) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=http_only, samesite="Strict", secure=_secure(request)
    )


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", samesite="Strict", secure=_secure(request), httponly=True)


@web.middleware
async def session_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Resolve the session cookie once per request into ``request[SESSION]``."""
    request[SESSION] = None
    token = request.cookies.get(SESSION_COOKIE)
    if token and "Authorization" not in request.headers and not request.path.startswith(_PUBLIC_PREFIXES):
        request[SESSION] = await request.app[SESSIONS].resolve(token)
    return await handler(request)


def csrf_matches(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())


async def session_or_bearer_user(request: web.Request) -> tuple[UserInfo, str] | None:
    """``USER_RESOLVER`` of the API: a bearer token, else the page's session (CSRF-checked)."""
    header = request.headers.get("Authorization")
    if header is not None:
        if not header.startswith("Bearer "):
            return None
        user = await request.app[CONTEXT][USERS].authenticate_token(header[7:].strip())
        return (user, "api") if user is not None else None
    session = request.get(SESSION)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        request[AUDIT_ACTOR] = session.user.actor("hmi")  # the refusal is audited under the session's user
        raise ApiError(403, f"missing or wrong CSRF token: send the session's token in the {CSRF_HEADER} header")
    return session.user, "hmi"


def anonymous_csrf_token(request: web.Request) -> tuple[str, bool]:
    """The double-submit token of an anonymous form; True when the cookie must be (re)set."""
    current = request.cookies.get(ANON_CSRF_COOKIE, "")
    if 20 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(24), True


def remember_anonymous_csrf(response: web.StreamResponse, request: web.Request, token: str) -> None:
    set_cookie(response, request, ANON_CSRF_COOKIE, token)


def check_anonymous_csrf(request: web.Request, presented: str | None) -> bool:
    cookie = request.cookies.get(ANON_CSRF_COOKIE)
    return bool(cookie) and csrf_matches(cookie or "", presented)


async def tenant_of(request: web.Request) -> Tenant | None:
    """The signed-in tenant of the tenant cookie (resolved once per request), or None."""
    if TENANT in request:
        return request[TENANT]
    tenant = None
    token = request.cookies.get(TENANT_COOKIE)
    service = request.app[CONTEXT].get(TENANTS)
    if token and service is not None and "Authorization" not in request.headers:
        tenant = await service.resolve(token)
    request[TENANT] = tenant
    return tenant


async def tenant_caller(request: web.Request) -> Tenant | None:
    """``TENANT_RESOLVER`` of the API (routes declared ``tenant=True`` only): the tenant's
    session, with its CSRF token checked on every request that changes something."""
    tenant = await tenant_of(request)
    if tenant is not None and request.method not in SAFE_METHODS and not tenant.csrf_ok(request.headers.get(CSRF_HEADER)):
        request[AUDIT_ACTOR] = tenant.actor
        raise ApiError(403, f"missing or wrong CSRF token: send the session's token in the {CSRF_HEADER} header")
    return tenant


def clear_tenant_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(TENANT_COOKIE, path="/", samesite="Strict", secure=_secure(request), httponly=True)
