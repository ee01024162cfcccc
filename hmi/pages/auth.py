"""Login, logout and the language switch."""

from __future__ import annotations

import math

from aiohttp import web

from scada.users.component import USERS

from ..i18n import LANGUAGES
from ..keys import CONTEXT, LOGIN_LIMITER, SESSION, SESSIONS
from ..render import render, translator
from ..security import (
    CSRF_FIELD,
    LANG_COOKIE,
    SESSION_COOKIE,
    check_anonymous_csrf,
    clear_session_cookie,
    csrf_matches,
    set_cookie,
)
from . import error_page

__all__ = ["install", "safe_next"]


def safe_next(value: object, default: str = "/") -> str:
    """Only a local path may be a redirect target (no ``//host``, no scheme, no backslash)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 for c in value) or len(value) > 2000:
        return default
    return value


async def login_form(request: web.Request) -> web.StreamResponse:
    if request[SESSION] is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return render(request, "login.html", next=safe_next(request.query.get("next")), error=None, name="")


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    t = translator(request)
    name = form.get("user")
    password = form.get("password")
    next_path = safe_next(form.get("next"))
    # refusals of anonymous callers write nothing: failed logins are counted by the limiter and
    # reported in bulk (scada.users.logins)
    if not check_anonymous_csrf(request, form.get(CSRF_FIELD) if isinstance(form.get(CSRF_FIELD), str) else None):  # type: ignore[arg-type]
        return render(request, "login.html", status=403, next=next_path, error=t("login.csrf"), name="")
    if (
        not isinstance(name, str)
        or not isinstance(password, str)
        or not name
        or not password
        or len(name) > 64
        or len(password) > 1024
    ):
        return render(
            request,
            "login.html",
            status=400,
            next=next_path,
            error=t("login.missing"),
            name=name if isinstance(name, str) else "",
        )
    limiter = request.app[LOGIN_LIMITER]
    address = request.remote or "?"
    with limiter.attempt(address, name) as attempt:  # counted before the password is checked
        if attempt.refused:
            return render(
                request,
                "login.html",
                status=429,
                next=next_path,
                error=t("login.rate_limited", seconds=math.ceil(attempt.wait)),
                name=name,
            )
        user = await request.app[CONTEXT][USERS].authenticate(name, password)
        if user is None:
            return render(request, "login.html", status=401, next=next_path, error=t("login.failed"), name=name)
        attempt.succeeded()
    token, _session = await request.app[SESSIONS].create(
        user, address=address, user_agent=request.headers.get("User-Agent", "")
    )
    response = web.HTTPSeeOther(next_path)
    set_cookie(response, request, SESSION_COOKIE, token)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    response = web.HTTPSeeOther("/login")
    if session is not None:
        form = await request.post()
        presented = form.get(CSRF_FIELD)
        if not isinstance(presented, str) or not csrf_matches(session.csrf_token, presented):
            return error_page(request, 403, translator(request)("error.csrf"))
        await request.app[SESSIONS].revoke(session.id, session.user.actor("hmi"))
    clear_session_cookie(response, request)
    raise response


async def set_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = form.get("lang")
    presented = form.get(CSRF_FIELD)
    presented = presented if isinstance(presented, str) else None
    session = request[SESSION]
    t = translator(request)
    ok = (
        csrf_matches(session.csrf_token, presented) if session is not None else check_anonymous_csrf(request, presented)
    )
    if not ok:
        return error_page(request, 403, t("error.csrf"))
    if not isinstance(lang, str) or lang not in LANGUAGES:
        return error_page(request, 400, t("error.language", language=str(lang)[:20], choices=", ".join(LANGUAGES)))
    if session is not None and session.user.language != lang:
        # the preference follows the user to any browser; update() audits it
        await request.app[CONTEXT][USERS].update(
            session.user.name, session.user.actor("hmi"), language=lang, reason="language switch"
        )
    response = web.HTTPSeeOther(safe_next(form.get("next")))
    set_cookie(response, request, LANG_COOKIE, lang, max_age=365 * 24 * 3600)
    raise response


def install(app: web.Application) -> None:
    app.router.add_get("/login", login_form, name="page.auth.login_form")
    app.router.add_post("/login", login, name="page.auth.login")
    app.router.add_post("/logout", logout, name="page.auth.logout")
    app.router.add_post("/language", set_language, name="page.auth.language")
