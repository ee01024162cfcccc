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
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from scada.core.configbase import key_path
from scada.core.inputs import InputError, JsonInputError, has_control, parse_id, parse_json, quote
from scada.core.limits import AnswerTooLarge
from scada.core.runtime import database_locked
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission, Role, UserInfo

__all__ = [
    "API_QUERY",
    "NOBODY",
    "TENANT_RESOLVER",
    "TenantCaller",
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
        exponent = value.as_tuple().exponent
        # never expand a huge exponent into digits: "1E+200000000" stays as it is
        return format(value, "f") if isinstance(exponent, int) and abs(exponent) <= 64 else str(value)
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


class TenantCaller(Protocol):
    """A signed-in tenant (``scada.tenants``): who, and the accounts they may see."""

    subject: str  # "account:<id>" or "phone:<number>"
    account_ids: frozenset[int]

    @property
    def actor(self) -> Actor: ...


@dataclass
class ApiCall(Generic[B]):
    """What a handler gets: the request, the authenticated user, the parsed body, path params.

    On a route declared with ``tenant=True`` the caller may instead be a signed-in tenant:
    then ``tenant`` is set and ``user`` is :data:`NOBODY` (no permission at all)."""

    request: web.Request
    user: UserInfo
    body: B
    params: dict[str, str]
    actor: Actor
    tenant: TenantCaller | None = None

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query.get(name, default)


# the user of a tenant's call: inactive, so that it may do nothing a permission guards
NOBODY = UserInfo(0, "tenant", Role.VIEWER, False, "en", None)

Handler = Callable[[ApiCall[Any]], Awaitable[Any]]
# resolves the caller of a request (token, or the HMI's session); None means anonymous
UserResolver = Callable[[web.Request], Awaitable[tuple[UserInfo, str] | None]]
# resolves a tenant's session (only on routes declared tenant=True); None: not a tenant
TenantResolver = Callable[[web.Request], Awaitable[TenantCaller | None]]

# a handler that authenticates the caller itself (the token endpoint) names the actor to audit
AUDIT_ACTOR: web.RequestKey[Actor] = web.RequestKey("api_audit_actor", Actor)
# the validated query parameters of a route declared with ``query=Model``
API_QUERY: web.RequestKey[BaseModel] = web.RequestKey("api_query", BaseModel)
USER_RESOLVER: web.AppKey[UserResolver] = web.AppKey("api_user_resolver", object)  # type: ignore[arg-type]
TENANT_RESOLVER: web.AppKey[TenantResolver] = web.AppKey("api_tenant_resolver", object)  # type: ignore[arg-type]
AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("api_audit", AuditLog)


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
    tenant: bool = False  # a signed-in tenant may call it too (the handler limits them to their accounts)


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
        tenant: bool = False,
    ) -> Callable[[Handler], Handler]:
        """``permission=None`` makes the route public (the token endpoint, providers' notifications);
        ``responses`` documents other successful answers (e.g. ``202``) in the OpenAPI document;
        ``tenant=True`` lets a signed-in tenant call it too (no other route ever sees a tenant)."""

        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, summary, permission, body, query, self.tag, status,
                                     responses=dict(responses or {}), audit=audit, tenant=tenant))
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


MAX_BODY_BYTES = 1_000_000
MAX_PARAM_CHARS = 256  # a path parameter (room, meter, user name ...) or a query value


async def _parse_body(request: web.Request, model: type[B]) -> B:
    if request.content_type != "application/json":
        raise ApiError(415, f"expected a JSON body (Content-Type: application/json), got {quote(request.content_type or 'none', 40)}")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"body too large: at most {MAX_BODY_BYTES:,} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"body too large: at most {MAX_BODY_BYTES:,} bytes")
    try:
        data = parse_json(raw or b"null")
    except JsonInputError as exc:
        if exc.path is None:
            raise ApiError(400, f"body: {exc.message}") from None
        raise ApiError(422, str(exc), field=exc.path) from None
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


# path parameters that are database ids: ASCII digits, 1 .. 2**63-1, else 404 before any work
ID_PARAMS = frozenset({"alarm_id", "entry"})


def _check_params(request: web.Request) -> None:
    """Path parameters and query values: bounded, without control characters (before any lookup)."""
    for name, value in request.match_info.items():
        if len(value) > MAX_PARAM_CHARS or has_control(value):
            raise ApiError(404, f"{name}: no such {name} {quote(value)}", field=name)
        if name in ID_PARAMS:
            try:
                parse_id(value, name)
            except InputError:
                raise ApiError(404, f"{name}: no such {name} {quote(value)}", field=name) from None
    for name, value in request.query.items():
        if len(name) > 64 or has_control(name):
            raise ApiError(422, f"unknown query parameter {quote(name)}", field=quote(name, 64))
        if len(value) > 4 * MAX_PARAM_CHARS or has_control(value):
            raise ApiError(422, f"{name}: {quote(value)} is too long or contains control characters", field=name)


