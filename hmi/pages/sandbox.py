"""The sandbox payment provider's pay page (``/payments/sandbox/pay/{id}``).

This is the provider's page, not one of ours: a real provider shows its own on its own site.
Anyone holding the link may pay (like a provider's cashier page); paying books the payment at
the sandbox, which then sends its signed notification to our notify endpoint, and the browser
goes back to the order's return URL. No session is needed; the form carries an anonymous
double-submit CSRF token.
"""

from __future__ import annotations

from aiohttp import web

from scada.payments.component import PAYMENTS
from scada.payments.errors import PaymentError
from scada.payments.sandbox import SandboxProvider
from scada.prepaid.money import format_minor

from ..keys import CONTEXT
from ..render import render, translator
from ..security import CSRF_FIELD, check_anonymous_csrf
from . import error_page

__all__ = ["install"]


def _provider(request: web.Request) -> SandboxProvider | None:
    service = request.app[CONTEXT].get(PAYMENTS)
    provider = service.providers.get("sandbox") if service is not None else None
    return provider if isinstance(provider, SandboxProvider) else None


async def pay_page(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    provider = _provider(request)
    row = await provider.bank.get(request.match_info["payment"]) if provider is not None else None
    if provider is None or row is None:
        return error_page(request, 404, t("sandbox.unknown"))
    return render(request, "sandbox_pay.html", payment=row, amount=format_minor(row.amount_minor, provider.minor_units), done=None)


async def pay(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    provider = _provider(request)
    row = await provider.bank.get(request.match_info["payment"]) if provider is not None else None
    if provider is None or row is None:
        return error_page(request, 404, t("sandbox.unknown"))
    form = await request.post()
    presented = form.get(CSRF_FIELD)
    if not check_anonymous_csrf(request, presented if isinstance(presented, str) else None):
        return error_page(request, 403, t("error.csrf"))
    action = form.get("action")
    if action not in ("pay", "decline"):
        return error_page(request, 400, t("sandbox.unknown_action"))
    try:
        row = await provider.bank.pay(row.id, decline=action == "decline")
    except PaymentError as exc:
        return error_page(request, exc.status, exc.message)
    if row.return_url:
        raise web.HTTPSeeOther(row.return_url)
    return render(request, "sandbox_pay.html", payment=row, amount=format_minor(row.amount_minor, provider.minor_units), done=row.state)


def install(app: web.Application) -> None:
    app.router.add_get("/payments/sandbox/pay/{payment}", pay_page, name="page.sandbox.pay_page")
    app.router.add_post("/payments/sandbox/pay/{payment}", pay, name="page.sandbox.pay")
