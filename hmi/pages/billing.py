"""Back-office pages: customers, charge rules, billing runs (preview, run), bills (list, print,
pay, credit notes), statements, retroactive adjustments (draft, compare, approve) and arrears.
The pages are for account managers (cashiers, supervisors); every write goes through the
back-office API (``/api/v1/...``) with the session's CSRF token, which checks each permission."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from scada.billing.errors import BillingError
from scada.billing.service import BILLING_SERVICE, BillingService
from scada.config import CONFIG
from scada.users.auth import Permission
from tags import utcnow

from ..render import render
from . import PageCall, PageSet, error_page

__all__ = ["pages"]

pages = PageSet("billing", requires=(BILLING_SERVICE,))

STATUSES = ("issued", "partly_paid", "paid", "overdue")
CHANNELS = ("cash", "card", "transfer", "wechat", "alipay")


def _svc(call: PageCall) -> BillingService:
    return call.ctx[BILLING_SERVICE]


def _last_month() -> str:
    first = utcnow().date().replace(day=1)
    return f"{(first - dt.timedelta(days=1)):%Y-%m}"


@pages.get("/customers", permission=Permission.ACCOUNT_MANAGE, nav=("nav.customers", 62))
async def customers(call: PageCall) -> web.StreamResponse:
    items = [c.as_json() for c in await _svc(call).customers()]
    return render(call.request, "billing_customers.html", customers=items, can_edit=call.user.can(Permission.ACCOUNT_MANAGE))


@pages.get("/charges", permission=Permission.ACCOUNT_MANAGE, nav=("nav.charges", 63))
async def charges(call: PageCall) -> web.StreamResponse:
    svc = _svc(call)
    snap = svc.ctx.snapshot
    return render(call.request, "billing_charges.html", rules=[r.as_json() for r in await svc.rules()],
                  floors=sorted(snap.floors), buildings=sorted(snap.buildings), today=svc.ctx.today(svc.clock()).isoformat(),
                  can_edit=call.user.can(Permission.ACCOUNT_MANAGE))


@pages.get("/billing", permission=Permission.ACCOUNT_MANAGE, nav=("nav.billing_runs", 64))
async def runs(call: PageCall) -> web.StreamResponse:
    svc = _svc(call)
    period = call.request.query.get("period", "")[:7] or _last_month()
    bills = await svc.bills(period=period) if len(period) == 7 else []
    return render(call.request, "billing_runs.html", period=period, bills=bills, can_run=call.user.can(Permission.ACCOUNT_MANAGE))


@pages.get("/bills", permission=Permission.ACCOUNT_MANAGE, nav=("nav.bills", 65))
async def bills(call: PageCall) -> web.StreamResponse:
    q = call.request.query
    room = q.get("room", "").strip()[:64] or None
    period = q.get("period", "").strip()[:7] or None
    status = q.get("status", "") if q.get("status", "") in STATUSES else None
    items = await _svc(call).bills(room=room, period=period, status=status, limit=200)
    # not "status": render() takes that as the HTTP status
    return render(call.request, "billing_bills.html", bills=items, room=room or "", period=period or "", bill_status=status or "",
                  statuses=STATUSES, channels=CHANNELS, can_pay=call.user.can(Permission.RECHARGE))


@pages.get("/bills/{id}", permission=Permission.ACCOUNT_MANAGE)
async def bill(call: PageCall) -> web.StreamResponse:
    raw = call.request.match_info["id"]
    try:
        item = await _svc(call).bill(int(raw))
    except (ValueError, BillingError):
        return error_page(call.request, 404, call.t("bills.unknown", bill=raw[:20]))
    return render(call.request, "billing_bill.html", bill=item, channels=CHANNELS, user_name=call.user.name,
                  can_pay=call.user.can(Permission.RECHARGE), can_credit=call.user.can(Permission.REFUND),
                  can_approve=call.user.can(Permission.APPROVE))


@pages.get("/statements", permission=Permission.ACCOUNT_MANAGE, nav=("nav.statements", 66))
async def statements(call: PageCall) -> web.StreamResponse:
    svc = _svc(call)
    q = call.request.query
    room = q.get("room", "").strip()[:64]
    today = svc.ctx.today(svc.clock())
    start = q.get("from", "")[:10] or today.replace(day=1).isoformat()
    end = q.get("to", "")[:10] or today.isoformat()
    statement = None
    error = None
    if room:
        tz = call.ctx[CONFIG].site.tz
        try:
            a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end) + dt.timedelta(days=1)
            st = await svc.statement(room, dt.datetime(a.year, a.month, a.day, tzinfo=tz), dt.datetime(b.year, b.month, b.day, tzinfo=tz))
            statement = st.as_json(svc.minor_units)
        except ValueError:
            error = call.t("statements.bad_dates")
        except BillingError as exc:
            error = exc.message
    return render(call.request, "billing_statements.html", room=room, start=start, end=end, statement=statement, error=error)


@pages.get("/adjustments", permission=Permission.ACCOUNT_MANAGE, nav=("nav.adjustments", 67))
async def adjustments(call: PageCall) -> web.StreamResponse:
    svc = _svc(call)
    tariffs = [t.as_json(utcnow()) for t in await svc.engine.tariffs.list()]
    return render(call.request, "billing_adjustments.html", adjustments=await svc.adjustments(), tariffs=tariffs, user_name=call.user.name,
                  can_draft=call.user.can(Permission.ACCOUNT_MANAGE), can_approve=call.user.can(Permission.APPROVE))


@pages.get("/arrears", permission=Permission.ACCOUNT_MANAGE, nav=("nav.arrears", 68))
async def arrears(call: PageCall) -> web.StreamResponse:
    return render(call.request, "billing_arrears.html", arrears=await _svc(call).arrears())
