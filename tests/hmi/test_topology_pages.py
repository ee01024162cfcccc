"""The meter topology in a real browser (headless Chromium): the meter tree with manual-reading
entry (a reading that goes backwards is refused on the form), the CSV import's dry run, the
losses page's chart, an apportionment rule created on its page and its preview table; zh-CN.
Each step is saved as a screenshot under build/artifacts/hmi/<test>/."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from historian import IntervalRecord
from historian.rollup import day_rollups
from scada.config import CONFIG
from scada.core.tags import TAGDB
from scada.history.service import HISTORY
from scada.site.component import ASSETS
from scada.users.component import USERS

from ..services import require_services
from .browser import CHROMIUM, Shots, chromium
from .conftest import Hmi, browser_like, login, open_accounts
from .test_browser import sign_in

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


async def store_day(hmi: Hmi, day: dt.date, per_quarter: dict[str, str]) -> None:
    """History of one local day written to the running historian's backend (every 15 minutes)."""
    tz = hmi.rt.ctx[CONFIG].site.tz
    start = int(dt.datetime.combine(day, dt.time(), tz).timestamp())
    records = [
        IntervalRecord(meter, start + 900 * k, 900, {"energy_total": int(float(kwh) * 1_000_000), "samples": 1, "good_samples": 1,
                                                      "flag_gap": 0, "flag_reset": 0, "flag_first": 0})
        for k in range(96) for meter, kwh in per_quarter.items()
    ]
    backend = hmi.rt.ctx[HISTORY].historian.backend
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, tz))


