"""The back office over the JSON API: customers, charge rules, billing runs, bills (JSON, HTML,
PDF), payments, credit notes, statements (JSON, CSV, XLSX, PDF), retroactive adjustments with
their approval by a second user, and arrears.

Amounts are decimal strings; a bad field is a 422 naming it and nothing is posted. Money that
creates value (an adjustment, a credit note) is drafted by one user and approved by another
with the ``approve`` permission: its author gets a 403.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from scada.billing.errors import BillingError
from scada.billing.service import BILLING_SERVICE, BillingService
from scada.config import CONFIG
from scada.core.inputs import AwareDateTime, Date, InputError, Phone, Text, check_time, parse_id
from scada.prepaid.money import MoneyError, parse_money
from scada.users.auth import Permission

from ..keys import CONTEXT
from ..printing import PrintTemplates, TemplateFailed, html_to_pdf
from ..render import CATALOGS, local_time
from .router import API_QUERY, ApiCall, ApiError, ApiRouter

__all__ = ["router"]

router = ApiRouter("billing")

Amount = Annotated[Any, Field(description='an amount as a decimal string, e.g. "100.00"', json_schema_extra={"type": "string"})]
Rate = Annotated[Any, Field(description='a fraction as a decimal string, e.g. "0.09" for 9 %', json_schema_extra={"type": "string"})]
Channel = Annotated[str, Field(default="cash", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CustomerIn(_In):
    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["person", "company"] = "person"
    phone: Phone | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=255)
    language: Literal["en", "zh-CN"] = "zh-CN"
    address: Text = Field(default="", max_length=500)
    tax_id: Text | None = Field(default=None, max_length=64)
    bill_per: Literal["account", "customer"] = "account"
    rooms: list[str] = Field(default=[], max_length=10_000, description="the rooms whose open accounts the customer holds")


class CustomerUpdateIn(_In):
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    kind: Literal["person", "company"] | None = None
    phone: Phone | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=255)
    language: Literal["en", "zh-CN"] | None = None
    address: Text | None = Field(default=None, max_length=500)
    tax_id: Text | None = Field(default=None, max_length=64)
    bill_per: Literal["account", "customer"] | None = None
    rooms: list[str] | None = Field(default=None, max_length=10_000)


class AccountBillingIn(_In):
    customer: int | None = None
    grace_days: int | None = Field(default=None, ge=0, le=365)
    cut_when_overdue: bool | None = None
    late_fee_rate: Rate | None = None
    late_fee_cap: Amount | None = None


class ChargeIn(_In):
    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["fixed", "per_area"]
    amount: Amount
    period: Literal["monthly", "quarterly", "yearly", "once"]
    targets: Any = Field(description='"all", {"rooms": [...]}, {"floor": ID} or {"building": ID}')
    settle: Literal["from_balance", "on_bill"]
    tax_rate: Rate | None = None
    start: Date | None = None
    end: Date | None = None
    reason: Text = Field(default="", max_length=500)


class EndIn(_In):
    end: Date | None = Field(default=None, description="the first day the rule no longer applies (default today)")
    reason: Text = Field(default="", max_length=500)


class RunIn(_In):
    period: str = Field(description="the month to close, YYYY-MM")
    rooms: list[str] | None = Field(default=None, max_length=100_000, description="only these rooms' accounts (default: every account)")
    preview: bool = Field(default=False, description="compute the bills without posting or issuing anything")


class PaymentIn(_In):
    amount: Amount
    reference: str = Field(min_length=1, max_length=128)
    channel: Channel = "cash"


class CreditNoteIn(_In):
    amount: Amount
    reason: Text = Field(min_length=1, max_length=500)


class DecisionIn(_In):
    reason: Text = Field(default="", max_length=500)


class RejectIn(_In):
    reason: Text = Field(min_length=1, max_length=500)


class AdjustmentIn(_In):
    tariff: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1, le=1_000_000)
    from_: AwareDateTime = Field(alias="from")
    to: AwareDateTime
    rooms: list[str] | None = Field(default=None, max_length=100_000)
    apply: Literal["ledger", "next_bill"] = "ledger"
    reason: Text = Field(default="", max_length=500)


def service_of(call: ApiCall[Any]) -> BillingService:
    svc = call.request.app[CONTEXT].get(BILLING_SERVICE)
    if svc is None:
        raise ApiError(503, "the back office is not running")
    return svc


def _failed(exc: BillingError) -> ApiError:
    return ApiError(exc.status, exc.message, field=exc.field)


def _money(svc: BillingService, value: Any, field: str) -> int:
    try:
        return parse_money(value, field, svc.minor_units, maximum=svc.cfg.max_amount)
    except MoneyError as exc:
        raise ApiError(422, str(exc), field=exc.field) from None


def _int_id(call: ApiCall[Any], what: str) -> int:
    try:
        return parse_id(call.params["id"], what)
    except InputError as exc:
        raise ApiError(404, f"no {what}: {exc}") from None


# -- customers ----------------------------------------------------------------------------------
@router.post("/customers", body=CustomerIn, permission=Permission.ACCOUNT_MANAGE, status=201,
             summary="Create a customer (a person or a company) holding rooms' accounts")
async def create_customer(call: ApiCall[CustomerIn]) -> dict[str, Any]:
    svc = service_of(call)
    try:
        return (await svc.create_customer(call.body.model_dump(), call.actor)).as_json()
    except BillingError as exc:
        raise _failed(exc) from None


@router.get("/customers", summary="Every customer with the rooms it holds")
async def list_customers(call: ApiCall[Any]) -> dict[str, Any]:
    return {"customers": [c.as_json() for c in await service_of(call).customers()]}


@router.get("/customers/{id}", summary="One customer")
async def get_customer(call: ApiCall[Any]) -> dict[str, Any]:
    try:
        return (await service_of(call).customer(_int_id(call, "customer"))).as_json()
    except BillingError as exc:
        raise _failed(exc) from None


@router.put("/customers/{id}", body=CustomerUpdateIn, permission=Permission.ACCOUNT_MANAGE,
            summary="Change a customer's details, billing (per account or per customer) or rooms")
async def update_customer(call: ApiCall[CustomerUpdateIn]) -> dict[str, Any]:
    svc = service_of(call)
    try:
        return (await svc.update_customer(_int_id(call, "customer"), call.body.model_dump(exclude_unset=True), call.actor)).as_json()
    except BillingError as exc:
        raise _failed(exc) from None


@router.post("/rooms/{room}/account/billing", body=AccountBillingIn, permission=Permission.ACCOUNT_MANAGE,
             summary="An account's customer, grace days, cut when overdue and late fee (null: the configured default)")
async def account_billing(call: ApiCall[AccountBillingIn]) -> dict[str, Any]:
    try:
        return await service_of(call).account_billing(call.params["room"], call.body.model_dump(exclude_unset=True), call.actor)
    except BillingError as exc:
        raise _failed(exc) from None


# -- charge rules -------------------------------------------------------------------------------
@router.post("/charges", body=ChargeIn, permission=Permission.ACCOUNT_MANAGE, status=201,
             summary="Create a charge rule (rent, property fee …): fixed or per m², per period or once, from the balance or on the bill")
async def create_charge(call: ApiCall[ChargeIn]) -> dict[str, Any]:
    svc = service_of(call)
    try:
        return (await svc.create_rule(call.body.model_dump(), call.actor)).as_json()
    except BillingError as exc:
        raise _failed(exc) from None


@router.get("/charges", summary="Every charge rule")
async def list_charges(call: ApiCall[Any]) -> dict[str, Any]:
    return {"charges": [r.as_json() for r in await service_of(call).rules()]}


@router.delete("/charges/{id}", body=EndIn, permission=Permission.ACCOUNT_MANAGE,
               summary="End a charge rule from a date (today or later); what it charged for later days is credited back")
async def end_charge(call: ApiCall[EndIn]) -> dict[str, Any]:
    svc = service_of(call)
    try:
        return (await svc.end_rule(_int_id(call, "charge rule"), call.body.end, call.body.reason, call.actor)).as_json()
    except BillingError as exc:
        raise _failed(exc) from None


# -- billing runs and bills ---------------------------------------------------------------------
@router.post("/billing/runs", body=RunIn, permission=Permission.ACCOUNT_MANAGE,
             summary="Close a month: one bill per account (or customer); the same month again returns the bills issued; preview posts nothing")
async def run(call: ApiCall[RunIn]) -> dict[str, Any]:
    svc = service_of(call)
    try:
        result = await svc.run(call.body.period, call.body.rooms, preview=call.body.preview, actor=call.actor)
    except BillingError as exc:
        raise _failed(exc) from None
    return result.as_json()


class BillsQuery(_In):
    room: str | None = Field(default=None, max_length=64)
    customer: int | None = None
    period: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    status: Literal["issued", "partly_paid", "paid", "overdue"] | None = None


@router.get("/bills", query=BillsQuery, summary="Bills, newest first (?room=&customer=&period=&status=)")
async def list_bills(call: ApiCall[Any]) -> dict[str, Any]:
    q: BillsQuery = call.request[API_QUERY]  # type: ignore[assignment]
    return {"bills": await service_of(call).bills(room=q.room, customer=q.customer, period=q.period, status=q.status)}


def _translator(call: ApiCall[Any], language: str) -> Any:
    catalogs = call.request.app[CATALOGS]
    lang = call.query("lang") or language
    if lang not in catalogs.catalogs:
        raise ApiError(422, f"lang: one of {', '.join(catalogs.languages)}", field="lang")
    return catalogs.translator(lang)


def _templates(call: ApiCall[Any]) -> PrintTemplates:
    config = call.request.app[CONTEXT][CONFIG]
    folder = config.billing.templates_dir
    return PrintTemplates(config.path(folder) if folder else None)


async def _document(call: ApiCall[Any], template: str, fmt: str, filename: str, language: str, **context: Any) -> web.StreamResponse:
    config = call.request.app[CONTEXT][CONFIG]
    t = _translator(call, language)
    try:
        html = _templates(call).render(template, t, site=config.site.name, currency=config.site.currency,
                                       local=lambda v: local_time(v, config.site.tz), **context)
        if fmt == "html":
            # a printable document: its own styles inline, nothing else (no script, no frame)
            return web.Response(text=html, content_type="text/html", charset="utf-8", headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"})
        pdf = await html_to_pdf(html, template)
    except TemplateFailed as exc:
        raise ApiError(422, f"template: {exc}", field="template") from None
    return web.Response(body=pdf, content_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'})


@router.get("/bills/{id}", summary="A bill (?format=json|html|pdf, ?lang=en|zh-CN; printable from a template)")
async def get_bill(call: ApiCall[Any]) -> Any:
    svc = service_of(call)
    fmt = call.query("format") or "json"
    if fmt not in ("json", "html", "pdf"):
        raise ApiError(422, "format: json, html or pdf", field="format")
    try:
        bill = await svc.bill(_int_id(call, "bill"))
    except BillingError as exc:
        raise _failed(exc) from None
    if fmt == "json":
        return bill
    return await _document(call, "bill.html", fmt, f"bill-{bill['number']}", bill["language"], bill=bill)


@router.post("/bills/{id}/payments", body=PaymentIn, permission=Permission.RECHARGE,
             summary="Pay a bill; the same channel and reference again returns the first result, with another amount it is a 409")
async def pay(call: ApiCall[PaymentIn]) -> dict[str, Any]:
    svc = service_of(call)
    b = call.body
    amount = _money(svc, b.amount, "amount")
    try:
        bill, replayed = await svc.pay(_int_id(call, "bill"), amount, reference=b.reference, channel=b.channel, actor=call.actor)
    except BillingError as exc:
        raise _failed(exc) from None
    return {"bill": bill, "replayed": replayed}


@router.post("/bills/{id}/credit-notes", body=CreditNoteIn, permission=Permission.REFUND, status=201,
             summary="Draft a credit note correcting an issued bill (posted once another user approves it)")
async def credit_note(call: ApiCall[CreditNoteIn]) -> dict[str, Any]:
    svc = service_of(call)
    amount = _money(svc, call.body.amount, "amount")
    try:
        return await svc.credit_note(_int_id(call, "bill"), amount, call.body.reason, call.actor)
    except BillingError as exc:
        raise _failed(exc) from None


@router.post("/credit-notes/{id}/approve", body=DecisionIn, permission=Permission.APPROVE,
             summary="Approve a credit note (a user other than its author): its credit is posted")
async def approve_credit_note(call: ApiCall[DecisionIn]) -> dict[str, Any]:
    try:
        return await service_of(call).approve_credit_note(_int_id(call, "credit note"), call.actor, call.body.reason)
    except BillingError as exc:
        raise _failed(exc) from None


@router.post("/credit-notes/{id}/reject", body=RejectIn, permission=Permission.APPROVE, summary="Reject a credit note")
async def reject_credit_note(call: ApiCall[RejectIn]) -> dict[str, Any]:
    try:
        return await service_of(call).reject_credit_note(_int_id(call, "credit note"), call.actor, call.body.reason)
    except BillingError as exc:
        raise _failed(exc) from None


# -- statements ---------------------------------------------------------------------------------
def _instant(call: ApiCall[Any], name: str, default: dt.datetime | None) -> dt.datetime:
    """A date (local midnight; for ``to`` the end of that day) or a time with an offset."""
    raw = call.query(name)
    tz = call.request.app[CONTEXT][CONFIG].site.tz
    if raw is None or raw == "":
        if default is None:
            raise ApiError(422, f"{name}: required (a date YYYY-MM-DD or a time with an offset)", field=name)
        return default
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            if name == "to":
                day += dt.timedelta(days=1)
            t = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        else:
            t = dt.datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise ApiError(422, f"{name}: expected a date YYYY-MM-DD or a time with an offset, found {raw[:40]!r}", field=name) from None
    if t.tzinfo is None:
        raise ApiError(422, f"{name}: a time needs a UTC offset", field=name)
    try:
        return check_time(t.astimezone(dt.UTC))
    except InputError as exc:
        raise ApiError(422, f"{name}: {exc}", field=name) from None


def _xlsx(statement: dict[str, Any], t: Any) -> bytes:
    import xlsxwriter  # noqa: PLC0415 - loaded on the first export

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet(t("statement.title")[:31])
    bold = book.add_format({"bold": True})
    money = book.add_format({"num_format": "#,##0.00"})
    sheet.write_row(0, 0, [t("bill.room"), statement["room"], statement["from"], statement["to"]], bold)
    sheet.write_row(2, 0, [t("statement.time"), t("statement.kind"), t("statement.description"), t("bill.amount"), t("statement.balance")], bold)
    sheet.write(3, 2, t("bill.opening_balance"))
    sheet.write_number(3, 4, float(statement["opening_balance"]), money)
    row = 4
    for e in statement["entries"]:
        sheet.write_row(row, 0, [e["ts"], e["kind"], e["description"]])
        # XLSX numbers are binary doubles: amounts to the cent are exact at these magnitudes, and
        # the text beside them (column F) keeps the ledger's exact string
        sheet.write_number(row, 3, float(e["amount"]), money)
        sheet.write_number(row, 4, float(e["balance"]), money)
        sheet.write_string(row, 5, e["amount"])
        row += 1
    sheet.write(row, 2, t("bill.closing_balance"), bold)
    sheet.write_number(row, 4, float(statement["closing_balance"]), money)
    sheet.set_column(0, 0, 26)
    sheet.set_column(2, 2, 40)
    sheet.set_column(3, 5, 14)
    book.close()
    return out.getvalue()


def _csv(statement: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ts", "kind", "description", "amount", "balance", "reference"])
    w.writerow([statement["from"], "opening_balance", "", "", statement["opening_balance"], ""])
    for e in statement["entries"]:
        w.writerow([e["ts"], e["kind"], e["description"], e["amount"], e["balance"], e.get("reference", "")])
    w.writerow([statement["to"], "closing_balance", "", "", statement["closing_balance"], ""])
    return buf.getvalue()


@router.get("/rooms/{room}/account/statement",
            summary="A room's account over any range (?from=&to= dates or times; ?format=json|csv|xlsx|pdf): opening, entries, consumption, closing")
async def statement(call: ApiCall[Any]) -> Any:
    svc = service_of(call)
    fmt = call.query("format") or "json"
    if fmt not in ("json", "csv", "xlsx", "pdf"):
        raise ApiError(422, "format: json, csv, xlsx or pdf", field="format")
    now = svc.clock()
    start = _instant(call, "from", None)
    end = _instant(call, "to", now)
    room = call.params["room"]
    try:
        st = await svc.statement(room, start, end)
    except BillingError as exc:
        raise _failed(exc) from None
    data = st.as_json(svc.minor_units)
    name = f"statement-{room}-{start.date().isoformat()}"
    if fmt == "json":
        return data
    if fmt == "csv":
        return web.Response(text=_csv(data), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    try:
        language = await svc.document_language(st.account_id)
    except BillingError as exc:
        raise _failed(exc) from None
    if fmt == "xlsx":
        t = _translator(call, language)
        body = await asyncio.get_running_loop().run_in_executor(None, _xlsx, data, t)
        return web.Response(body=body, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return await _document(call, "statement.html", "pdf", name, language, statement=data)


@router.get("/customers/{id}/statement",
            summary="A customer's statement over any range (?from=&to=): each of its accounts' statement and the totals")
async def customer_statement(call: ApiCall[Any]) -> dict[str, Any]:
    svc = service_of(call)
    now = svc.clock()
    start = _instant(call, "from", None)
    end = _instant(call, "to", now)
    try:
        customer = await svc.customer(_int_id(call, "customer"))
        parts = [await svc.statement_of_account(account_id, start, end) for account_id in customer.accounts]
    except BillingError as exc:
        raise _failed(exc) from None
    m = svc.minor_units
    return {
        "customer": customer.id, "name": customer.name, "from": start.isoformat(), "to": end.isoformat(),
        "accounts": [p.as_json(m) for p in parts],
        "opening_balance": svc.ctx.fmt(sum(p.opening_minor for p in parts)),
        "closing_balance": svc.ctx.fmt(sum(p.closing_minor for p in parts)),
    }


# -- adjustments --------------------------------------------------------------------------------
@router.post("/adjustments", body=AdjustmentIn, permission=Permission.ACCOUNT_MANAGE, status=201,
             summary="Draft a retroactive price adjustment: billed consumption re-priced under a tariff version, per account; nothing is posted")
async def draft_adjustment(call: ApiCall[AdjustmentIn]) -> dict[str, Any]:
    b = call.body
    try:
        return await service_of(call).draft_adjustment(tariff=b.tariff, version=b.version, start=b.from_, end=b.to, rooms=b.rooms,
                                                       apply=b.apply, reason=b.reason, actor=call.actor)
    except BillingError as exc:
        raise _failed(exc) from None


@router.get("/adjustments", summary="Adjustments, newest first (?state=draft|approved|rejected)")
async def list_adjustments(call: ApiCall[Any]) -> dict[str, Any]:
    state = call.query("state")
    if state not in (None, "draft", "approved", "rejected"):
        raise ApiError(422, "state: draft, approved or rejected", field="state")
    return {"adjustments": await service_of(call).adjustments(state)}


@router.get("/adjustments/{id}", summary="One adjustment with its accounts: charged, repriced, difference")
async def get_adjustment(call: ApiCall[Any]) -> dict[str, Any]:
    try:
        return await service_of(call).adjustment(_int_id(call, "adjustment"))
    except BillingError as exc:
        raise _failed(exc) from None


@router.post("/adjustments/{id}/approve", body=DecisionIn, permission=Permission.APPROVE,
             summary="Approve an adjustment (a user other than its author): each difference is posted, or put on the next bill")
async def approve_adjustment(call: ApiCall[DecisionIn]) -> dict[str, Any]:
    try:
        return await service_of(call).approve_adjustment(_int_id(call, "adjustment"), call.actor, call.body.reason)
    except BillingError as exc:
        raise _failed(exc) from None


@router.post("/adjustments/{id}/reject", body=RejectIn, permission=Permission.APPROVE, summary="Reject an adjustment")
async def reject_adjustment(call: ApiCall[RejectIn]) -> dict[str, Any]:
    try:
        return await service_of(call).reject_adjustment(_int_id(call, "adjustment"), call.actor, call.body.reason)
    except BillingError as exc:
        raise _failed(exc) from None


# -- arrears ------------------------------------------------------------------------------------
@router.get("/arrears", summary="Accounts with a negative balance or unpaid bills, aged 0–30, 31–60, 61–90 and over 90 days")
async def arrears(call: ApiCall[Any]) -> dict[str, Any]:
    return await service_of(call).arrears()
