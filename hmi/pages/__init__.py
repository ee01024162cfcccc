"""Server-rendered pages. Each page module declares its routes with a :class:`PageSet`::

    pages = PageSet("cashier", requires=(ACCOUNTS,))

    @pages.get("/cashier", permission=Permission.RECHARGE, nav=("nav.cashier", 30))
    async def cashier(call: PageCall) -> web.StreamResponse:
        return render(call.request, "cashier.html", ...)

The wrapper enforces the session (anonymous visitors are sent to the login page), the role's
permission (403 page), and on POST the form's CSRF token; a refused write is audited. A page
set whose ``requires`` (context keys of other parts) are missing is not installed, so the
navigation only offers what this server runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from scada.core.context import Context, Key
from scada.users.audit import Actor
from scada.users.auth import Permission, UserInfo
from scada.users.component import AUDIT
from scada.users.sessions import SessionInfo

from ..i18n import Translator
from ..keys import CONTEXT, SESSION
from ..render import NAV, NavItem, render, translator
from ..security import CSRF_FIELD, csrf_matches

__all__ = ["PageCall", "PageSet", "error_page"]

log = logging.getLogger(__name__)


@dataclass
class PageCall:
    request: web.Request
    session: SessionInfo
    t: Translator
    form: MultiDictProxy[str | bytes | Any] | None

    @property
    def user(self) -> UserInfo:
        return self.session.user

    @property
    def ctx(self) -> Context:
        return self.request.app[CONTEXT]

    @property
    def actor(self) -> Actor:
        return self.session.user.actor("hmi")

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default) if self.form is not None else default
        return value if isinstance(value, str) else default


PageHandler = Callable[[PageCall], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Page:
    method: str
    path: str
    handler: PageHandler
    permission: Permission
    nav: tuple[str, int] | None
    nav_permission: Permission | frozenset[Permission] | None = None  # who sees it in the navigation (default: ``permission``; a set: any of them)


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    t = translator(request)
    title = t(f"error.{status}") if f"error.{status}" in t.fallback else t("error.title")
    return render(request, "error.html", status=status, title=title, message=message)


class PageSet:
    def __init__(self, name: str, *, requires: tuple[Key[Any], ...] = ()) -> None:
        self.name = name
        self.requires = requires
        self.pages: list[_Page] = []

    def get(
        self, path: str, *, permission: Permission, nav: tuple[str, int] | None = None,
        nav_permission: Permission | frozenset[Permission] | None = None,
    ) -> Callable[[PageHandler], PageHandler]:
        return self._add("GET", path, permission, nav, nav_permission)

    def post(self, path: str, *, permission: Permission) -> Callable[[PageHandler], PageHandler]:
        return self._add("POST", path, permission, None)

    def _add(
        self, method: str, path: str, permission: Permission, nav: tuple[str, int] | None,
        nav_permission: Permission | frozenset[Permission] | None = None,
    ) -> Callable[[PageHandler], PageHandler]:
        def decorate(handler: PageHandler) -> PageHandler:
            self.pages.append(_Page(method, path, handler, permission, nav, nav_permission))
            return handler

        return decorate

    def available(self, ctx: Context) -> bool:
        return all(key in ctx for key in self.requires)

    def install(self, app: web.Application) -> None:
        if not self.available(app[CONTEXT]):
            return
        for page in self.pages:
            app.router.add_route(page.method, page.path, _wrap(self.name, page), name=f"page.{self.name}.{page.handler.__name__}")
            if page.nav is not None:
                app[NAV].append(NavItem(page.path, page.nav[0], page.nav_permission or page.permission, page.nav[1]))
        app[NAV].sort(key=lambda n: n.order)


def _wrap(set_name: str, page: _Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        t = translator(request)
        if session is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
            return error_page(request, 401, t("error.signed_out"))
        user = session.user
        action = f"page.{set_name}.{page.handler.__name__}"
        if not user.can(page.permission):
            if request.method != "GET":
                await request.app[CONTEXT][AUDIT].write(
                    user.actor("hmi"),
                    action,
                    "page",
                    request.path,
                    outcome="denied",
                    reason=f"lacks {page.permission.value}",
                )
            return error_page(request, 403, t("error.forbidden", permission=t(f"permission.{page.permission.value}")))
        form = None
        if request.method == "POST":
            form = await request.post()
            presented = form.get(CSRF_FIELD)
            if not isinstance(presented, str) or not csrf_matches(session.csrf_token, presented):
                await request.app[CONTEXT][AUDIT].write(
                    user.actor("hmi"),
                    action,
                    "page",
                    request.path,
                    outcome="denied",
                    reason="missing or wrong CSRF token",
                )
                return error_page(request, 403, t("error.csrf"))
        return await page.handler(PageCall(request, session, t, form))

    handler.__name__ = page.handler.__name__
    return handler
