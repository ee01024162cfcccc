"""Server-side rendering: the jinja2 environment, the request's language and the page context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from markupsafe import Markup

import scada
from scada.config import CONFIG
from scada.users.auth import Permission, UserInfo

from .i18n import LANGUAGES, Catalogs, Translator, negotiate
from .keys import CONTEXT, SESSION
from .security import LANG_COOKIE, anonymous_csrf_token, remember_anonymous_csrf

__all__ = ["CATALOGS", "NAV", "NavItem", "TEMPLATES", "language_of", "local_time", "make_environment", "render", "translator"]


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str  # message key
    permission: Permission | frozenset[Permission]  # a set: shown to a user with any of them
    order: int

    def shown_to(self, user: UserInfo) -> bool:
        if isinstance(self.permission, Permission):
            return user.can(self.permission)
        return any(user.can(p) for p in self.permission)


TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
CATALOGS: web.AppKey[Catalogs] = web.AppKey("catalogs", Catalogs)
NAV: web.AppKey[list[NavItem]] = web.AppKey("nav", list)


def _json_script(value: Any) -> Markup:
    """JSON safe to embed in ``<script type="application/json">`` (no ``</script>`` breakout)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def _local(value: datetime | str | None, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A timestamp (aware datetime or ISO string) in the site's time zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(tz).strftime(fmt)


local_time = _local  # for documents rendered outside a page (print templates)


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hmi", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    env.filters["json_script"] = _json_script
    return env


def language_of(request: web.Request) -> str:
    """The signed-in user's preference, else the language cookie, else the browser's, else the site default."""
    catalogs = request.app[CATALOGS]
    session = request.get(SESSION)
    if session is not None and session.user.language in catalogs.catalogs:
        return session.user.language
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in catalogs.catalogs:
        return cookie  # type: ignore[return-value]
    default = request.app[CONTEXT][CONFIG].hmi.default_language
    return negotiate(request.headers.get("Accept-Language", ""), catalogs.languages, default)


def translator(request: web.Request) -> Translator:
    return request.app[CATALOGS].translator(language_of(request))


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render a page with the layout's context: translator, user, CSRF token, navigation."""
    app = request.app
    ctx = app[CONTEXT]
    session = request.get(SESSION)
    t = translator(request)
    new_anon: str | None = None
    if session is not None:
        csrf = session.csrf_token
        user = session.user
        nav = [n for n in app[NAV] if n.shown_to(user)]
    else:
        csrf, fresh = anonymous_csrf_token(request)
        new_anon = csrf if fresh else None
        user = None
        nav = []
    config = ctx[CONFIG]
    html = app[TEMPLATES].get_template(template).render(
        t=t,
        lang=t.language,
        languages=LANGUAGES,
        user=user,
        csrf=csrf,
        nav=nav,
        path=request.path,
        full_path=request.path_qs,
        site_name=config.site.name,
        currency=config.site.currency,
        version=scada.__version__,
        client_messages=t.client_messages(),
        site_tz=config.site.timezone,
        local=partial(_local, tz=config.site.tz),
        Permission=Permission,
        **context,
    )
    response = web.Response(text=html, content_type="text/html", status=status, charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    if new_anon is not None:
        remember_anonymous_csrf(response, request, new_anon)
    return response