class _NoBody(BaseModel):
    pass


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        user: UserInfo | None = None
        source = "api"
        outcome = "ok"
        reason = ""
        # Refusals write nothing: an anonymous caller (401), a malformed request (refused before
        # the handler runs) and a rate-limited login are answered without any database write.
        # What an authenticated caller was refused (403) or a handler refused is audited.
        audited = route.audit
        try:
            _check_params(request)
            resolved = await request.app[USER_RESOLVER](request)
            if resolved is not None:
                user, source = resolved
            tenant: TenantCaller | None = None
            if user is None and route.tenant and TENANT_RESOLVER in request.app:
                tenant = await request.app[TENANT_RESOLVER](request)
            if route.permission is not None and tenant is None:
                if user is None:
                    raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>'")
                if not user.can(route.permission):
                    raise ApiError(403, f"role {user.role.value} may not {route.permission.value}")
            try:
                body: Any = await _parse_body(request, route.body) if route.body is not None else _NoBody()
                if route.query is not None:
                    try:
                        request[API_QUERY] = route.query.model_validate(dict(request.query))
                    except ValidationError as exc:
                        raise validation_error(exc) from None
            except ApiError:
                audited = False  # malformed: refused before any work
                raise
            if tenant is not None:
                actor = tenant.actor
                request[AUDIT_ACTOR] = actor
                call = ApiCall(request, NOBODY, body, dict(request.match_info), actor, tenant)
            else:
                actor = user.actor(source) if user else Actor("anonymous", "api")  # type: ignore[arg-type]
                call = ApiCall(request, user, body, dict(request.match_info), actor)  # type: ignore[arg-type]
            result = await route.handler(call)
            if isinstance(result, web.StreamResponse):
                return result
            return json_response(result, status=route.status)
        except (ApiError, InputError, AnswerTooLarge) as exc:
            if isinstance(exc, AnswerTooLarge):
                exc = ApiError(422, str(exc), field=exc.field, rows=exc.rows, limit=exc.limit)
            elif isinstance(exc, InputError):
                exc = ApiError(422, str(exc))
            outcome = "denied" if exc.status in (401, 403) else "rejected"
            reason = exc.message
            if exc.status in (401, 429) or (user is None and AUDIT_ACTOR not in request):
                audited = False
            elif request.method in ("GET", "HEAD") and exc.status != 403:
                audited = False  # a refused read changed and disclosed nothing
            return json_response(exc.body(), status=exc.status)
        except Exception as exc:
            outcome = "failed"
            if database_locked(exc):
                # another writer held SQLite's write lock past the busy timeout (an overloaded
                # server): nothing was written, and the same request succeeds once it commits
                audited = False  # nothing was done, and the audit's write would wait for the same lock
                log.warning("API request met a locked database", extra={"route": f"{route.method} {route.path}", "user": user.name if user else None})
                busy = json_response({"error": "the database is busy; try again", "retry_after_s": 2}, status=503)
                busy.headers["Retry-After"] = "2"
                return busy
            reason = "internal error"
            log.exception("API handler failed", extra={"route": f"{route.method} {route.path}", "user": user.name if user else None})
            return json_response({"error": "internal error"}, status=500)
        finally:
            if audited:
                actor = request.get(AUDIT_ACTOR) or (user.actor(source) if user else Actor("anonymous", "api"))  # type: ignore[arg-type]
                try:
                    await request.app[AUDIT_LOG].write(
                        actor, f"api.{route.tag}.{route.handler.__name__}", "api", request.path,
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
            params = [
                {"name": p, "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1} if p in ID_PARAMS else {"type": "string", "maxLength": MAX_PARAM_CHARS}}
                for p in _PARAM.findall(r.path)
            ]
            if r.query is not None:
                properties = r.query.model_json_schema().get("properties", {})
                for field_name, f in r.query.model_fields.items():
                    name = f.alias or field_name  # ``from`` is a keyword in Python: its field has it as alias
                    schema = {k: v for k, v in properties.get(name, {}).items() if k not in ("title", "description", "default")}
                    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
                    if len(branches) == 1:  # an optional parameter is absent, never null
                        schema = branches[0]
                    params.append({"name": name, "in": "query", "required": f.is_required(), "schema": schema or {"type": "string"},
                                   "description": f.description or ""})
            if params:
                op["parameters"] = params
            if r.permission is not None:
                op["security"] = [{"bearer": []}, {"tenant": []}] if r.tenant else [{"bearer": []}]
                op["description"] = f"Requires the permission `{r.permission.value}`." + (
                    " A signed-in tenant may call it for their own accounts." if r.tenant else "")
            elif r.tenant:
                op["security"] = [{"tenant": []}]
                op["description"] = "Only for a signed-in tenant (the tenant portal's session), for their own accounts."
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
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "tenant": {"type": "apiKey", "in": "cookie", "name": "scada_tenant", "description": "the tenant portal's session (/tenant/login)"},
        }},
    }
