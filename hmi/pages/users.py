"""Users administration (admin only): the forms call the ``/api/v1/users`` endpoints."""

from __future__ import annotations

from aiohttp import web

from scada.users.auth import Permission, Role
from scada.users.component import USERS

from ..i18n import LANGUAGES
from ..render import render
from . import PageCall, PageSet

__all__ = ["pages"]

pages = PageSet("users")


@pages.get("/users", permission=Permission.USER_MANAGE, nav=("nav.users", 90))
async def users(call: PageCall) -> web.StreamResponse:
    people = await call.ctx[USERS].list()
    return render(call.request, "users.html", users=people, roles=[r.value for r in Role], language_names=LANGUAGES)
