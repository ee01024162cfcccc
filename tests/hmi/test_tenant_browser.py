"""The tenant portal in headless Chromium at a phone's size (390 × 844): a tenant signs in with
their PIN, sees their balance, pays 50.00 through the sandbox provider's pay page and sees the new
balance within 5 s without reloading; another tenant's account is not reachable by URL or API.
Every portal page and the pay page pass the WCAG 2.1 AA audit (axe-core) at a phone's and a
desktop's size, without sideways scrolling and with touch targets of 44 px (360 px too)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from ..services import require_services
from .axe import DESKTOP, PHONE, audit, overflow, small_targets, violations_text
from .browser import CHROMIUM, Shots, chromium
from .payments_site import PHONES, PINS, Site, payment_site

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with payment_site(tmp_path_factory.mktemp("tenant-browser")) as s:
        yield s


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


async def pin_sign_in(page: Page, site: Site, room: str) -> None:
    await page.goto(site.url + "/tenant/")
    await expect(page).to_have_url(site.url + "/tenant/login")
    await page.get_by_role("button", name="English").click()  # R1's tenant reads Chinese; this browser asks for English
    await expect(page.locator("h1")).to_have_text("Tenant sign-in")
    await page.get_by_role("textbox", name="Account number").fill(str(site.accounts[room]))
    await page.get_by_role("textbox", name="PIN").fill(PINS[room])
    await page.get_by_role("button", name="Sign in").first.click()
    await expect(page).to_have_url(site.url + f"/tenant/accounts/{site.accounts[room]}")


async def phone_layout(page: Page) -> dict[str, object]:
    return {"overflow": await overflow(page), "small": await small_targets(page)}


async def test_a_tenant_pays_online_and_sees_the_new_balance_live(site: Site, browser: Browser, shots: Shots) -> None:
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await context.new_page()
    try:
        await pin_sign_in(page, site, "R1")
        balance = page.locator('[data-f="balance"]')
        await expect(balance).to_have_text("100.00")
        await shots(page, "account")
        assert await phone_layout(page) == {"overflow": 0, "small": []}
        # a marker that a reload would wipe out
        await page.evaluate("() => { window.notReloaded = true; }")
        await page.get_by_role("button", name="50", exact=True).click()
        await expect(page.get_by_label("Amount (CNY)")).to_have_value("50")
        async with context.expect_page() as popup_info:
            await page.get_by_role("button", name="Pay online").click()
        pay = await popup_info.value
        await expect(pay.locator('[data-f="amount"]')).to_have_text("50.00 CNY")
        await expect(page.locator("#order-status")).to_contain_text("Waiting for your payment of 50.00 CNY")
        await shots(pay, "sandbox-pay-page")
        found = {"pay page": await audit(pay)}
        assert await phone_layout(pay) == {"overflow": 0, "small": []}
        await pay.get_by_role("button", name="Pay 50.00 CNY").click()
        await expect(pay).to_have_url(site.url + f"/tenant/accounts/{site.accounts['R1']}")  # back at the merchant
        # the first page, never reloaded, shows the credited payment and the new balance within 5 s
        await expect(balance).to_have_text("150.00", timeout=5000)
        await expect(page.locator("#order-status")).to_have_text("Done: 50.00 CNY is on your account.")
        assert await page.evaluate("() => window.notReloaded === true")
        await shots(page, "credited")
        await pay.close()
        # the ledger has it once
        await page.reload()
        await expect(page.locator(".entries li", has_text="Recharge")).to_have_count(1)
        # another tenant's account: not by URL, not by API
        other = site.accounts["R2"]
        response = await page.goto(site.url + f"/tenant/accounts/{other}")
        assert response is not None and response.status == 404
        await expect(page.locator("main")).to_contain_text("There is no such account among yours.")
        status = await page.evaluate(f"async () => (await fetch('/api/v1/tenant/accounts/{other}')).status")
        assert status == 404
        status = await page.evaluate("async () => (await fetch('/api/v1/rooms/R2/account')).status")
        assert status == 401
        found["not found"] = await audit(page)
        assert not {k: v for k, v in found.items() if v}, violations_text(found)
    finally:
        await context.close()


async def test_every_portal_page_passes_the_audit_at_phone_and_desktop_sizes(site: Site, browser: Browser, shots: Shots) -> None:
    # R2's phone number becomes R1's too: signing in with it (a code by SMS) shows both accounts
    async with aiohttp.ClientSession() as http:
        status, body = await site.call(http, "POST", "/rooms/R2/account/settings", "cashier",
                                       {"contact": {"name": "Tenant R2", "phone": PHONES["R1"], "language": "en"}})
        assert status == 200, body
    found: dict[str, list[dict[str, object]]] = {}
    layout: dict[str, object] = {}
    try:
        for name, viewport in (("phone", PHONE), ("narrow", {"width": 360, "height": 740}), ("desktop", DESKTOP)):
            context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
            page = await context.new_page()
            try:
                await page.goto(site.url + "/tenant/login")
                found[f"{name} login"] = await audit(page)
                layout[f"{name} login"] = await phone_layout(page)
                await page.get_by_role("textbox", name="Registered phone number").fill(PHONES["R1"])
                await page.get_by_role("button", name="Send me a code").click()
                await expect(page.get_by_role("textbox", name="Code")).to_be_visible()
                found[f"{name} code"] = await audit(page)
                layout[f"{name} code"] = await phone_layout(page)
                code = re.search(r"([0-9]{6})", site.sms.texts_to(PHONES["R1"])[-1])
                assert code
                await page.get_by_role("textbox", name="Code").fill(code.group(1))
                await page.get_by_role("button", name="Sign in").click()
                await expect(page).to_have_url(site.url + "/tenant/")
                await expect(page.locator(".tenant-accounts li")).to_have_count(2)
                found[f"{name} home"] = await audit(page)
                layout[f"{name} home"] = await phone_layout(page)
                await page.get_by_role("link", name=re.compile("R2")).click()
                await expect(page.locator('[data-f="balance"]')).to_be_visible()
                await page.locator("details.chart-table summary").click()
                found[f"{name} account"] = await audit(page)
                layout[f"{name} account"] = await phone_layout(page)
                await shots(page, f"{name}-account")
                await page.get_by_role("button", name="简体中文").click()
                await expect(page.locator("h2#balance-h")).to_have_text("余额")
                found[f"{name} account zh-CN"] = await audit(page)
                await page.get_by_role("button", name="English").click()
                await page.get_by_role("button", name="Sign out").click()
                await expect(page).to_have_url(site.url + "/tenant/login")
            finally:
                await context.close()
    finally:
        async with aiohttp.ClientSession() as http:
            await site.call(http, "POST", "/rooms/R2/account/settings", "cashier",
                            {"contact": {"name": "Tenant R2", "phone": PHONES["R2"], "language": "en"}})
    assert not {k: v for k, v in found.items() if v}, violations_text(found)
    bad = {k: v for k, v in layout.items() if not k.startswith("desktop") and v != {"overflow": 0, "small": []}}
    assert not bad, bad


async def test_the_audit_finds_what_it_must(browser: Browser) -> None:
    """The audit is not blind: a page with an unlabelled field, a nameless button and grey on grey."""
    page = await browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
    try:
        await page.set_content('<html lang="en"><head><title>t</title></head><body><main><input name="x">'
                               '<button></button><p style="color:#aaa;background:#bbb">faint</p>'
                               '<a href="/" style="display:block;width:20px;height:20px">x</a></main></body></html>')
        ids = {v["id"] for v in await audit(page)}
        assert {"label", "button-name", "color-contrast"} <= ids, ids
        assert await small_targets(page)
        await page.set_content('<html lang="en"><body><div style="width:600px">wide</div></body></html>')
        assert await overflow(page) > 0
    finally:
        await page.close()