async def test_meter_tree_readings_losses_and_apportionment(hmi: Hmi, browser: Browser, shots: Shots) -> None:
    ctx = hmi.rt.ctx
    tz = ctx[CONFIG].site.tz
    today = dt.datetime.now(tz).date()
    yesterday = today - dt.timedelta(days=1)
    children = ctx[ASSETS].snapshot.tree.children_at("U-B1", dt.datetime.now(dt.UTC))
    assert len(children) == 61  # every electricity meter of the demo below the utility meter
    # yesterday every child used 0.0125 kWh every quarter hour: 61 × 1.2 = 73.2 kWh; the common meter
    # 0.5 every quarter hour today until now
    await store_day(hmi, yesterday, {m: "0.0125" for m in children})
    await store_day(hmi, today, {"C-B1-01": "0.5"})
    await open_accounts(hmi, {"B1-R101": "100.00", "B1-R102": "100.00"})
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        await sign_in(page, hmi, "admin")
        await page.get_by_role("link", name="Meters").click()
        await expect(page.locator("h1")).to_have_text("Meter tree")
        utility = page.locator('.meter-tree > li[data-meter="U-B1"]')
        await expect(utility.locator(".badge").first).to_have_text("utility")
        await expect(utility.locator(":scope > ul > li")).to_have_count(61)
        await expect(page.locator('#virtual tr[data-meter="V-B1-F1"] code')).to_contain_text("E-B1-101 + E-B1-102")
        await shots(page, "tree")
        # two readings of the utility meter by hand: yesterday and today at midnight, site time
        form = page.locator('#manual [data-meter="U-B1"] form')
        for value, day in (("1000.00", yesterday), ("1100.00", today)):
            await form.get_by_label("Reading (kWh)").fill(value)
            await form.get_by_label("Read at (site time)").fill(f"{day}T00:00")
            await form.get_by_label("Reason").fill("monthly round")
            await form.get_by_role("button", name="Enter reading").click()
            await expect(page.locator('#manual [data-meter="U-B1"] [data-f="last"]')).to_contain_text(f"{value[:-3]} kWh", timeout=5000)
            form = page.locator('#manual [data-meter="U-B1"] form')
        tv = ctx[TAGDB].read("U-B1.energy_total")
        assert tv.value == 1100.0 and tv.detail == "source=manual"
        # one going backwards is refused on the form, naming why; nothing stored (00:01: within the
        # five minutes a reading may be ahead of the clock even just after midnight)
        await form.get_by_label("Reading (kWh)").fill("1050")
        await form.get_by_label("Read at (site time)").fill(f"{today}T00:01")
        await form.get_by_label("Reason").fill("misread")
        await form.get_by_role("button", name="Enter reading").click()
        await expect(form.locator(".form-error")).to_contain_text("goes backwards from 1100", timeout=5000)
        # the CSV import's dry run lists every bad row
        importer = page.locator("#import")
        await importer.get_by_label(re.compile("^CSV")).fill(f"meter,ts,value\nU-B1,{today} 00:01,900\nE-B1-101,{today} 00:01,5\n")
        await importer.get_by_role("button", name="Import").click()
        problems = importer.locator("[data-report] tbody tr")
        await expect(problems).to_have_count(2)
        await expect(problems.nth(0)).to_contain_text("value")
        await expect(problems.nth(1)).to_contain_text("is polled")
        assert ctx[TAGDB].read("U-B1.energy_total").value == 1100.0

        # losses: yesterday U-B1 gave 100 kWh, its children used 73.2: 26.8 kWh, 26.8 %
        await page.goto(hmi.url + f"/losses?month={yesterday:%Y-%m}&meter=U-B1")
        chart = page.locator("#loss-chart")
        await expect(chart).to_have_attribute("data-bars", "1", timeout=5000)
        await expect(chart.locator("svg rect.chart-bar.over")).to_have_count(1)  # above the 10 % alarm limit
        day_row = chart.locator("#loss-days tbody tr", has_text=str(yesterday))
        await expect(day_row).to_contain_text("26.80 %")
        await shots(page, "losses")

        # an apportionment rule made on its page, and its preview table
        await page.get_by_role("link", name="Apportionment").click()
        rule_form = page.locator("#new-rule")
        await rule_form.get_by_label("Name").fill("Common area by area")
        await rule_form.locator('select[name="source"]').select_option("C-B1-01")
        await rule_form.locator('select[name="method"]').select_option("area")
        await rule_form.locator('select[name="pricing"]').select_option("price")
        await rule_form.get_by_label("Price per unit").fill("0.85")
        await rule_form.get_by_role("button", name="New rule").click()
        rule = page.locator("section.rule", has_text="Common area by area")
        await expect(rule).to_be_visible(timeout=5000)
        preview = rule.locator("form[data-preview]")
        await preview.get_by_label("From").fill(str(today))
        await preview.get_by_label("To (exclusive)").fill(str(today + dt.timedelta(days=1)))
        await preview.get_by_role("button", name="Preview").click()
        shares = rule.locator("[data-result] tbody tr")
        await expect(shares).to_have_count(2, timeout=5000)  # the two rooms with an account
        await expect(shares.nth(0)).to_contain_text("32 m²")
        await expect(rule.locator("[data-summary]")).to_contain_text("Source")
        await shots(page, "apportionment-preview")
        # the period of the run form (last month) has no history of the source: refused, named
        run = rule.locator("form[data-run]")
        page.once("dialog", lambda d: d.accept())
        await run.get_by_role("button", name="Post the period").click()
        await expect(run.locator(".form-error")).to_contain_text("no known quantity", timeout=5000)

        # and in Chinese
        await page.get_by_role("button", name="简体中文").click()
        await expect(page.locator("h1")).to_have_text("公摊分摊")
        await page.get_by_role("link", name="计量表").click()
        await expect(page.locator("h1")).to_have_text("计量拓扑")
        await expect(utility.locator(".badge").first).to_have_text("总表")
        await shots(page, "zh-CN-tree")
    finally:
        await page.close()
    user = await ctx[USERS].get("admin")
    assert user is not None and user.language == "zh-CN"

    # what each role is offered
    async with browser_like() as http:
        await login(http, hmi.url, "viewer1")
        for path in ("/meters", "/losses", "/apportionment"):
            async with http.get(hmi.url + path) as r:
                html = await r.text()
                assert r.status == 200, path
        assert 'id="new-rule"' not in html and "data-run" not in html  # the viewer may look, not change
        async with http.get(hmi.url + "/meters") as r:
            html = await r.text()
        assert 'data-api="POST /api/v1/meters/U-B1/readings"' not in html
        async with http.get(hmi.url + "/meters?from=2026-13-01") as r:
            assert "That period is not valid" in await r.text()
    async with browser_like() as http:
        await login(http, hmi.url, "maint1")
        async with http.get(hmi.url + "/meters") as r:
            assert 'data-api="POST /api/v1/meters/U-B1/readings"' in await r.text()
