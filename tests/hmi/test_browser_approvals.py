"""Four eyes in a real browser (headless Chromium): a cashier's refund above the limit, a
reversal that credits, an opening balance and a credit limit with protection are each "sent for
approval"; a supervisor approves them on the approvals page (in Chinese), the money moves; a
rejected request moves nothing.

Each step is saved as a screenshot under build/artifacts/hmi/<test>/.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from scada.approvals.component import APPROVALS
from scada.prepaid.engine import PREPAID

from ..services import require_services
from .browser import CHROMIUM, Shots, chromium
from .conftest import PASSWORDS, Hmi, open_accounts

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if require_services():
            pytest.fail(f"required test browser missing: {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    async with chromium() as b:
        yield b


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


async def sign_in(page: Page, hmi: Hmi, user: str) -> None:
    await page.goto(hmi.url + "/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORDS[user])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(hmi.url + "/")


async def sent_for_approval(page: Page, where: str) -> str:
    """The pending note the page shows after a 202; returns the request's id."""
    note = page.locator(where)
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("Sent for approval")
    approval = await note.get_attribute("data-approval")
    assert approval and approval.isdigit(), approval
    return approval


async def test_four_eyes_in_the_browser(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    await open_accounts(hmi, {"B1-R101": "900.00"})
    engine = hmi.rt.ctx[PREPAID]

    async def credits(room: str) -> list[tuple[str, str]]:
        _, entries = await engine.ledger(room, limit=100)
        return [(e.kind, f"{e.amount_minor / 100:.2f}") for e in reversed(entries) if e.kind != "deduction"]

    cashier = await browser.new_page(viewport={"width": 1300, "height": 1000})
    supervisor = await browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        await sign_in(cashier, hmi, "cashier1")
        # a refund within the limit is the cashier's own: it is paid, with its receipt
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        refund = cashier.locator("#refund")
        await refund.get_by_label("Amount (CNY)").fill("10")
        await refund.get_by_label("Reason").fill("overpaid")
        await refund.get_by_role("button", name="Refund").click()
        await expect(cashier.locator('[data-r="amount"]')).to_have_text("-10.00 CNY")
        # a refund above the limit waits
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        refund = cashier.locator("#refund")
        await refund.get_by_label("Amount (CNY)").fill("600")
        await refund.get_by_label("Reason").fill("tenant moves out")
        await refund.get_by_role("button", name="Refund").click()
        big_refund = await sent_for_approval(cashier, "#refund .form-pending")
        await expect(cashier).to_have_url(hmi.url + "/cashier?room=B1-R101")  # no receipt: nothing was paid
        await shots(cashier, "refund-sent-for-approval")
        # reversing the small refund credits the account: it waits
        await cashier.reload()
        await cashier.locator("#ledger tr.kind-refund").first.get_by_role("button", name="Reverse…").click()
        dialog = cashier.locator("#reverse-dialog")
        await dialog.get_by_label("Reason").fill("refund keyed twice")
        await dialog.get_by_role("button", name="Reverse").click()
        reversal = await sent_for_approval(cashier, "#pending-approval")
        await expect(cashier.locator("#ledger tr.kind-reversal")).to_have_count(0)
        await shots(cashier, "reversal-sent-for-approval")
        # an opening balance waits
        await cashier.goto(hmi.url + "/accounts?room=B1-R102")
        form = cashier.locator("#open")
        await form.get_by_label("Tariff for Electricity").select_option("flat-e")
        await form.get_by_label("Opening balance (CNY)").fill("50")
        await form.get_by_label("Contact name").fill("Han Meimei")
        await form.get_by_role("button", name="Open an account").click()
        opening = await sent_for_approval(cashier, "#open .form-pending")
        # a credit limit and protection wait
        await cashier.goto(hmi.url + "/accounts?room=B1-R101")
        form = cashier.locator("#settings")
        await form.get_by_label("Credit limit (CNY)").fill("100")
        await form.get_by_label("Keep supply on (protected account)").check()
        await form.get_by_label("Reason").fill("elderly tenant")
        await form.get_by_role("button", name="Save").click()
        settings = await sent_for_approval(cashier, "#settings .form-pending")
        await shots(cashier, "settings-sent-for-approval")
        # one more, to be rejected
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        refund = cashier.locator("#refund")
        await refund.get_by_label("Amount (CNY)").fill("700")
        await refund.get_by_label("Reason").fill("mistake")
        await refund.get_by_role("button", name="Refund").click()
        rejected = await sent_for_approval(cashier, "#refund .form-pending")
        assert await credits("B1-R101") == [("opening", "900.00"), ("refund", "-10.00")]
        assert await engine.account("B1-R102") is None
        # the cashier sees their requests, and cannot decide them
        await cashier.goto(hmi.url + "/approvals")
        await expect(cashier.locator("#approvals tbody tr")).to_have_count(5)
        await expect(cashier.locator("[data-approve]")).to_have_count(0)

        # the supervisor, in Chinese
        await sign_in(supervisor, hmi, "super1")
        await supervisor.get_by_role("button", name="简体中文").click()
        await supervisor.get_by_role("link", name="审批").click()
        await expect(supervisor.locator("h1")).to_have_text("审批")
        rows = supervisor.locator("#approvals tbody tr")
        await expect(rows).to_have_count(5)
        await shots(supervisor, "pending-approvals-zh")
        row = supervisor.locator(f'tr[data-approval="{rejected}"]')
        await row.get_by_label("原因").fill("没有凭证")
        await row.get_by_role("button", name="驳回").click()
        await expect(rows).to_have_count(4)
        for approval in (big_refund, reversal, opening, settings):
            button = supervisor.locator(f'[data-approve="{approval}"]')
            await expect(button).to_have_text("批准")
            await button.click()
            await expect(supervisor.locator(f'tr[data-approval="{approval}"]')).to_have_count(0)
        await expect(supervisor.locator(".empty")).to_be_visible()
        await supervisor.goto(hmi.url + "/approvals?state=executed")
        await expect(rows).to_have_count(5)  # with the opening balance of the test's set-up
        await expect(rows.locator('[data-f="state"]').first).to_contain_text("已执行")
        await shots(supervisor, "executed-zh")

        # the money moved, once each
        assert await credits("B1-R101") == [("opening", "900.00"), ("refund", "-10.00"), ("refund", "-600.00"), ("reversal", "10.00")]
        r102 = await engine.account("B1-R102")
        assert r102 is not None and await credits("B1-R102") == [("opening", "50.00")]
        r101 = await engine.account("B1-R101")
        assert r101 is not None and r101.credit_limit_minor == 10_000 and r101.protected
        requests = {str(v.id): v for v in await hmi.rt.ctx[APPROVALS].list()}
        assert requests[rejected].state == "rejected" and requests[rejected].decision_reason == "没有凭证"
        assert all(requests[a].state == "executed" and requests[a].decided_by == "super1" for a in (big_refund, reversal, opening, settings))
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        await expect(cashier.locator("#ledger tr.kind-reversal")).to_have_count(1)
        await expect(cashier.locator("#ledger tr.kind-reversal")).to_contain_text(re.compile(r"approved by super1"))
        await shots(cashier, "ledger-after-approval")
    finally:
        await cashier.close()
        await supervisor.close()
