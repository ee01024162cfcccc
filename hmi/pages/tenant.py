"""The tenant portal, ``/tenant/``: phone first (from 360 px wide), English and 简体中文.

A tenant signs in with their account number and PIN, or with their registered phone number
and a one-time code sent by SMS; both go through the server's one login limiter (counted before
the check). A tenant's session is its own kind (``scada_tenant`` cookie, ``scada.tenants``): the
portal never takes an operator's session and no operator page takes a tenant's. The pages show
only the tenant's own accounts — balance, days of credit left, today's and this month's use and
cost, the last 30 days, the ledger, bills and statements — and recharge online: the recharge
form creates an order (``POST /api/v1/payments/orders``) and opens the provider's pay page; the
account page follows the order and the balance live, without reloading.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

import scada
from scada.billing.service import BILLING_SERVICE
from scada.config import CONFIG
from scada.core.inputs import InputError, parse_id
from scada.payments.component import PAYMENTS
from scada.payments.errors import PaymentError
from scada.prepaid.engine import PREPAID
from scada.prepaid.money import MoneyError, format_minor, parse_money
from scada.tenants.component import TENANTS
from scada.tenants.service import Tenant, TenantError, TenantService
from scada.tenants.usage import UNITS, account_summary
from tags import utcnow

from ..i18n import LANGUAGES, negotiate
from ..keys import CONTEXT, LOGIN_LIMITER
from ..render import CATALOGS, TEMPLATES
from ..security import (
    CSRF_FIELD,
    LANG_COOKIE,
    TENANT_COOKIE,
    anonymous_csrf_token,
    check_anonymous_csrf,
    clear_tenant_cookie,
    remember_anonymous_csrf,
    set_cookie,
    tenant_of,
)

__all__ = ["install"]

CHART_DAYS = 30
PRESETS = ("20", "50", "100", "200")


def _language(request: web.Request, tenant: Tenant | None) -> str:
    catalogs = request.app[CATALOGS]
    if tenant is not None and tenant.language in catalogs.catalogs:
        return tenant.language
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in catalogs.catalogs:
        return cookie  # type: ignore[return-value]
    default = request.app[CONTEXT][CONFIG].hmi.default_language
    return negotiate(request.headers.get("Accept-Language", ""), catalogs.languages, default)


def render_tenant(request: web.Request, template: str, tenant: Tenant | None, *, status: int = 200, **context: Any) -> web.Response:
    """A portal page: the tenant's language and CSRF token (an anonymous one before signing in)."""
    config = request.app[CONTEXT][CONFIG]
    t = request.app[CATALOGS].translator(_language(request, tenant))
    fresh = None
    if tenant is not None:
        csrf = tenant.csrf_token
    else:
        csrf, new = anonymous_csrf_token(request)
        fresh = csrf if new else None
    html = request.app[TEMPLATES].get_template(template).render(
        t=t, lang=t.language, languages=LANGUAGES, csrf=csrf, tenant=tenant, site_name=config.site.name, currency=config.site.currency,
        version=scada.__version__, client_messages=t.client_messages(), path=request.path, full_path=request.path_qs, **context,
    )
    response = web.Response(text=html, content_type="text/html", status=status, charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    if fresh is not None:
        remember_anonymous_csrf(response, request, fresh)
    return response


def _service(request: web.Request) -> TenantService:
    service = request.app[CONTEXT].get(TENANTS)
    if service is None:
        raise web.HTTPNotFound()
    return service


def _not_found(request: web.Request, tenant: Tenant | None) -> web.Response:
    t = request.app[CATALOGS].translator(_language(request, tenant))
    return render_tenant(request, "tenant_error.html", tenant, status=404, message=t("tenant.not_found"))


TenantHandler = Callable[[web.Request, Tenant], Awaitable[web.StreamResponse]]


def signed_in(handler: TenantHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for a signed-in tenant: anonymous visitors go to the sign-in; a POST needs the CSRF token."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        _service(request)
        tenant = await tenant_of(request)
        if tenant is None:
            if request.method == "GET":
                raise web.HTTPSeeOther("/tenant/login")
            return render_tenant(request, "tenant_error.html", None, status=401,
                                 message=request.app[CATALOGS].translator(_language(request, None))("tenant.signed_out"))
        if request.method == "POST":
            form = await request.post()
            presented = form.get(CSRF_FIELD)
            if not isinstance(presented, str) or not tenant.csrf_ok(presented):
                t = request.app[CATALOGS].translator(tenant.language)
                return render_tenant(request, "tenant_error.html", tenant, status=403, message=t("error.csrf"))
        return await handler(request, tenant)

    wrapped.__name__ = handler.__name__
    return wrapped


# -- signing in -------------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    if await tenant_of(request) is not None:
        raise web.HTTPSeeOther("/tenant/")
    return render_tenant(request, "tenant_login.html", None, error=None, account="", phone="", code_sent=False,
                         codes=service.codes_available)


def _text(form: Any, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _start_session(request: web.Request, service: TenantService, subject: str, kind: str) -> web.StreamResponse:
    cookie = request.cookies.get(LANG_COOKIE)
    token, _tenant = await service.sign_in(subject, kind, address=request.remote or "?", user_agent=request.headers.get("User-Agent", ""),
                                           language=cookie if cookie in request.app[CATALOGS].catalogs else None)
    response = web.HTTPSeeOther("/tenant/")
    set_cookie(response, request, TENANT_COOKIE, token)
    raise response


async def login_pin(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    form = await request.post()
    t = request.app[CATALOGS].translator(_language(request, None))
    account = _text(form, "account", 20)
    page: dict[str, Any] = {"account": account, "phone": "", "code_sent": False, "codes": service.codes_available}
    if not check_anonymous_csrf(request, form.get(CSRF_FIELD) if isinstance(form.get(CSRF_FIELD), str) else None):  # type: ignore[arg-type]
        return render_tenant(request, "tenant_login.html", None, status=403, error=t("login.csrf"), **page)
    pin = form.get("pin")
    if not account or not isinstance(pin, str) or not pin or len(pin) > 64:
        return render_tenant(request, "tenant_login.html", None, status=400, error=t("tenant.login.missing_pin"), **page)
    limiter = request.app[LOGIN_LIMITER]
    with limiter.attempt(request.remote or "?", f"tenant:account:{account}") as attempt:  # counted before the PIN is checked
        if attempt.refused:
            return render_tenant(request, "tenant_login.html", None, status=429,
                                 error=t("login.rate_limited", seconds=math.ceil(attempt.wait)), **page)
        subject = await service.authenticate_pin(account, pin)
        if subject is None:
            return render_tenant(request, "tenant_login.html", None, status=401, error=t("tenant.login.failed_pin"), **page)
        attempt.succeeded()
    return await _start_session(request, service, subject, "pin")


async def request_code(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    form = await request.post()
    t = request.app[CATALOGS].translator(_language(request, None))
    phone = _text(form, "phone", 40)
    page: dict[str, Any] = {"account": "", "phone": phone, "code_sent": False, "codes": service.codes_available}
    if not check_anonymous_csrf(request, form.get(CSRF_FIELD) if isinstance(form.get(CSRF_FIELD), str) else None):  # type: ignore[arg-type]
        return render_tenant(request, "tenant_login.html", None, status=403, error=t("login.csrf"), **page)
    try:
        sent = await service.request_code(phone, request.remote or "?")
    except TenantError as exc:
        message = t("tenant.login.code_wait", seconds=math.ceil(exc.wait_s)) if exc.status == 429 else (
            t("tenant.login.bad_phone") if exc.field == "phone" else exc.message)
        return render_tenant(request, "tenant_login.html", None, status=exc.status, error=message, **page)
    page.update(phone=sent.phone, code_sent=True, minutes=max(1, round(sent.expires_in_s / 60)))
    return render_tenant(request, "tenant_login.html", None, error=None, **page)


async def verify_code(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    form = await request.post()
    t = request.app[CATALOGS].translator(_language(request, None))
    phone = _text(form, "phone", 40)
    page: dict[str, Any] = {"account": "", "phone": phone, "code_sent": True, "codes": service.codes_available, "minutes": 0}
    if not check_anonymous_csrf(request, form.get(CSRF_FIELD) if isinstance(form.get(CSRF_FIELD), str) else None):  # type: ignore[arg-type]
        return render_tenant(request, "tenant_login.html", None, status=403, error=t("login.csrf"), **page)
    code = _text(form, "code", 16)
    try:
        number = service.phone(phone)
    except TenantError:
        return render_tenant(request, "tenant_login.html", None, status=400, error=t("tenant.login.bad_phone"), **page)
    limiter = request.app[LOGIN_LIMITER]
    with limiter.attempt(request.remote or "?", f"tenant:phone:{number}") as attempt:  # counted before the code is checked
        if attempt.refused:
            return render_tenant(request, "tenant_login.html", None, status=429,
                                 error=t("login.rate_limited", seconds=math.ceil(attempt.wait)), **page)
        subject = await service.verify_code(number, code)
        if subject is None:
            return render_tenant(request, "tenant_login.html", None, status=401, error=t("tenant.login.failed_code"), **page)
        attempt.succeeded()
    return await _start_session(request, service, subject, "code")


@signed_in
async def logout(request: web.Request, tenant: Tenant) -> web.StreamResponse:
    await _service(request).sign_out(tenant)
    response = web.HTTPSeeOther("/tenant/login")
    clear_tenant_cookie(response, request)
    raise response


async def set_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    tenant = await tenant_of(request)
    presented = form.get(CSRF_FIELD)
    presented = presented if isinstance(presented, str) else None
    ok = tenant.csrf_ok(presented) if tenant is not None else check_anonymous_csrf(request, presented)
    lang = form.get("lang")
    if not ok or not isinstance(lang, str) or lang not in LANGUAGES:
        return render_tenant(request, "tenant_error.html", tenant, status=403 if not ok else 400,
                             message=request.app[CATALOGS].translator(_language(request, tenant))("error.csrf" if not ok else "error.title"))
    if tenant is not None:
        await _service(request).set_language(tenant, lang)
    target = form.get("next")
    response = web.HTTPSeeOther(target if isinstance(target, str) and target.startswith("/tenant") and "//" not in target else "/tenant/")
    set_cookie(response, request, LANG_COOKIE, lang, max_age=365 * 24 * 3600)
    raise response


# -- the tenant's accounts ----------------------------------------------------------------------------
@signed_in
async def home(request: web.Request, tenant: Tenant) -> web.StreamResponse:
    engine = request.app[CONTEXT][PREPAID]
    views = sorted((v for v in await engine.accounts.open_accounts() if v.id in tenant.account_ids), key=lambda v: v.room_id)
    if len(views) == 1:
        raise web.HTTPSeeOther(f"/tenant/accounts/{views[0].id}")
    rooms = engine.assets.snapshot.rooms
    items = [{"id": v.id, "room": v.room_id, "room_name": rooms[v.room_id].name if v.room_id in rooms else v.room_id,
              "balance": format_minor(v.balance_minor, engine.minor_units)} for v in views]
    return render_tenant(request, "tenant_home.html", tenant, accounts=items)


def _account_id(request: web.Request, tenant: Tenant) -> int | None:
    try:
        account_id = parse_id(request.match_info["account"], "account")
    except InputError:
        return None
    return account_id if tenant.owns(account_id) else None


def _chart(days: list[dict[str, Any]], minor_units: int) -> dict[str, Any]:
    """The 30-day bars as SVG geometry (drawn by the template: no script, no inline style)."""
    costs = [Decimal(d["cost"]) for d in days]
    top = max(costs, default=Decimal(0))
    height, width, gap = 100, 300, 2
    bar = (width - gap * (len(days) - 1)) / max(len(days), 1)
    bars = []
    for i, (d, c) in enumerate(zip(days, costs, strict=True)):
        h = float(c / top * height) if top > 0 else 0.0
        bars.append({"x": round(i * (bar + gap), 2), "y": round(height - h, 2), "w": round(bar, 2), "h": round(h, 2),
                     "day": d["day"], "cost": d["cost"]})
    return {"bars": bars, "top": format(top, "f"), "width": width, "height": height,
            "first": days[0]["day"] if days else "", "last": days[-1]["day"] if days else ""}


@signed_in
async def account_page(request: web.Request, tenant: Tenant) -> web.StreamResponse:
    account_id = _account_id(request, tenant)
    engine = request.app[CONTEXT][PREPAID]
    view = next((v for v in await engine.accounts.open_accounts() if v.id == account_id), None) if account_id else None
    if view is None:
        return _not_found(request, tenant)
    summary = await account_summary(engine, view, now=utcnow())
    data = summary.as_json(engine.minor_units, engine.currency)
    entries = [e.as_json(engine.minor_units) for e in await engine.accounts.ledger(view.id, limit=20)]
    billing = request.app[CONTEXT].get(BILLING_SERVICE)
    bills = []
    if billing is not None:
        bills = [b for b in await billing.bills(room=view.room_id, limit=12)
                 if b["accounts"] and all(sec["account"] in tenant.account_ids for sec in b["accounts"])
                 and any(sec["account"] == view.id for sec in b["accounts"])]
    payments = request.app[CONTEXT].get(PAYMENTS)
    providers = list(payments.providers) if payments is not None else []
    order = None
    order_text = request.query.get("order", "")
    if payments is not None and order_text:
        try:
            found = await payments.order(parse_id(order_text, "order"))
        except InputError:
            found = None
        if found is not None and found.account_id == view.id:
            order = found.as_json(engine.minor_units)
    rooms = engine.assets.snapshot.rooms
    return render_tenant(
        request, "tenant_account.html", tenant, account=data, room_name=rooms[view.room_id].name if view.room_id in rooms else view.room_id,
        entries=entries, bills=bills, chart=_chart(data["days"], engine.minor_units), units=UNITS, providers=providers,
        presets=PRESETS, order=order, many=len(tenant.account_ids) > 1,
        limits=(format_minor(payments.min_minor, engine.minor_units), format_minor(payments.max_minor, engine.minor_units))
        if payments is not None else None,
    )


@signed_in
async def pay(request: web.Request, tenant: Tenant) -> web.StreamResponse:
    """The recharge form without script: create the order and go to the provider's pay page."""
    account_id = _account_id(request, tenant)
    engine = request.app[CONTEXT][PREPAID]
    payments = request.app[CONTEXT].get(PAYMENTS)
    view = next((v for v in await engine.accounts.open_accounts() if v.id == account_id), None) if account_id else None
    if view is None or payments is None:
        return _not_found(request, tenant)
    form = await request.post()
    t = request.app[CATALOGS].translator(tenant.language)
    try:
        amount = parse_money(_text(form, "amount", 32), "amount", engine.minor_units)
        provider = _text(form, "provider", 32) or next(iter(payments.providers), "")
        order = await payments.create_order(view.room_id, amount, provider, actor=tenant.actor, created_by=tenant.actor.name,
                                            return_path=f"/tenant/accounts/{view.id}", account_id=view.id)
    except (MoneyError, PaymentError) as exc:
        message = str(exc) if isinstance(exc, MoneyError) else exc.message
        return render_tenant(request, "tenant_error.html", tenant, status=422, message=t("tenant.pay.failed", error=message))
    raise web.HTTPSeeOther(order.pay_url)


def install(app: web.Application) -> None:
    add = app.router.add_route
    add("GET", "/tenant/login", login_form, name="page.tenant.login_form")
    add("POST", "/tenant/login", login_pin, name="page.tenant.login_pin")
    add("POST", "/tenant/login/code", request_code, name="page.tenant.request_code")
    add("POST", "/tenant/login/verify", verify_code, name="page.tenant.verify_code")
    add("POST", "/tenant/logout", logout, name="page.tenant.logout")
    add("POST", "/tenant/language", set_language, name="page.tenant.language")
    add("GET", "/tenant/", home, name="page.tenant.home")
    add("GET", "/tenant/accounts/{account}", account_page, name="page.tenant.account")
    add("POST", "/tenant/accounts/{account}/pay", pay, name="page.tenant.pay")

    async def to_portal(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/tenant/")

    add("GET", "/tenant", to_portal, name="page.tenant.root")
