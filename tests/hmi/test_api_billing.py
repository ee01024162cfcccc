"""The back office through the JSON API, end to end: charges, a billing run (preview, issue,
again), bills as JSON, HTML and PDF, payments, statements in every format, an adjustment that
needs a second user, arrears; bad input is a 4xx naming the field and posts nothing."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from hmi.component import HMI_URL
from scada.billing.models import Bill
from scada.billing.service import BILLING_SERVICE
from scada.core.runtime import Runtime
from scada.db.component import DATABASE
from scada.prepaid.engine import PREPAID
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.readings import Reading
from scada.site.models import Room
from scada.users.audit import Actor
from scada.users.component import USERS
from scada.users.models import AuditEntry

from ..harness import passwords_hashed_once, running_server, server_config
from .prepaid_site import prepaid_extra, with_site

TZ8 = dt.timezone(dt.timedelta(hours=8))
USERS_ = {"cashier": "cashier", "engineer": "engineer", "viewer": "viewer", "super1": "supervisor", "super2": "supervisor"}


@dataclass
class Api:
    base: str
    rt: Runtime
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(self, method: str, path: str, user: str = "cashier", body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        async with self.http.request(method, self.base + path, headers=headers, json=body) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.read()

    async def count(self, model: Any) -> int:
        async with self.rt.ctx[DATABASE].sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(model)) or 0)


@asynccontextmanager
async def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, broken_statement: bool) -> AsyncIterator[Api]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    templates = tmp_path / "print"
    templates.mkdir()
    if broken_statement:
        # an operator's statement template with a mistake in it (the bill keeps the built-in one)
        (templates / "statement.html").write_text("<html><body>{{ statement.room }} {{ statement.no_such_field.x }}</body></html>")
    extra = prepaid_extra(tmp_path, f'[billing]\ntemplates_dir = "{templates}"\n[billing.dunning]\ngrace_days = 0\n')
    config = with_site(server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", extra))
    async with running_server(config) as rt:
        with passwords_hashed_once():
            for name, role in USERS_.items():
                await rt.ctx[USERS].add(name, role, f"{name}-password", Actor("t", "cli"))
        async with rt.ctx[DATABASE].transaction() as s:
            await s.execute(update(Room).where(Room.id == "R1").values(area_m2=Decimal("45.5")))
        await rt.ctx[BILLING_SERVICE].ctx.assets.load()
        async with aiohttp.ClientSession() as http:
            base = rt.ctx[HMI_URL] + "/api/v1"
            tokens = {}
            for name in USERS_:
                async with http.post(base + "/auth/token", json={"user": name, "password": f"{name}-password"}) as r:
                    tokens[name] = (await r.json())["token"]
            yield Api(base, rt, http, tokens)
        await rt.ctx[PREPAID].supply.idle()


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The server with an operator's statement template that fails to render."""
    async with serve(tmp_path, monkeypatch, broken_statement=True) as api:
        yield api


