"""The aiohttp application: JSON API (and, later, the HMI pages and WebSocket feed)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

import scada
from scada.auth import UserInfo
from scada.context import Context
from scada.foundation import AUDIT, USERS

from .api import accounts as accounts_api
from .api import alarms as alarms_api
from .api import auth as auth_api
from .api import history as history_api
from .api import tariffs as tariffs_api
from .api.router import AUDIT_LOG, PREFIX, USER_RESOLVER, ApiRouter, json_response, openapi_document
from .keys import CONTEXT, LOGIN_LIMITER
from .ratelimit import LoginRateLimiter

__all__ = ["API_ROUTERS", "OPENAPI", "create_app"]

log = logging.getLogger(__name__)

# every part's API router; a part adds its own here
API_ROUTERS: list[ApiRouter] = [
    auth_api.router,
    alarms_api.router,
    accounts_api.router,
    tariffs_api.router,
    history_api.router,
]

OPENAPI: web.AppKey[dict[str, object]] = web.AppKey("openapi", dict)


async def bearer_user(request: web.Request) -> tuple[UserInfo, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    user = await request.app[CONTEXT][USERS].authenticate_token(header[7:].strip())
    return (user, "api") if user is not None else None


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


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def create_app(ctx: Context, *, routers: list[ApiRouter] | None = None) -> web.Application:
    app = web.Application(middlewares=[api_errors], client_max_size=2 * 1024 * 1024)
    app[CONTEXT] = ctx
    app[AUDIT_LOG] = ctx[AUDIT]
    app[USER_RESOLVER] = bearer_user
    app[LOGIN_LIMITER] = LoginRateLimiter()
    routers = routers if routers is not None else API_ROUTERS
    for router in routers:
        router.install(app)
    app[OPENAPI] = openapi_document(routers, title="Prepaid-metering SCADA API", version=scada.__version__)
    app.router.add_get(PREFIX + "/openapi.json", openapi_json)
    return app
