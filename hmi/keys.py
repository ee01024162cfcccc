"""Typed keys of the aiohttp application and of its requests."""

from __future__ import annotations

from aiohttp import web

from scada.core.context import Context
from scada.tenants.service import Tenant
from scada.users.ratelimit import LoginRateLimiter
from scada.users.sessions import SessionInfo, SessionStore

from .live import LiveRooms

__all__ = ["CONTEXT", "LIVE", "LOGIN_LIMITER", "SESSION", "SESSIONS", "TENANT"]

CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)
LOGIN_LIMITER: web.AppKey[LoginRateLimiter] = web.AppKey("login_limiter", LoginRateLimiter)
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions", SessionStore)
# the request's live web session, resolved once by the session middleware (None: anonymous)
SESSION: web.RequestKey[SessionInfo | None] = web.RequestKey("session", object)  # type: ignore[arg-type]
LIVE: web.AppKey[LiveRooms] = web.AppKey("live_rooms", LiveRooms)
# the request's signed-in tenant (tenant portal pages and tenant routes only), once resolved
TENANT: web.RequestKey[Tenant | None] = web.RequestKey("tenant", object)  # type: ignore[arg-type]
