"""The aiohttp application: the pages, the WebSocket feed and the JSON API, on one port."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

import scada
from scada.alarms.component import ALARMS
from scada.config import CONFIG
from scada.core.context import Context
from scada.db.component import DATABASE
from scada.operations.component import JOBS
from scada.users.component import AUDIT, LOGINS
from scada.users.sessions import SessionStore

from . import vendor
from .api import accounts as accounts_api
from .api import alarms as alarms_api
from .api import apportionment as apportionment_api
from .api import approvals as approvals_api
from .api import auth as auth_api
from .api import billing as billing_api
from .api import history as history_api
from .api import jobs as jobs_api
from .api import links as links_api
from .api import payments as payments_api
from .api import reports as reports_api
from .api import rooms as rooms_api
from .api import supply as supply_api
from .api import tariffs as tariffs_api
from .api import tenant as tenant_api
from .api import topology as topology_api
from .api import trend as trend_api
from .api import users as users_api
from .api.router import (
    AUDIT_LOG,
    PREFIX,
    TENANT_RESOLVER,
    USER_RESOLVER,
    ApiRouter,
    json_response,
    openapi_document,
)
from .feed import FEED, Feed
from .i18n import Catalogs
from .keys import CONTEXT, LIVE, LOGIN_LIMITER, SESSIONS
from .live import LiveRooms
from .pages import PageSet
from .pages import accounts as account_pages
from .pages import alarms as alarm_pages
from .pages import approvals as approval_pages
from .pages import auth as auth_pages
from .pages import billing as billing_pages
from .pages import cashier as cashier_pages
from .pages import comms as comms_pages
from .pages import jobs as job_pages
from .pages import overview as overview_pages
from .pages import reports as report_pages
from .pages import room as room_pages
from .pages import sandbox as sandbox_pages
from .pages import tariffs as tariff_pages
from .pages import tenant as tenant_pages
from .pages import topology as topology_pages
from .pages import users as users_pages
from .render import CATALOGS, NAV, TEMPLATES, make_environment
from .security import session_middleware, session_or_bearer_user, tenant_caller

__all__ = ["API_ROUTERS", "OPENAPI", "PAGE_SETS", "create_app"]

log = logging.getLogger(__name__)

# every part's API router; a part adds its own here
API_ROUTERS: list[ApiRouter] = [
    auth_api.router, alarms_api.router, accounts_api.router, tariffs_api.router, history_api.router,
    rooms_api.router, trend_api.router, supply_api.router, links_api.router, users_api.router, approvals_api.router,
    billing_api.router, payments_api.router, tenant_api.router, reports_api.router, topology_api.router, apportionment_api.router,
    jobs_api.router,
]
# the pages; a set whose parts are not running is left out (and out of the navigation)
PAGE_SETS: list[PageSet] = [
    overview_pages.pages, room_pages.pages, cashier_pages.pages, account_pages.pages, alarm_pages.pages,
    comms_pages.pages, tariff_pages.pages, billing_pages.pages, users_pages.pages, approval_pages.pages, report_pages.pages,
    topology_pages.pages, job_pages.pages, job_pages.message_pages,
]

# the OpenAPI document, built on its first request: building it (every route's pydantic schemas)
# was a tenth of a second of each start, for a document few starts are ever asked for
OPENAPI: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("openapi")

# pages and scripts come only from this server: no inline script, no CDN, no framing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


@web.middleware
async def api_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Unknown API paths and wrong methods answer in JSON like every other API error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith(PREFIX) or exc.status < 400:
            raise
        message = {404: f"no such endpoint: {request.path}", 405: f"method {request.method} not allowed on {request.path}"}.get(
            exc.status, exc.reason
        )
        return json_response({"error": message}, status=exc.status)


@web.middleware
async def security_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _harden(exc)
        raise
    if not response.prepared:
        _harden(response)
    return response


async def _harden_prepared(_request: web.Request, response: web.StreamResponse) -> None:
    # streamed answers are prepared inside their handler, before the middleware sees them
    _harden(response)


def _harden(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI]())


async def favicon(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


def _static_dir() -> Path:
    return Path(str(resources.files("hmi").joinpath("static")))


def create_app(
    ctx: Context,
    *,
    live: LiveRooms,
    routers: list[ApiRouter] | None = None,
    page_sets: list[PageSet] | None = None,
) -> web.Application:
    """The application for a running server. ``live`` must be started (and run) by the caller."""
    config = ctx[CONFIG]
    app = web.Application(middlewares=[security_headers, api_errors, session_middleware], client_max_size=2 * 1024 * 1024)
    app.on_response_prepare.append(_harden_prepared)
    app[CONTEXT] = ctx
    app[AUDIT_LOG] = ctx[AUDIT]
    app[USER_RESOLVER] = session_or_bearer_user
    app[TENANT_RESOLVER] = tenant_caller
    app[LOGIN_LIMITER] = ctx[LOGINS]  # the one limiter of the HMI, the API and OPC UA
    app[SESSIONS] = SessionStore(
        ctx[DATABASE],
        idle=timedelta(minutes=config.hmi.session_idle_minutes),
        max_age=timedelta(hours=config.hmi.session_max_hours),
    )
    app[LIVE] = live
    app[CATALOGS] = Catalogs.load()
    app[TEMPLATES] = make_environment()
    app[NAV] = []
    feed = Feed(
        live, interval_s=config.hmi.push_interval_ms / 1000, alarms=ctx.get(ALARMS), jobs=ctx.get(JOBS),
        max_per_user=config.hmi.ws_max_per_user, max_total=config.hmi.ws_max_total,
        stall_timeout_s=config.hmi.ws_stall_timeout_s,
    )
    feed.start()
    app[FEED] = feed

    async def close_feed(_app: web.Application) -> None:
        await feed.close()

    app.on_shutdown.append(close_feed)

    routers = routers if routers is not None else API_ROUTERS
    for router in routers:
        router.install(app)
    app[OPENAPI] = functools.cache(functools.partial(openapi_document, routers, title="Prepaid-metering SCADA API", version=scada.__version__))
    app.router.add_get(PREFIX + "/openapi.json", openapi_json)
    auth_pages.install(app)
    sandbox_pages.install(app)
    tenant_pages.install(app)
    for page_set in page_sets if page_sets is not None else PAGE_SETS:
        page_set.install(app)
    app.router.add_get("/ws", feed.handle, name="feed")
    vendor.install(app)  # before /static/: uPlot from its pinned package
    app.router.add_static("/static/", _static_dir(), name="static", append_version=False)
    app.router.add_get("/favicon.ico", favicon)
    return app