@pytest.fixture
async def clean_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The server with the built-in print templates."""
    async with serve(tmp_path, monkeypatch, broken_statement=False) as api:
        yield api


async def open_shop(api: Api, opened: dt.datetime) -> None:
    status, body = await api.call("POST", "/tariffs", "engineer", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                                  "definition": {"price": "0.50"}, "effective_from": "2026-01-01T00:00:00+08:00"})
    assert status == 201, body
    status, body = await api.call("POST", "/rooms/R1/account/open", "cashier", {
        "tariffs": {"electricity": "FLAT"}, "opening_balance": "0", "mode": "postpaid",
        "contact": {"name": "张三", "language": "zh-CN"}})
    assert status == 201 and body["mode"] == "postpaid", body
    async with api.rt.ctx[DATABASE].transaction() as s:
        await s.execute(update(Account).where(Account.open_room_id == "R1").values(opened_at=opened.astimezone(dt.UTC)))


def last_month() -> tuple[str, dt.datetime]:
    first = dt.datetime.now(TZ8).date().replace(day=1)
    prev = (first - dt.timedelta(days=1)).replace(day=1)
    return f"{prev:%Y-%m}", dt.datetime.combine(prev, dt.time(0), TZ8)


async def test_charges_run_bills_payments_statements(api: Api) -> None:
    period, start = last_month()
    await open_shop(api, start)
    status, err = await api.call("POST", "/charges", "viewer", {})
    assert status == 403
    status, rent = await api.call("POST", "/charges", "cashier", {
        "name": "房租 Rent", "kind": "fixed", "amount": "1200.00", "period": "monthly", "targets": {"rooms": ["R1"]},
        "settle": "on_bill", "tax_rate": "0.09", "start": start.date().isoformat()})
    assert status == 201 and rent["amount"] == "1200" and rent["targets"] == {"rooms": ["R1"]}, rent
    status, customer = await api.call("POST", "/customers", "cashier", {"name": "Demo Trading", "kind": "company", "rooms": ["R1"]})
    assert status == 201 and customer["rooms"] == ["R1"], customer
    entries = await api.count(LedgerEntry)
    # preview: the bills as they would be, nothing posted or issued
    status, preview = await api.call("POST", "/billing/runs", "cashier", {"period": period, "preview": True})
    assert status == 200 and preview["preview"] and preview["bills"][0]["total_due"] == "1200.00", preview
    assert await api.count(LedgerEntry) == entries and await api.count(Bill) == 0
    status, run = await api.call("POST", "/billing/runs", "cashier", {"period": period})
    assert status == 200 and run["issued"] == 1 and run["posted"] == 1, run
    bill = run["bills"][0]
    assert bill["lines"] == preview["bills"][0]["lines"]
    assert (bill["total"], bill["closing_balance"], bill["total_due"], bill["tax"], bill["status"]) == ("1200.00", "-1200.00", "1200.00", "99.08", "issued")
    # the same month again: the bill already issued, nothing posted
    status, again = await api.call("POST", "/billing/runs", "cashier", {"period": period})
    assert again["issued"] == 0 and again["posted"] == 0 and [b["id"] for b in again["bills"]] == [bill["id"]]
    assert await api.count(LedgerEntry) == entries + 1
    status, found = await api.call("GET", f"/bills?room=R1&period={period}", "viewer")
    assert status == 200 and [b["number"] for b in found["bills"]] == [bill["number"]]
    # printable: HTML and PDF in the bill's language (the customer's: zh-CN)
    status, html = await api.call("GET", f"/bills/{bill['id']}?format=html", "viewer")
    assert status == 200 and "账单" in html.decode() and "1,200.00" in html.decode()
    async with api.http.get(api.base + f"/bills/{bill['id']}?format=html", headers={"Authorization": f"Bearer {api.tokens['viewer']}"}) as r:
        assert "script-src" not in r.headers["Content-Security-Policy"] and "default-src 'none'" in r.headers["Content-Security-Policy"]
    status, pdf = await api.call("GET", f"/bills/{bill['id']}?format=pdf", "viewer")
    assert status == 200 and pdf[:5] == b"%PDF-"
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "账单" in text and "1,200.00" in text and bill["number"] in text and "房租" in text, text
    status, en = await api.call("GET", f"/bills/{bill['id']}?format=pdf&lang=en", "viewer")
    assert "Bill" in "".join(p.extract_text() for p in PdfReader(io.BytesIO(en)).pages)
    # payments: idempotent by reference, allocated, status follows
    status, paid = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "200.00", "reference": "BANK-1", "channel": "bank"})
    assert status == 200 and paid["bill"]["status"] == "partly_paid" and paid["bill"]["outstanding"] == "1000.00", paid
    status, replay = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "200.00", "reference": "BANK-1", "channel": "bank"})
    assert status == 200 and replay["replayed"] and replay["bill"]["paid"] == "200.00"
    status, err = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "300.00", "reference": "BANK-1", "channel": "bank"})
    assert status == 409 and err["field"] == "reference"
    status, err = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "1000.01", "reference": "BANK-2", "channel": "bank"})
    assert status == 422 and err["field"] == "amount"
    status, paid = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "1000.00", "reference": "BANK-3", "channel": "bank"})
    assert paid["bill"]["status"] == "paid" and [p["reference"] for p in paid["bill"]["payments"]] == ["BANK-1", "BANK-3"]
    # the statement of the whole time: opening + entries = closing = the ledger's balance
    status, st = await api.call("GET", f"/rooms/R1/account/statement?from={start.date().isoformat()}", "viewer")
    assert status == 200, st
    total = sum(Decimal(e["amount"]) for e in st["entries"])
    assert Decimal(st["opening_balance"]) + total == Decimal(st["closing_balance"]) == Decimal("0.00")
    assert [e["kind"] for e in st["entries"]] == ["charge", "opening", "payment", "payment"]
    status, text_csv = await api.call("GET", f"/rooms/R1/account/statement?from={start.date().isoformat()}&format=csv", "viewer")
    assert status == 200 and text_csv.decode().splitlines()[0] == "ts,kind,description,amount,balance,reference"
    status, xlsx = await api.call("GET", f"/rooms/R1/account/statement?from={start.date().isoformat()}&format=xlsx", "viewer")
    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert ["-1200.00", "200.00", "1000.00"] == [r[5] for r in values if r[5] is not None and r[1] in ("charge", "payment")]
    # the operator's statement template is broken: a 422 naming the template, never half a PDF
    status, err = await api.call("GET", f"/rooms/R1/account/statement?from={start.date().isoformat()}&format=pdf", "viewer")
    assert status == 422 and err["field"] == "template" and "statement.html" in err["error"], err
    status, arrears = await api.call("GET", "/arrears", "viewer")
    assert status == 200 and arrears["totals"]["total"] == "0.00"
    status, cst = await api.call("GET", f"/customers/{customer['id']}/statement?from={start.date().isoformat()}", "viewer")
    assert status == 200 and [a["room"] for a in cst["accounts"]] == ["R1"] and cst["closing_balance"] == "0.00", cst


async def test_adjustment_needs_a_second_user(api: Api) -> None:
    """The supervisor who drafted it gets a 403 and nothing is posted; another supervisor approves."""
    await open_shop(api, dt.datetime(2026, 6, 1, tzinfo=TZ8))
    engine = api.rt.ctx[PREPAID]
    for value, hour in (("1000", 0), ("1080", 10)):
        async with engine._lock, api.rt.ctx[DATABASE].transaction() as s:
            await engine.biller.bill(s, [Reading("E1", Decimal(value), dt.datetime(2026, 6, 10, hour, tzinfo=TZ8))], dt.datetime.now(dt.UTC))
    status, v = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {"definition": {"price": "0.55"}, "effective_from": "2026-06-01T00:00:00+08:00"})
    assert status == 422 and v["field"] == "effective_from"  # in the past: only as a retroactive version
    status, v = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {
        "definition": {"price": "0.55"}, "effective_from": "2026-06-01T00:00:00+08:00", "retroactive": True, "reason": "price notice"})
    assert status == 201 and v["version"] == 2, v
    body = {"tariff": "FLAT", "version": 2, "from": "2026-06-01T00:00:00+08:00", "to": "2026-07-01T00:00:00+08:00", "rooms": ["R1"]}
    status, draft = await api.call("POST", "/adjustments", "super1", body)
    assert status == 201 and draft["state"] == "draft", draft
    assert draft["accounts"] == [{**draft["accounts"][0], "charged": "40.00", "repriced": "44.00", "difference": "4.00"}]
    entries = await api.count(LedgerEntry)
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/approve", "super1", {})
    assert status == 403 and "four-eyes" in err["error"]
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/approve", "cashier", {})
    assert status == 403 and "may not approve" in err["error"]
    assert await api.count(LedgerEntry) == entries
    status, got = await api.call("GET", f"/adjustments/{draft['id']}", "viewer")
    assert got["state"] == "draft"
    status, ok = await api.call("POST", f"/adjustments/{draft['id']}/approve", "super2", {"reason": "checked"})
    assert status == 200 and ok["state"] == "approved" and ok["accounts"][0]["entry"] is not None, ok
    status, acct = await api.call("GET", "/rooms/R1/account", "viewer")
    assert acct["balance"] == "-44.00"
    status, arrears = await api.call("GET", "/arrears", "viewer")
    assert [(a["room"], a["total"], a["buckets"]["0-30"]) for a in arrears["accounts"]] == [("R1", "44.00", "44.00")]
    # the refused approvals change nothing and the audit keeps the draft and the approval
    rows = await audit_rows(api, "adjustment.")
    assert [(r.action, r.actor) for r in rows] == [("adjustment.draft", "super1"), ("adjustment.approve", "super2")]
    assert rows[1].reason == "checked" and rows[1].before == {"state": "draft", "author": "super1"}
    assert rows[1].after["posted_accounts"] == [ok["accounts"][0]["account"]] and rows[1].after["difference"] == "4.00"


async def test_bad_input_is_refused_naming_the_field_and_posts_nothing(api: Api) -> None:
    await open_shop(api, dt.datetime(2026, 6, 1, tzinfo=TZ8))
    entries, bills = await api.count(LedgerEntry), await api.count(Bill)
    future = (dt.datetime.now(TZ8).date().replace(day=1) + dt.timedelta(days=40)).strftime("%Y-%m")
    cases = [
        ("POST", "/billing/runs", {"period": future}, 422, "period"),
        ("POST", "/billing/runs", {"period": "2026-13"}, 422, "period"),
        ("POST", "/billing/runs", {"period": "2026-06", "rooms": ["R1", "NOPE"]}, 422, "rooms[1]"),
        ("POST", "/charges", {"name": "Fee", "kind": "fixed", "amount": "10", "period": "monthly", "targets": {"rooms": ["NOPE"]},
                              "settle": "on_bill"}, 422, "targets.rooms[0]"),
        ("POST", "/charges", {"name": "Fee", "kind": "fixed", "amount": "10", "period": "monthly", "targets": "all",
                              "settle": "on_bill", "tax_rate": "-0.09"}, 422, "tax_rate"),
        ("POST", "/charges", {"name": "Fee", "kind": "fixed", "amount": "-10", "period": "monthly", "targets": "all", "settle": "on_bill"}, 422, "amount"),
        ("POST", "/charges", {"name": "Fee", "kind": "per_area", "amount": "3", "period": "monthly", "targets": {"rooms": ["R2"]},
                              "settle": "on_bill"}, 422, "targets"),
        ("POST", "/adjustments", {"tariff": "FLAT", "version": 1, "from": "2026-05-01T00:00:00+08:00", "to": "2026-06-15T00:00:00+08:00",
                                  "rooms": ["R1"]}, 422, "from"),
        ("POST", "/adjustments", {"tariff": "FLAT", "version": 9, "from": "2026-06-01T00:00:00+08:00", "to": "2026-06-15T00:00:00+08:00"}, 422, "version"),
        ("POST", "/adjustments", {"tariff": "NOPE", "version": 1, "from": "2026-06-01T00:00:00+08:00", "to": "2026-06-15T00:00:00+08:00"}, 422, "tariff"),
        ("POST", "/adjustments", {"tariff": "FLAT", "version": 1, "from": "2026-06-01T00:00:00", "to": "2026-06-15T00:00:00+08:00"}, 422, "from"),
        ("POST", "/customers", {"name": "X", "rooms": ["NOPE"]}, 422, "rooms[0]"),
        ("POST", "/rooms/R1/account/billing", {"late_fee_rate": "-0.001"}, 422, "late_fee_rate"),
        ("POST", "/bills/999/payments", {"amount": "1", "reference": "x"}, 404, None),
    ]
    for method, path, body, status_want, field in cases:
        status, err = await api.call(method, path, "super1", body)
        assert status == status_want and err.get("field") == field, (path, body, err)
    status, err = await api.call("GET", "/rooms/NOPE/account/statement?from=2026-06-01", "viewer")
    assert status == 404 and "no room" in err["error"]
    status, err = await api.call("GET", "/rooms/R1/account/statement?from=yesterday", "viewer")
    assert status == 422 and err["field"] == "from"
    assert (await api.count(LedgerEntry), await api.count(Bill)) == (entries, bills)


async def audit_rows(api: Api, prefix: str) -> list[AuditEntry]:
    """The audit rows whose action starts with ``prefix``, oldest first."""
    async with api.rt.ctx[DATABASE].sessions() as s:
        return list((await s.scalars(select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id))).all())


def pdf_text(raw: bytes) -> str:
    from pypdf import PdfReader

    assert raw[:5] == b"%PDF-", raw[:80]
    return "".join(p.extract_text() for p in PdfReader(io.BytesIO(raw)).pages)


async def open_r2(api: Api, opened: dt.datetime, language: str) -> None:
    """A postpaid account for R2 (electricity on FLAT, which must exist; water on a tariff of its
    own), opened at ``opened``."""
    status, body = await api.call("POST", "/tariffs", "engineer", {"id": "WATER", "name": "Water", "commodity": "water",
                                                                  "definition": {"price": "3.00"}, "effective_from": "2026-01-01T00:00:00+08:00"})
    assert status == 201, body
    room = "R2"
    status, body = await api.call("POST", f"/rooms/{room}/account/open", "cashier", {
        "tariffs": {"electricity": "FLAT", "water": "WATER"}, "opening_balance": "0", "mode": "postpaid",
        "contact": {"name": f"tenant {room}", "language": language}})
    assert status == 201, body
    async with api.rt.ctx[DATABASE].transaction() as s:
        await s.execute(update(Account).where(Account.open_room_id == room).values(opened_at=opened.astimezone(dt.UTC)))


async def test_charge_rules_for_a_floor_and_a_building_listed_and_ended_over_http(api: Api) -> None:
    """Rules for the floor B-F1 and the building B are kept as given and listed; ending one
    (DELETE) sets its end, refuses the wrong user, an unknown rule, a past date and the same end
    twice; creating and ending are audited."""
    tomorrow = dt.datetime.now(TZ8).date() + dt.timedelta(days=1)
    base = {"kind": "fixed", "amount": "80.00", "period": "monthly", "settle": "on_bill"}
    status, floor = await api.call("POST", "/charges", "cashier", {**base, "name": "Cleaning", "targets": {"floor": "B-F1"}})
    assert status == 201 and floor["targets"] == {"floor": "B-F1"}, floor
    status, building = await api.call("POST", "/charges", "cashier", {**base, "name": "Security", "targets": {"building": "B"}})
    assert status == 201 and building["targets"] == {"building": "B"}, building
    for targets, field in (({"floor": "B-F9"}, "targets.floor"), ({"building": "NOPE"}, "targets.building"),
                           ({"floor": "B-F1", "building": "B"}, "targets"), ({"wing": "W"}, "targets.wing")):
        status, err = await api.call("POST", "/charges", "cashier", {**base, "name": "X", "targets": targets})
        assert status == 422 and err["field"] == field, (targets, err)
    status, listed = await api.call("GET", "/charges", "viewer")
    assert status == 200 and [(r["id"], r["name"], r["targets"], r["end"]) for r in listed["charges"]] == [
        (floor["id"], "Cleaning", {"floor": "B-F1"}, None), (building["id"], "Security", {"building": "B"}, None)]

    status, err = await api.call("DELETE", f"/charges/{floor['id']}", "viewer", {"end": tomorrow.isoformat()})
    assert status == 403
    status, err = await api.call("DELETE", "/charges/9999", "cashier", {"end": tomorrow.isoformat()})
    assert status == 404
    status, err = await api.call("DELETE", f"/charges/{floor['id']}", "cashier", {"end": "2020-01-01"})
    assert status == 422 and err["field"] == "end", err
    status, ended = await api.call("DELETE", f"/charges/{floor['id']}", "cashier", {"end": tomorrow.isoformat(), "reason": "contract ends"})
    assert status == 200 and ended["end"] == tomorrow.isoformat() and ended["ended_by"] == "cashier", ended
    status, err = await api.call("DELETE", f"/charges/{floor['id']}", "cashier", {"end": tomorrow.isoformat()})
    assert status == 409 and err["field"] == "end", err
    status, listed = await api.call("GET", "/charges", "viewer")
    assert [(r["name"], r["end"], r["ended_by"]) for r in listed["charges"]] == [
        ("Cleaning", tomorrow.isoformat(), "cashier"), ("Security", None, None)]

    rows = await audit_rows(api, "charge_rule.")
    assert [(r.action, r.target_type, r.target_id, r.actor) for r in rows] == [
        ("charge_rule.create", "charge_rule", str(floor["id"]), "cashier"),
        ("charge_rule.create", "charge_rule", str(building["id"]), "cashier"),
        ("charge_rule.end", "charge_rule", str(floor["id"]), "cashier"),
    ]
    assert rows[0].after["targets"] == {"floor": "B-F1"} and rows[1].after["targets"] == {"building": "B"}
    assert rows[2].reason == "contract ends" and rows[2].before["end"] is None and rows[2].after["end"] == tomorrow.isoformat()


async def test_bill_list_filters_by_customer_and_status_and_runs_are_audited(api: Api) -> None:
    """R1 (held by a customer) and R2 (no customer) each get a bill for the rent of last month
    (300.00 on the bill, for the whole building); R1's is paid. ?customer= finds R1's bill only,
    ?status= each by its status; the run and each bill issued are audited."""
    period, start = last_month()
    await open_shop(api, start)
    await open_r2(api, start, "en")
    status, rule = await api.call("POST", "/charges", "cashier", {
        "name": "Rent", "kind": "fixed", "amount": "300.00", "period": "monthly", "targets": {"building": "B"},
        "settle": "on_bill", "start": start.date().isoformat()})
    assert status == 201, rule
    status, customer = await api.call("POST", "/customers", "cashier", {"name": "Tea House", "rooms": ["R1"]})
    assert status == 201, customer
    status, run = await api.call("POST", "/billing/runs", "cashier", {"period": period})
    assert status == 200 and run["issued"] == 2 and run["posted"] == 2, run
    by_room = {b["accounts"][0]["room"] if b.get("accounts") else b["room"]: b for b in run["bills"]}
    r1, r2 = by_room["R1"], by_room["R2"]
    assert (r1["total_due"], r2["total_due"]) == ("300.00", "300.00")
    status, paid = await api.call("POST", f"/bills/{r1['id']}/payments", "cashier", {"amount": "300.00", "reference": "T-1"})
    assert status == 200 and paid["bill"]["status"] == "paid", paid

    async def numbers(query: str) -> list[str]:
        status, found = await api.call("GET", f"/bills?{query}", "viewer")
        assert status == 200, (query, found)
        return [b["number"] for b in found["bills"]]

    assert await numbers(f"customer={customer['id']}") == [r1["number"]]
    assert await numbers(f"customer={customer['id'] + 1}") == []
    assert await numbers("status=paid") == [r1["number"]]
    assert await numbers("status=issued") == [r2["number"]]
    assert await numbers(f"customer={customer['id']}&status=issued") == []
    assert await numbers(f"status=issued&period={period}&room=R2") == [r2["number"]]
    assert sorted(await numbers("")) == sorted([r1["number"], r2["number"]])
    for query, field in (("status=lost", "status"), ("customer=abc", "customer"), ("period=2026-1", "period")):
        status, err = await api.call("GET", f"/bills?{query}", "viewer")
        assert status == 422 and err["field"] == field, (query, err)

    [run_row] = await audit_rows(api, "billing.run")
    assert (run_row.actor, run_row.target_type, run_row.after["period"], run_row.after["bills"], run_row.after["posted"]) == (
        "cashier", "billing_run", period, 2, 2)
    issued = await audit_rows(api, "bill.issue")
    assert sorted((r.target_id, r.after["number"], r.after["total_due"], tuple(r.after["rooms"])) for r in issued) == sorted(
        [(str(r1["id"]), r1["number"], "300.00", ("R1",)), (str(r2["id"]), r2["number"], "300.00", ("R2",))])
    # the same period again issues nothing, and audits no bill
    status, again = await api.call("POST", "/billing/runs", "cashier", {"period": period})
    assert status == 200 and again["issued"] == 0 and len(await audit_rows(api, "bill.issue")) == 2


async def test_statement_pdf_in_chinese_and_english_with_the_account_s_numbers(clean_api: Api) -> None:
    """R1 (contact zh-CN) is billed 1,200.00 rent for last month and pays 200.00: its statement
    as a PDF is in Chinese, opening 0.00, the charge −1,200.00 to −1,200.00, the payment 200.00
    to −1,000.00, closing −1,000.00; ?lang=en gives the same numbers in English."""
    api = clean_api
    period, start = last_month()
    await open_shop(api, start)
    status, rule = await api.call("POST", "/charges", "cashier", {
        "name": "Rent", "kind": "fixed", "amount": "1200.00", "period": "monthly", "targets": {"rooms": ["R1"]},
        "settle": "on_bill", "start": start.date().isoformat()})
    assert status == 201, rule
    status, run = await api.call("POST", "/billing/runs", "cashier", {"period": period})
    bill = run["bills"][0]
    status, paid = await api.call("POST", f"/bills/{bill['id']}/payments", "cashier", {"amount": "200.00", "reference": "P-1"})
    assert status == 200, paid
    query = f"/rooms/R1/account/statement?from={start.date().isoformat()}"
    status, st = await api.call("GET", query, "viewer")
    assert (st["opening_balance"], [e["amount"] for e in st["entries"]], st["closing_balance"]) == (
        "0.00", ["-1200.00", "0.00", "200.00"], "-1000.00"), st
    status, raw = await api.call("GET", query + "&format=pdf", "viewer")
    assert status == 200, raw
    zh = pdf_text(raw)
    assert "对账单" in zh and "期初余额" in zh and "期末余额" in zh and "Statement" not in zh, zh
    for number in ("R1", "-1,200.00", "200.00", "-1,000.00", "0.00", f"Rent {period}"):
        assert number in zh, (number, zh)
    status, raw = await api.call("GET", query + "&format=pdf&lang=en", "viewer")
    en = pdf_text(raw)
    assert "Statement" in en and "Opening balance" in en and "Closing balance" in en and "对账单" not in en, en
    for number in ("R1", "-1,200.00", "200.00", "-1,000.00", f"Rent {period}"):
        assert number in en, (number, en)
    status, err = await api.call("GET", query + "&format=pdf&lang=fr", "viewer")
    assert status == 422 and err["field"] == "lang"


async def test_a_rejected_adjustment_posts_nothing_and_every_step_is_audited(api: Api) -> None:
    """A retroactive version (0.50 → 0.55 for June) drafted by super1 for R1's 80 kWh (+4.00) is
    rejected by super2 with a reason: nothing is posted, it can no longer be approved, and the
    draft and the rejection are audited with their users."""
    await open_shop(api, dt.datetime(2026, 6, 1, tzinfo=TZ8))
    engine = api.rt.ctx[PREPAID]
    for value, hour in (("1000", 0), ("1080", 10)):
        async with engine._lock, api.rt.ctx[DATABASE].transaction() as s:
            await engine.biller.bill(s, [Reading("E1", Decimal(value), dt.datetime(2026, 6, 10, hour, tzinfo=TZ8))], dt.datetime.now(dt.UTC))
    status, v = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {
        "definition": {"price": "0.55"}, "effective_from": "2026-06-01T00:00:00+08:00", "retroactive": True, "reason": "price notice"})
    assert status == 201, v
    body = {"tariff": "FLAT", "version": 2, "from": "2026-06-01T00:00:00+08:00", "to": "2026-07-01T00:00:00+08:00", "rooms": ["R1"],
            "reason": "notice 2026-17"}
    status, draft = await api.call("POST", "/adjustments", "super1", body)
    assert status == 201 and draft["total"]["difference"] == "4.00", draft
    entries = await api.count(LedgerEntry)
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/reject", "super2", {})
    assert status == 422 and err["field"] == "reason", err
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/reject", "cashier", {"reason": "no"})
    assert status == 403
    status, rejected = await api.call("POST", f"/adjustments/{draft['id']}/reject", "super2", {"reason": "the notice was withdrawn"})
    assert status == 200 and rejected["state"] == "rejected", rejected
    assert all(a["entry"] is None for a in rejected["accounts"])
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/approve", "super2", {})
    assert status == 409, err
    status, err = await api.call("POST", f"/adjustments/{draft['id']}/reject", "super2", {"reason": "again"})
    assert status == 409, err
    assert await api.count(LedgerEntry) == entries
    status, acct = await api.call("GET", "/rooms/R1/account", "viewer")
    assert acct["balance"] == "-40.00"
    status, listed = await api.call("GET", "/adjustments?state=rejected", "viewer")
    assert [a["id"] for a in listed["adjustments"]] == [draft["id"]]
    status, listed = await api.call("GET", "/adjustments?state=draft", "viewer")
    assert listed["adjustments"] == []
    rows = await audit_rows(api, "adjustment.")
    assert [(r.action, r.actor, r.target_id) for r in rows] == [
        ("adjustment.draft", "super1", str(draft["id"])), ("adjustment.reject", "super2", str(draft["id"]))]
    assert rows[0].reason == "notice 2026-17" and rows[0].after["difference"] == "4.00" and rows[0].after["tariff"] == "FLAT"
    assert rows[1].reason == "the notice was withdrawn" and (rows[1].before, rows[1].after) == ({"state": "draft"}, {"state": "rejected"})


async def test_a_statement_is_in_the_customer_s_language(clean_api: Api) -> None:
    """R2's contact reads English but its customer is Chinese: the statement (PDF and XLSX), like
    the customer's bills, is in Chinese; R1, with a Chinese contact and no customer, too; once R1
    belongs to an English customer, its statement is in English."""
    api = clean_api
    _, start = last_month()
    await open_shop(api, start)  # contact zh-CN
    await open_r2(api, start, "en")
    status, zh_customer = await api.call("POST", "/customers", "cashier", {"name": "王记", "language": "zh-CN", "rooms": ["R2"]})
    assert status == 201, zh_customer
    query = f"/account/statement?from={start.date().isoformat()}"

    async def language(room: str) -> str:
        status, raw = await api.call("GET", f"/rooms/{room}{query}&format=pdf", "viewer")
        assert status == 200, raw
        text = pdf_text(raw)
        assert room in text
        return "zh-CN" if "对账单" in text else "en" if "Statement" in text else "?"

    async def sheet(room: str) -> str:
        import openpyxl

        status, raw = await api.call("GET", f"/rooms/{room}{query}&format=xlsx", "viewer")
        assert status == 200, raw
        return str(openpyxl.load_workbook(io.BytesIO(raw)).sheetnames[0])

    assert (await language("R2"), await sheet("R2")) == ("zh-CN", "对账单")
    assert (await language("R1"), await sheet("R1")) == ("zh-CN", "对账单")
    status, en_customer = await api.call("POST", "/customers", "cashier", {"name": "Oak Ltd", "language": "en", "rooms": ["R1"]})
    assert status == 201, en_customer
    assert (await language("R1"), await sheet("R1")) == ("en", "Statement")
    # ?lang= still chooses
    status, raw = await api.call("GET", f"/rooms/R1{query}&format=pdf&lang=zh-CN", "viewer")
    assert "对账单" in pdf_text(raw)
