"""A tenant reads their own bills and statement on the portal: a postpaid shop (R1) whose tenant
moved in at the start of last month is billed its rent by last month's run and pays part of it
at the cashier; signed in with their PIN, the tenant finds that bill on their account page and
through their API scope (as JSON, HTML and PDF, as the operator's side shows it) and their
statement (JSON and CSV) with the bill's charge and the payment; the other tenant (R2) sees
none of it, not even through their own account's path. In Chromium at a phone's sizes the
account page with its bill passes the WCAG 2.1 AA audit, without sideways scrolling and with
touch targets of 44 px."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import update

from scada.db.component import DATABASE
from scada.prepaid.models import Account

from .axe import PHONE, audit, overflow, small_targets, violations_text
from .browser import Shots
from .payments_site import Site, payment_site
from .test_tenant_browser import browser as chromium_browser  # noqa: F401 - fixture
from .test_tenant_browser import pin_sign_in
from .test_tenant_portal import pin_login

TZ8 = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with payment_site(tmp_path_factory.mktemp("tenant-bills"), postpaid=("R1",)) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def last_month() -> tuple[str, dt.date]:
    first = dt.datetime.now(TZ8).date().replace(day=1)
    prev = (first - dt.timedelta(days=1)).replace(day=1)
    return f"{prev:%Y-%m}", prev


async def issue_last_months_bill(site: Site, http: aiohttp.ClientSession) -> dict[str, Any]:
    """R1's tenant moved in on the first of last month; the rent (on the bill) is billed by that month's run."""
    period, first = last_month()
    moved_in = dt.datetime.combine(first, dt.time(0), TZ8).astimezone(dt.UTC)
    db = site.srv.rt.ctx[DATABASE]  # type: ignore[union-attr]

    async def move_in() -> None:
        async with db.transaction() as s:
            await s.execute(update(Account).where(Account.open_room_id == "R1").values(opened_at=moved_in))

    await site.srv.run(move_in)
    status, rule = await site.call(http, "POST", "/charges", "admin", {
        "name": "Rent", "kind": "fixed", "amount": "800.00", "period": "monthly", "targets": {"rooms": ["R1"]},
        "settle": "on_bill", "start": first.isoformat()})
    assert status == 201, rule
    status, run = await site.call(http, "POST", "/billing/runs", "admin", {"period": period})
    assert status == 200 and run["issued"] == 1, run
    bill = run["bills"][0]
    assert (bill["total_due"], bill["status"], [a["account"] for a in bill["accounts"]]) == ("800.00", "issued", [site.accounts["R1"]])
    status, paid = await site.call(http, "POST", f"/bills/{bill['id']}/payments", "cashier",
                                   {"amount": "300.00", "reference": "CASH-1", "channel": "cash"})
    assert status == 200 and paid["bill"]["status"] == "partly_paid", paid
    return paid["bill"]  # type: ignore[no-any-return]


async def test_a_tenant_reads_their_own_bills_and_statement(site: Site, browser: aiohttp.ClientSession) -> None:
    async with aiohttp.ClientSession() as operator:
        bill = await issue_last_months_bill(site, operator)
        status, operators_view = await site.call(operator, "GET", f"/bills/{bill['id']}", "admin")
        assert status == 200, operators_view
    mine = site.accounts["R1"]
    status, page = await pin_login(site, browser, "R1")
    assert status == 200
    # the account page lists the bill with links to it
    assert bill["number"] in page and f"/api/v1/tenant/accounts/{mine}/bills/{bill['id']}?format=pdf" in page
    base = site.api + f"/tenant/accounts/{mine}"
    async with browser.get(base + "/bills") as r:
        listed = await r.json()
        assert r.status == 200, listed
    assert [(b["id"], b["number"], b["status"], b["total_due"], b["outstanding"]) for b in listed["bills"]] == [
        (bill["id"], bill["number"], "partly_paid", "800.00", "500.00")]
    async with browser.get(base + f"/bills/{bill['id']}") as r:
        one = await r.json()
        assert r.status == 200, one
    assert one == operators_view
    async with browser.get(base + f"/bills/{bill['id']}?format=html") as r:
        html = await r.text()
        assert r.status == 200 and r.content_type == "text/html", html
    assert bill["number"] in html and "800.00" in html and "账单" in html  # R1's tenant reads Chinese
    async with browser.get(base + f"/bills/{bill['id']}?format=pdf") as r:
        pdf = await r.read()
        assert r.status == 200 and pdf[:5] == b"%PDF-", pdf[:200]
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert bill["number"] in text and "800.00" in text, text
    # the statement since the move-in: the bill's rent, the payment, and a closing balance that adds up
    _, first = last_month()
    async with browser.get(base + f"/statement?from={first.isoformat()}") as r:
        st = await r.json()
        assert r.status == 200, st
    assert st["account"] == mine and st["room"] == "R1"
    assert [(e["kind"], e["amount"]) for e in st["entries"] if e["kind"] in ("charge", "payment")] == [("charge", "-800.00"), ("payment", "300.00")]
    assert Decimal(st["opening_balance"]) + sum(Decimal(e["amount"]) for e in st["entries"]) == Decimal(st["closing_balance"]) == Decimal("-500.00")
    async with browser.get(base + f"/statement?from={first.isoformat()}&format=csv") as r:
        csv = await r.text()
        assert r.status == 200 and r.content_type == "text/csv", csv
    lines = csv.splitlines()
    assert lines[0] == "ts,kind,description,amount,balance,reference"
    assert any(",charge," in ln and "-800.00" in ln for ln in lines) and any(",payment," in ln and "CASH-1" in ln for ln in lines), csv
    # the portal's statement form: dates, and a PDF (or the CSV above)
    today = dt.datetime.now(TZ8).date()
    async with browser.get(base + f"/statement?from={first.isoformat()}&to={today.isoformat()}&format=pdf") as r:
        statement_pdf = await r.read()
        assert r.status == 200 and statement_pdf[:5] == b"%PDF-", statement_pdf[:200]
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(statement_pdf)).pages)
    assert "-800.00" in text and "300.00" in text and "-500.00" in text, text
    for bad, field in (("?format=xlsx", "format"), ("?from=yesterday", "from")):
        async with browser.get(base + "/statement" + bad) as r:
            err = await r.json()
            assert r.status == 422 and err["field"] == field, err


async def test_the_other_tenant_sees_none_of_those_bills(site: Site, browser: aiohttp.ClientSession) -> None:
    async with aiohttp.ClientSession() as operator:
        status, found = await site.call(operator, "GET", "/bills?room=R1", "admin")
        assert status == 200, found
        bills = found["bills"] or [await issue_last_months_bill(site, operator)]
    status, _ = await pin_login(site, browser, "R2")
    assert status == 200
    theirs = site.api + f"/tenant/accounts/{site.accounts['R2']}"
    async with browser.get(theirs + "/bills") as r:
        assert r.status == 200 and (await r.json())["bills"] == []
    for b in bills:
        for url in (theirs + f"/bills/{b['id']}", site.api + f"/tenant/accounts/{site.accounts['R1']}/bills/{b['id']}",
                    theirs + f"/bills/{b['id']}?format=pdf"):
            async with browser.get(url) as r:
                assert r.status == 404, (url, await r.text())
    async with browser.get(site.url + f"/tenant/accounts/{site.accounts['R2']}") as r:
        page = await r.text()
        assert r.status == 200 and all(str(b["number"]) not in page for b in bills)


async def test_the_account_page_with_a_bill_passes_the_audit_at_phone_sizes(site: Site, chromium_browser: Browser,  # noqa: F811
                                                                           request: pytest.FixtureRequest) -> None:
    async with aiohttp.ClientSession() as operator:
        status, found = await site.call(operator, "GET", "/bills?room=R1", "admin")
        assert status == 200, found
        bills = found["bills"] or [await issue_last_months_bill(site, operator)]
    shots = Shots(request.node.name)
    problems: dict[str, list[dict[str, object]]] = {}
    layout: dict[str, object] = {}
    for name, viewport in (("phone", PHONE), ("narrow", {"width": 360, "height": 740})):
        context = await chromium_browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        page = await context.new_page()
        try:
            await pin_sign_in(page, site, "R1")
            bill_link = page.get_by_role("link", name="PDF")
            await expect(bill_link).to_have_attribute("href", re.compile(f"/bills/{bills[0]['id']}\\?format=pdf$"))
            problems[name] = await audit(page)
            layout[name] = {"overflow": await overflow(page), "small": await small_targets(page)}
            await shots(page, f"{name}-account-with-bill")
        finally:
            await context.close()
    assert not {k: v for k, v in problems.items() if v}, violations_text(problems)
    assert all(v == {"overflow": 0, "small": []} for v in layout.values()), layout
