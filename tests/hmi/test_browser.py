"""The HMI in a real browser (headless Chromium): the operator's and cashier's everyday steps.

Each step is saved as a screenshot under build/artifacts/hmi/<test>/.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from scada.alarms.component import ALARMS
from scada.core.tags import TAGDB
from scada.prepaid.engine import PREPAID
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.component import AUDIT, USERS
from tags.names import room_tag

from ..services import require_services
from ..simulation import Control, until
from .browser import CHROMIUM, Shots, chromium
from .conftest import PASSWORDS, Hmi, open_accounts
from .producers import publish_room_tags

pytestmark = pytest.mark.browser


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


async def sign_in(page: Page, hmi: Hmi, user: str, shots: Shots | None = None) -> None:
    await page.goto(hmi.url + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORDS[user])
    if shots:
        await shots(page, "login-form")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(hmi.url + "/")


async def test_login_grid_and_live_tile(hmi: Hmi, sim: Control, browser: Browser, shots: Shots) -> None:
    ctx = hmi.rt.ctx
    publish_room_tags(ctx[TAGDB], ctx[ASSETS].snapshot, balance=88.5)
    await until(lambda: ctx[TAGDB].read("E-B1-101.comm_ok").value is True, timeout=10, what="meters polled")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, hmi, "operator1", shots)
        grid = page.locator("#grid")
        # the grid lists the demo rooms (60, all on the first page)
        await expect(grid.locator(".tile")).to_have_count(60)
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        tile = grid.locator('[data-room="B1-R101"]')
        await expect(tile.locator('[data-f="name"]')).to_have_text("R101")
        await expect(tile.locator('[data-f="balance"]')).to_have_text("88.50")
        await expect(tile.locator('[data-f="comm"]')).to_have_text("Online")
        await expect(tile.locator('[data-f="power"]')).to_have_text(re.compile(r"^\d+\.\d\d kW$"))
        await shots(page, "grid")
        # a load change in the simulator reaches the tile, through the poller, without a reload
        await sim.load("E-B1-101", kw=3.75)
        await expect(tile.locator('[data-f="power"]')).to_have_text("3.75 kW", timeout=2000)
        await shots(page, "load-changed")
        # the meter stops answering: colour and text change, and the offline count
        await sim.fault("E-B1-101", "timeout")
        await expect(tile.locator('[data-f="state"]')).to_have_text("Offline", timeout=5000)
        await expect(tile.locator('[data-f="comm"]')).to_have_text("Offline")
        await expect(tile).to_have_class(re.compile(r"\bstate-offline\b"))
        await expect(page.locator('[data-count="offline"]')).to_have_text("1")
        await shots(page, "tile-offline")
    finally:
        await page.close()


async def test_language_switch(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, hmi, "viewer1")
        await expect(page.locator("h1")).to_have_text("Rooms")
        await page.get_by_role("button", name="简体中文").click()
        await expect(page.locator("h1")).to_have_text("房间总览")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.get_by_role("button", name="退出登录")).to_be_visible()
        await shots(page, "zh-CN")
        # the preference belongs to the user: it holds in a new browser session
        user = await hmi.rt.ctx[USERS].get("viewer1")
        assert user is not None and user.language == "zh-CN"
        # and on every page, including what the scripts write
        await page.goto(hmi.url + "/rooms/B1-R103")
        await expect(page.locator("h1")).to_contain_text("房间 R103")
        await expect(page.locator('tr[data-tag="E-B1-103.comm_ok"] [data-f="value"]')).to_have_text("是", timeout=5000)
        await expect(page.locator("#live-status")).to_have_text("实时")
        await shots(page, "zh-CN-room")
        await page.get_by_role("link", name="通信状态").click()
        await expect(page.locator('#links tr[data-link="gw-1"] [data-f="state"]')).to_have_text("正常")
        await shots(page, "zh-CN-comms")
        await page.get_by_role("link", name="报警控制台").click()
        await expect(page.locator("h1")).to_have_text("报警控制台")
        await page.get_by_role("button", name="English").click()
        await expect(page.locator("h1")).to_have_text("Alarm console")  # back on the same page
        await shots(page, "en")
    finally:
        await page.close()


async def test_alarm_acknowledged_and_shelved_in_the_console(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    ctx = hmi.rt.ctx
    publish_room_tags(ctx[TAGDB], ctx[ASSETS].snapshot)
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, hmi, "maint1")
        await page.get_by_role("link", name="Alarms").click()
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#no-alarms")).to_be_visible()
        # two rooms run low: their alarms appear without a reload, unacknowledged first
        ctx[TAGDB].write(room_tag("B1-R101", "alarm_level"), 1)
        ctx[TAGDB].write(room_tag("B1-R202", "alarm_level"), 3)
        rows = page.locator("#alarms tbody tr")
        await expect(rows).to_have_count(2, timeout=3000)
        await expect(rows.nth(0).locator('[data-f="class"]')).to_have_text("Balance exhausted")  # higher priority first
        await expect(rows.nth(0).locator(".prio")).to_have_text("High")
        row = page.locator('#alarms tr:has(a:text("B1-R101"))')
        await expect(row.locator('[data-f="state"]')).to_have_text("Active, unacknowledged")
        await shots(page, "console")
        await row.get_by_role("button", name="Acknowledge").click()
        await expect(row.locator('[data-f="state"]')).to_have_text("Active, acknowledged", timeout=3000)
        await expect(page.locator("#unacked-count")).to_have_text("1")
        await shots(page, "acknowledged")
        # confirm it (it was dealt with), then comment on it: the row shows the comment live
        await row.get_by_role("button", name="Confirm").click()
        await expect(row.get_by_role("button", name="Confirm")).to_be_hidden(timeout=3000)
        await row.locator('details[data-action="comment"] summary').click()
        await row.get_by_label("Comment", exact=True).fill("tenant called back")
        await row.get_by_role("button", name="Add comment").click()
        await expect(row.locator('[data-f="comment"]')).to_have_text("maint1: tenant called back", timeout=3000)
        # shelve the other one with a reason and an expiry
        other = page.locator('#alarms tr:has(a:text("B1-R202"))')
        await other.locator('details[data-action="shelve"] summary').click()
        await other.get_by_label("Reason").fill("tenant away, landlord informed")
        await other.get_by_label("For (minutes)").fill("90")
        await shots(page, "shelve-form")
        await other.get_by_role("button", name="Shelve…").click()
        shelved = page.locator("#shelved tbody tr")
        await expect(shelved).to_have_count(1, timeout=3000)
        await expect(shelved.locator('[data-f="shelved"]')).to_contain_text("tenant away, landlord informed")
        await expect(rows).to_have_count(1)
        await shots(page, "shelved")
    finally:
        await page.close()
    engine = ctx[ALARMS]
    acked = [a for a in engine.active() if a.room_id == "B1-R101"]
    assert acked and acked[0].acked_by == "maint1"
    assert (acked[0].confirmed_by, acked[0].comment) == ("maint1", "tenant called back")
    # the page shows the shelved alarm from the live push, which may come before the request's audit row is committed
    wanted = {"api.alarms.acknowledge", "api.alarms.confirm", "api.alarms.comment", "api.alarms.shelve"}
    for _ in range(100):
        entries = await ctx[AUDIT].query(action="api.alarms.")
        if {e.action for e in entries} >= wanted:
            break
        await asyncio.sleep(0.05)
    assert {e.action for e in entries} >= wanted
    assert {e.actor for e in entries} == {"maint1"} and {e.source for e in entries} == {"hmi"}


async def test_relay_control_from_the_room_page(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    ctx = hmi.rt.ctx
    await until(lambda: ctx[TAGDB].read("E-B1-110.relay_closed").value is True, timeout=15, what="meters polled")
    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        await sign_in(page, hmi, "operator1")
        await page.goto(hmi.url + "/rooms/B1-R110")
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        supply = page.locator('[data-supply="E-B1-110"]')
        await expect(supply.locator("[data-supply-state]")).to_have_text("closed (supply on)")
        await expect(page.locator('#meters tr[data-tag="E-B1-110.power"] [data-f="quality"]')).to_have_text("Good")
        await supply.get_by_role("button", name="Trip (cut supply)…").click()
        dialog = page.locator("#supply-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator("[data-question]")).to_contain_text("Cut the supply of meter E-B1-110?")
        # no reason, no command
        await dialog.get_by_role("button", name="Send the command").click()
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("Reason").fill("tenant asked for a safety isolation")
        await shots(page, "confirm")
        await dialog.get_by_role("button", name="Send the command").click()
        await expect(dialog).to_be_hidden(timeout=10_000)
        await expect(supply.locator("[data-supply-state]")).to_have_text("open (supply off)", timeout=5000)
        history = page.locator("#commands tbody tr")
        await expect(history.first).to_contain_text("confirmed")
        await expect(history.first).to_contain_text("E-B1-110")
        await shots(page, "tripped")
    finally:
        await page.close()
    assert ctx[SIMULATOR].meter("E-B1-110").supply_on is False
    viewer = await browser.new_page()
    try:
        await sign_in(viewer, hmi, "viewer1")
        await viewer.goto(hmi.url + "/rooms/B1-R110")
        await expect(viewer.locator('[data-supply="E-B1-110"] [data-supply-state]')).to_have_text("open (supply off)")
        await expect(viewer.locator("[data-switch]")).to_have_count(0)  # a viewer may look, not switch
    finally:
        await viewer.close()


async def test_communications_page(hmi: Hmi, sim: Control, browser: Browser, shots: Shots) -> None:
    ctx = hmi.rt.ctx
    await until(lambda: ctx[TAGDB].read("E-B1-111.comm_ok").value is True, timeout=15, what="meters polled")
    await sim.fault("E-B1-111", "timeout")
    await until(lambda: ctx[TAGDB].read("E-B1-111.comm_ok").value is False, timeout=10, what="meter offline")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, hmi, "maint1")
        await page.get_by_role("link", name="Communications").click()
        rows = page.locator("#links tbody tr")
        await expect(rows).to_have_count(2)
        gw1 = page.locator('#links tr[data-link="gw-1"]')
        await expect(gw1.locator('[data-f="state"]')).to_have_text("Up")
        await expect(gw1.locator('[data-f="devices"]')).to_have_text("40 / 41")
        await gw1.get_by_role("button", name="gw-1").click()
        devices = page.locator("#devices tbody tr")
        await expect(devices).to_have_count(41)
        await page.locator("[data-state-filter]").select_option("offline")
        await expect(devices).to_have_count(1)
        await expect(devices.first).to_contain_text("E-B1-111")
        await expect(devices.first).to_contain_text("Offline")
        await shots(page, "comms")
    finally:
        await page.close()


async def test_users_administration(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        await sign_in(page, hmi, "admin")
        await page.get_by_role("link", name="Users").click()
        form = page.locator("#add-user")
        await form.get_by_label("Name").fill("cashier9")
        await form.get_by_label("Role").select_option("cashier")
        await form.get_by_label("Language").select_option("zh-CN")
        await form.get_by_label("Password").fill("cashier9-password")
        # the server's refusal is shown on the form, naming the field
        await form.get_by_label("Name").fill("viewer1")
        await form.get_by_role("button", name="Add a user").click()
        await expect(form.locator(".form-error")).to_have_text("user 'viewer1' exists")
        await expect(form.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
        await shots(page, "name-taken")
        await form.get_by_label("Name").fill("cashier9")
        await form.get_by_role("button", name="Add a user").click()
        row = page.locator('#users tr[data-user="cashier9"]')
        await expect(row).to_contain_text("Cashier")
        await expect(row).to_contain_text("简体中文")
        # disable the user, with a reason
        await row.locator("summary").click()
        edit = row.locator("form").first
        await edit.get_by_label("State").select_option("false")
        await edit.get_by_label("Reason").fill("temporary contract ended")
        await edit.get_by_role("button", name="Save").click()
        await expect(page.locator('#users tr[data-user="cashier9"] [data-f="state"]')).to_have_text("Disabled")
        await shots(page, "disabled")
    finally:
        await page.close()
    user = await hmi.rt.ctx[USERS].get("cashier9")
    assert user is not None and not user.active and user.role.value == "cashier" and user.language == "zh-CN"


async def test_recharge_at_the_cashier_updates_the_grid(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    await open_accounts(hmi, {"B1-R101": "20.00", "B1-R102": "50.00"})
    grid_page = await browser.new_page(viewport={"width": 1400, "height": 900})
    cashier = await browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        await sign_in(grid_page, hmi, "operator1")
        tile = grid_page.locator('#grid [data-room="B1-R101"]')
        await expect(tile.locator('[data-f="balance"]')).to_have_text(re.compile(r"^(19\.9\d|20\.00)$"))
        await sign_in(cashier, hmi, "cashier1")
        await cashier.get_by_role("link", name="Cashier").click()
        await cashier.get_by_label("Find a room").fill("R101")
        await cashier.get_by_role("button", name="Search").click()
        await cashier.locator("#results").get_by_role("link", name=re.compile("^R101")).click()
        account = cashier.locator("#account")
        await expect(account.locator('[data-account="balance"]')).to_have_text(re.compile(r"^(19\.9\d|20\.00) CNY$"))
        form = cashier.locator("#recharge")
        await form.get_by_label("Amount (CNY)").fill("100")
        await form.get_by_label("Paid by").select_option("wechat")
        await shots(cashier, "recharge-form")
        await form.get_by_role("button", name="Recharge").click()
        # the printable receipt
        await expect(cashier).to_have_url(re.compile(r"/cashier/receipt/B1-R101/\d+$"))
        await expect(cashier.locator('[data-r="amount"]')).to_have_text("100.00 CNY")
        await expect(cashier.locator('[data-r="channel"]')).to_have_text("WeChat Pay")
        await expect(cashier.locator('[data-r="cashier"]')).to_have_text("cashier1")
        await expect(cashier.locator('[data-r="balance"]')).to_have_text(re.compile(r"^1(19\.9\d|20\.00) CNY$"))
        await shots(cashier, "receipt")
        # the operator's grid shows the new balance without a reload
        await expect(tile.locator('[data-f="balance"]')).to_have_text(re.compile(r"^1(19\.9\d|20\.00)$"), timeout=3000)
        await shots(grid_page, "grid-after-recharge")
        # a refund, and the reversal of the recharge, from the cashier's ledger (a reversal that
        # credits the account waits for a second user: test_browser_approvals.py)
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        refund = cashier.locator("#refund")
        await refund.get_by_label("Amount (CNY)").fill("30")
        await refund.get_by_label("Reason").fill("tenant overpaid")
        await refund.get_by_role("button", name="Refund").click()
        await expect(cashier.locator('[data-r="amount"]')).to_have_text("-30.00 CNY")
        await cashier.goto(hmi.url + "/cashier?room=B1-R101")
        row = cashier.locator("#ledger tr.kind-recharge").first
        await row.get_by_role("button", name="Reverse…").click()
        dialog = cashier.locator("#reverse-dialog")
        await dialog.get_by_label("Reason").fill("recharge keyed twice")
        await dialog.get_by_role("button", name="Reverse").click()
        await expect(cashier.locator("#ledger tr.kind-reversal")).to_have_count(1, timeout=5000)
        await shots(cashier, "reversed")
    finally:
        await grid_page.close()
        await cashier.close()
    entries = await hmi.rt.ctx[AUDIT].query(action="api.accounts.")
    assert {e.action for e in entries if e.actor == "cashier1"} >= {"api.accounts.recharge", "api.accounts.refund", "api.accounts.reverse"}


async def test_tariff_and_account_pages(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    await open_accounts(hmi, {"B1-R101": "10.00"})  # also creates the flat tariffs
    engineer = await browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        await sign_in(engineer, hmi, "engineer1")
        await engineer.get_by_role("link", name="Tariffs").click()
        form = engineer.locator("#new-tariff")
        await form.get_by_label("Id").fill("tou-2026")
        await form.get_by_label("Name").fill("TOU 2026")
        await form.get_by_label("or a definition (JSON)").fill("{not json")
        await form.get_by_role("button", name="Create a tariff").click()
        await expect(form.locator(".form-error")).to_contain_text("not valid JSON")
        await form.get_by_label("or a definition (JSON)").fill('{"price": "-1"}')
        await form.get_by_role("button", name="Create a tariff").click()
        await expect(form.locator(".form-error")).to_contain_text("definition.price")  # the server names the field
        await form.get_by_label("or a definition (JSON)").fill("")
        await form.get_by_label("Flat price").fill("0.75")
        await form.get_by_role("button", name="Create a tariff").click()
        section = engineer.locator('[data-tariff="tou-2026"]')
        await expect(section).to_contain_text("0.75 CNY per kWh")
        await shots(engineer, "tariffs")
    finally:
        await engineer.close()
    cashier = await browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        await sign_in(cashier, hmi, "cashier1")
        await cashier.goto(hmi.url + "/accounts?room=B1-R104")
        form = cashier.locator("#open")
        await form.get_by_label("Tariff for Electricity").select_option("tou-2026")
        await form.get_by_label("Opening balance (CNY)").fill("0")  # a balance needs a second user (test_browser_approvals.py)
        await form.get_by_label("Contact name").fill("Li Lei")
        await form.get_by_label("Phone").fill("+86 138 0000 0000")
        await form.get_by_role("button", name="Open an account").click()
        await expect(cashier.locator("h2").first).to_contain_text("Open", timeout=5000)
        await expect(cashier.locator(".money")).to_have_text(re.compile(r"^-?0\.\d\d CNY$"))
        await shots(cashier, "account-opened")
    finally:
        await cashier.close()
    view = await hmi.rt.ctx[PREPAID].account("B1-R104")
    assert view is not None and view.electricity_tariff_id == "tou-2026" and view.contact.name == "Li Lei"
