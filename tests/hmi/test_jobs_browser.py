"""The jobs pages in a real browser: an operator counts the rooms of a floor, confirms a relay
job and watches its progress bar fill over the WebSocket; the import page lists every bad row;
a room shows its meters' settings (TOU table as read back, clock drift); in 简体中文 too."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from scada.core.tags import TAGDB

from ..simulation import until
from .browser import Shots
from .conftest import ADMIN_PASSWORD, Hmi
from .test_api_users import bearer
from .test_browser import browser, shots, sign_in  # noqa: F401 - fixtures
from .test_jobs_site import BAD, GOOD, api

pytestmark = pytest.mark.browser


async def test_relay_job_progress_import_errors_and_meter_settings(hmi: Hmi, browser: Browser, shots: Shots, tmp_path: Path) -> None:  # noqa: F811
    tagdb = hmi.rt.ctx[TAGDB]
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http:
        for body in ({"id": "FLAT", "name": "Flat", "commodity": "electricity", "definition": {"price": "0.60"}},
                     {"id": "W", "name": "Water", "commodity": "water", "definition": {"price": "3"}}):
            await api(http, "POST", hmi.api + "/tariffs", body, 201)
        await api(http, "POST", hmi.api + "/rooms/B1-R101/account/open", {"tariffs": {"electricity": "FLAT"}}, 201)
    await until(lambda: all(tagdb.read(f"E-B1-1{i:02d}.comm_ok").value is True for i in range(1, 16)), timeout=20, what="polled")
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        await sign_in(page, hmi, "admin")
        await page.goto(hmi.url + "/jobs")
        form = page.locator("#job-form")
        await form.get_by_label("Kind").select_option("relay")
        await form.get_by_label("Floor").select_option("B1-F1")
        await form.get_by_role("button", name="Count targets").click()
        await expect(page.locator("#job-count")).to_have_text("20 meters")  # 15 rooms, 5 water valves
        await shots(page, "counted")
        await form.get_by_role("button", name="Confirm and create").click()
        row = page.locator("#jobs tbody tr").first
        await expect(row.locator('[data-f="counts"]')).to_have_text("20/20", timeout=30000)
        await expect(row.locator('[data-f="state"]')).to_have_text("done")
        assert await row.locator("progress").get_attribute("value") == "20"
        await shots(page, "done")
        await row.get_by_role("link").click()
        await expect(page.locator("#items tbody tr")).to_have_count(20)
        await expect(page.locator('#items tr[data-target="E-B1-101"] [data-f="state"]')).to_have_text("done")
        # the import page: every bad row with its line, column and why
        await page.goto(hmi.url + "/accounts/import")
        csv = tmp_path / "accounts.csv"
        csv.write_text(GOOD + BAD)
        await page.locator('input[type="file"]').set_input_files(str(csv))
        await page.get_by_role("button", name="Check (dry run)").click()
        errors = page.locator("#import-errors tbody tr")
        await expect(errors).to_have_count(3)
        await expect(errors.nth(0)).to_contain_text("unknown room 'B1-R999'")
        await expect(page.locator("#import-summary")).to_contain_text("8 rows: 5 good, 3 bad")
        await shots(page, "import-errors")
        # the good rows imported; one prepared account withdrawn (its tenant did not move in)
        csv.write_text(GOOD)
        await page.locator('input[type="file"]').set_input_files(str(csv))
        await page.get_by_role("button", name="Import", exact=True).click()
        prepared = page.locator("#prepared tbody tr")
        await expect(prepared).to_have_count(5)  # the page reloads with them
        page.once("dialog", lambda d: d.accept())
        await page.locator('#prepared tr[data-room="B1-R202"]').get_by_role("button", name="Withdraw").click()
        await expect(page.locator('#prepared tr[data-room="B1-R202"]')).to_have_count(0)
        await page.reload()
        await expect(prepared).to_have_count(4)
        # a room's meter settings, read now
        await page.goto(hmi.url + "/rooms/B1-R101")
        box = page.locator('#meter-settings [data-meter="E-B1-101"]')
        await box.get_by_role("button", name="Read now").click()
        await expect(box.locator(".tou-table")).to_contain_text("08:00 peak")
        await expect(box.locator('[data-f="drift"]')).to_have_text(re.compile(r"Clock drift: [+-]?\d+ s"))
        await shots(page, "meter-settings")
        # 简体中文: the same page, the same live job
        await page.goto(hmi.url + "/jobs")
        await page.get_by_role("button", name="简体中文").click()
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.locator("h1")).to_have_text("批量与定时任务")
        await expect(page.locator("#jobs tbody tr").first.locator('[data-f="state"]')).to_have_text("已完成")
        await page.locator("#job-form").get_by_label("类型").select_option("relay")
        await page.locator("#job-form").get_by_label("楼层").select_option("B1-F2")
        await page.get_by_role("button", name="统计对象数").click()
        await expect(page.locator("#job-count")).to_have_text("共 20 块表")
        await shots(page, "zh-CN")
    finally:
        await page.close()
