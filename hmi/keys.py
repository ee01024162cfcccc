"""Typed keys of the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from scada.context import Context

from .ratelimit import LoginRateLimiter

__all__ = ["CONTEXT", "LOGIN_LIMITER"]

CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)
LOGIN_LIMITER: web.AppKey[LoginRateLimiter] = web.AppKey("login_limiter", LoginRateLimiter)
