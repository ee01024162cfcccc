"""The back office in a real browser (headless Chromium): a charge rule, a billing run (preview,
then issue), a bill paid at its page, a statement and the arrears; an adjustment drafted by one
supervisor and approved by another. Screenshots under build/artifacts/hmi/<test>/."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import update

from scada.db.component import DATABASE
from scada.prepaid.models import Account
from scada.users.audit import Actor
from scada.users.component import USERS

from ..services import require_services
from .browser import CHROMIUM, Shots, chromium
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, open_accounts

pytestmark = pytest.mark.browser

TZ8 = dt.timezone(dt.timedelta(hours=8))
SUPERS = {"super1": PASSWORDS["super1"], "super2": "supervisor-two-pw"}  # super1 comes with the fixture


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if require_services():
            pytest.fail(f"required test browser missing: {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    async with chromium() as b:
        yield b


async def sign_in(page: Page, hmi: Hmi, user: str, password: str) -> None:
    await page.goto(hmi.url + "/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(hmi.url + "/")


async def test_charges_run_pay_statement_arrears_and_an_approved_adjustment(hmi: Hmi, browser: Browser, request: pytest.FixtureRequest) -> None:
    shots = Shots(request.node.name)
    await hmi.rt.ctx[USERS].add("super2", "supervisor", SUPERS["super2"], Actor("test", "cli"))
    await open_accounts(hmi, {"B1-R101": "0.00"})
    first = dt.datetime.now(TZ8).date().replace(day=1)
    last_month = (first - dt.timedelta(days=1)).replace(day=1)
    async with hmi.rt.ctx[DATABASE].transaction() as s:  # the tenant moved in on the 1st of last month
        await s.execute(update(Account).where(Account.open_room_id == "B1-R101")
                        .values(opened_at=dt.datetime.combine(last_month, dt.time(0), TZ8).astimezone(dt.UTC)))
    page = await browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai")
    try:
        await sign_in(page, hmi, "cashier1", PASSWORDS["cashier1"])
        # a property fee of 3.50 per m² a month, on the bill: B1-R101 has 32.0 m² → 112.00
        await page.get_by_role("link", name="Charges").click()
        form = page.locator("#new-charge")
        await form.get_by_label("Name").fill("Property fee")
        await form.get_by_label("Kind").select_option("per_area")
        await form.get_by_label("Amount").fill("3.50")
        await form.get_by_label("Settled").select_option("on_bill")
        await form.locator('select[name="target_kind"]').select_option("rooms")
        await form.get_by_label("Rooms, floor or building").fill("B1-R101")
        await form.get_by_label("From", exact=True).fill(last_month.isoformat())
        await form.get_by_role("button", name="Create rule").click()
        await expect(page.locator("#charges tbody tr")).to_have_count(1)
        await expect(page.locator("#charges tbody tr").first).to_contain_text("Property fee")
        await shots(page, "charge-rule")
        # a billing run: preview (nothing posted), then issue
        await page.get_by_role("link", name="Billing runs").click()
        run = page.locator("#run")
        await expect(run.get_by_label("Period")).to_have_value(f"{last_month:%Y-%m}")
        await run.get_by_role("button", name="Preview").click()
        result = page.locator("#run-result")
        await expect(page.locator("#run-summary")).to_contain_text("nothing posted")
        await expect(result.locator("tbody tr")).to_have_count(1)
        await expect(result.locator("tbody tr").first).to_contain_text("112.00")
        await shots(page, "run-preview")
        await run.get_by_role("button", name="Issue bills").click()
        await expect(page.locator("#run-summary")).to_contain_text("1 bill(s) issued")
        await shots(page, "run-issued")
        # the bill: pay it at its page
        await result.locator("tbody a").first.click()
        await expect(page.locator("#total-due")).to_have_text("112.00")
        pay = page.locator("#pay")
        await expect(pay.get_by_label("Amount")).to_have_value("112.00")
        await pay.get_by_label("Reference").fill("POS-7731")
        await pay.get_by_role("button", name="Pay").click()
        await expect(page.locator("h1")).to_contain_text("paid")
        await expect(page.locator("#outstanding")).to_have_text("0.00")
        await shots(page, "bill-paid")
        # the statement since the move-in: opening 0.00, closing = the balance
        await page.goto(hmi.url + f"/statements?room=B1-R101&from={last_month.isoformat()}")
        await expect(page.locator("#opening")).to_have_text("0.00")
        await expect(page.locator("#statement")).to_contain_text("Property fee")
        await shots(page, "statement")
        await page.get_by_role("link", name="Arrears").click()
        await expect(page.locator("#arrears")).to_be_visible()
        await shots(page, "arrears")
    finally:
        await page.close()
    # a retroactive price change of flat-e from an hour ago, drafted by super1, approved by super2
    async with aiohttp.ClientSession() as http:
        async with http.post(hmi.api + "/auth/token", json={"user": "admin", "password": ADMIN_PASSWORD}) as r:
            headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
        since = dt.datetime.now(TZ8) - dt.timedelta(hours=1)
        async with http.post(hmi.api + "/tariffs/flat-e/versions", headers=headers,
                             json={"definition": {"price": "0.66"}, "effective_from": since.isoformat(), "retroactive": True}) as r:
            assert r.status == 201, await r.text()
    one = await browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai")
    two = await browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai")
    try:
        await sign_in(one, hmi, "super1", SUPERS["super1"])
        await one.get_by_role("link", name="Adjustments").click()
        form = one.locator("#new-adjustment")
        await form.get_by_label("Tariff").select_option("flat-e")
        await form.get_by_label("Version").fill("2")
        await form.get_by_label("From", exact=True).fill(since.strftime("%Y-%m-%dT%H:%M"))
        await form.get_by_label("To", exact=True).fill((dt.datetime.now(TZ8) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
        await form.get_by_role("button", name="Compute").click()
        panel = one.locator("section.adjustment").first
        await expect(panel).to_contain_text("draft")
        await expect(panel.locator("table.compare tr.total")).to_be_visible()
        await expect(panel).to_contain_text("Waiting for another user's approval.")  # its author has no approve button
        await shots(one, "adjustment-draft")
        await sign_in(two, hmi, "super2", SUPERS["super2"])
        await two.goto(hmi.url + "/adjustments")
        panel2 = two.locator("section.adjustment").first
        await panel2.locator("form.approve").get_by_role("button", name="Approve").click()
        await expect(two.locator("section.adjustment").first).to_contain_text("approved")
        await shots(two, "adjustment-approved")
    finally:
        await one.close()
        await two.close()
