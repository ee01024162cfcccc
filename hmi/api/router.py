"""Declarative JSON API routes: authentication, roles, validation, errors, audit and OpenAPI.

Every route under ``/api/v1`` is declared through an :class:`ApiRouter`::

    router = ApiRouter("accounts")

    @router.post("/rooms/{room}/account/recharge", body=RechargeIn, permission=Permission.RECHARGE,
                 summary="Recharge a room's account")
    async def recharge(call: ApiCall[RechargeIn]) -> dict:
        ...

The wrapper authenticates the caller (``Authorization: Bearer <token>``, or the HMI's session
when the HMI installs a session resolver), checks the permission, parses and validates the JSON
body with pydantic (a bad field is a 422 naming it), turns :class:`ApiError` into a JSON error
with the right status, and writes every call to the audit log (who, what, outcome). Handlers
return JSON-able data (Decimal is rendered as a string) or an ``aiohttp.web.StreamResponse``.
The OpenAPI document is generated from the same declarations.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from scada.core.configbase import key_path
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission, UserInfo

__all__ = [
    "API_QUERY",
    "ApiCall",
    "ApiError",
    "ApiRouter",
    "Route",
    "json_response",
    "to_json",
]

log = logging.getLogger(__name__)

B = TypeVar("B", bound=BaseModel)
PREFIX = "/api/v1"


class ApiError(Exception):
    """An error answered as ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return to_json(value.model_dump(mode="python"))
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_json(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "value") and hasattr(value, "name") and type(value).__module__ != "builtins":
        return to_json(value.value)  # enums
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(to_json(data), status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


@dataclass
class ApiCall(Generic[B]):
    """What a handler gets: the request, the authenticated user, the parsed body, path params."""

    request: web.Request
    user: UserInfo
    body: B
    params: dict[str, str]
    actor: Actor

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query.get(name, default)


Handler = Callable[[ApiCall[Any]], Awaitable[Any]]
# resolves the caller of a request (token, or the HMI's session); None means anonymous
UserResolver = Callable[[web.Request], Awaitable[tuple[UserInfo, str] | None]]

# a handler that authenticates the caller itself (the token endpoint) names the actor to audit
AUDIT_ACTOR: web.RequestKey[Actor] = web.RequestKey("api_audit_actor", Actor)
# the validated query parameters of a route declared with ``query=Model``
API_QUERY: web.RequestKey[BaseModel] = web.RequestKey("api_query", BaseModel)
USER_RESOLVER: web.AppKey[UserResolver] = web.AppKey("api_user_resolver", object)  # type: ignore[arg-type]
AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("api_audit", AuditLog)
# the parsed query of a route declared with ``query=Model`` (a string key warns in aiohttp 3.14)
API_QUERY: web.RequestKey[BaseModel] = web.RequestKey("api_query", BaseModel)


@dataclass
class Route:
    method: str
    path: str  # below /api/v1
    handler: Handler
    summary: str
    permission: Permission | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    tag: str
    status: int = 200
    responses: dict[int, str] = field(default_factory=dict)
    audit: bool = True


class ApiRouter:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        permission: Permission | None = Permission.VIEW,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        status: int = 200,
        audit: bool = True,
        responses: dict[int, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """``permission=None`` makes the route public (only the token endpoint is);
        ``responses`` documents other successful answers (e.g. ``202``) in the OpenAPI document."""

        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, summary, permission, body, query, self.tag, status,
                                     responses=dict(responses or {}), audit=audit))
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def install(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, PREFIX + r.path, _wrap(r), name=f"{r.tag}.{r.handler.__name__}")


def validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    name = key_path(loc) if loc else None
    msg = err["msg"]
    if err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error", msg))
    elif err["type"] == "missing":
        msg = "missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    message = f"{name}: {msg}" if name else msg
    return ApiError(422, message, field=name)


async def _parse_body(request: web.Request, model: type[B]) -> B:
    if request.content_type != "application/json":
        raise ApiError(415, f"expected a JSON body (Content-Type: application/json), got {request.content_type or 'none'}")
    raw = await request.read()
    if len(raw) > 1_000_000:
        raise ApiError(413, "body too large")
    try:
        data = json.loads(raw or b"null", parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class _NoBody(BaseModel):
    pass


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        audit = request.app[AUDIT_LOG]
        user: UserInfo | None = None
        source = "api"
        target = request.path
        outcome = "ok"
        reason = ""
        try:
            resolved = await request.app[USER_RESOLVER](request)
            if resolved is not None:
                user, source = resolved
            if route.permission is not None:
                if user is None:
                    raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>'")
                if not user.can(route.permission):
                    raise ApiError(403, f"role {user.role.value} may not {route.permission.value}")
            if route.body is not None:
                body: Any = await _parse_body(request, route.body)
            else:
                body = _NoBody()
            if route.query is not None:
                try:
                    query = route.query.model_validate(dict(request.query))
                except ValidationError as exc:
                    raise validation_error(exc) from None
                request[API_QUERY] = query
            actor = user.actor(source) if user else Actor("anonymous", "api")  # type: ignore[arg-type]
            call = ApiCall(request, user, body, dict(request.match_info), actor)  # type: ignore[arg-type]
            result = await route.handler(call)
            if isinstance(result, web.StreamResponse):
                return result
            return json_response(result, status=route.status)
        except ApiError as exc:
            outcome = "denied" if exc.status in (401, 403) else "rejected"
            reason = exc.message
            return json_response(exc.body(), status=exc.status)
        except Exception:
            outcome = "failed"
            reason = "internal error"
            log.exception("API handler failed", extra={"route": f"{route.method} {route.path}", "user": user.name if user else None})
            return json_response({"error": "internal error"}, status=500)
        finally:
            if route.audit:
                actor = request.get(AUDIT_ACTOR) or (user.actor(source) if user else Actor("anonymous", "api"))  # type: ignore[arg-type]
                try:
                    await audit.write(
                        actor, f"api.{route.tag}.{route.handler.__name__}", "api", target,
                        reason=reason, outcome=outcome, after={"method": request.method},
                    )
                except Exception:
                    log.exception("audit write failed", extra={"route": route.path})

    handler.__name__ = route.handler.__name__
    return handler


# -- OpenAPI ---------------------------------------------------------------------------------
_PARAM = re.compile(r"{(\w+)}")


def openapi_document(routers: list[ApiRouter], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for router in routers:
        for r in router.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "tags": [r.tag],
                "operationId": f"{r.tag}_{r.handler.__name__}",
                "responses": {
                    str(r.status): {"description": "success"},
                    **{str(code): {"description": text} for code, text in r.responses.items()},
                    "4XX": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _PARAM.findall(r.path)]
            if r.query is not None:
                for name, f in r.query.model_fields.items():
                    params.append({"name": name, "in": "query", "required": f.is_required(), "schema": {"type": "string"}, "description": f.description or ""})
            if params:
                op["parameters"] = params
            if r.permission is not None:
                op["security"] = [{"bearer": []}]
                op["description"] = f"Requires the permission `{r.permission.value}`."
            if r.body is not None:
                schema = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas[name] = sub
                schemas[r.body.__name__] = schema
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}},
                }
            paths.setdefault(PREFIX + r.path, {})[r.method.lower()] = op
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
