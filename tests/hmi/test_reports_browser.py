"""The reports page in a real browser (headless Chromium): the energy report's chart drawn with
uPlot (served from the project, the pinned build) and its table; another kind and grouping; the
download links; the kinds a role may read. Screenshots under build/artifacts/hmi/<test>/."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from historian import IntervalRecord
from historian.rollup import day_bounds
from hmi.vendor import VENDOR
from scada.history.service import HISTORY

from ..services import require_services
from .browser import CHROMIUM, Shots, chromium
from .conftest import PASSWORDS, Hmi
from .test_billing_browser import sign_in

pytestmark = pytest.mark.browser

TZ8 = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if require_services():
            pytest.fail(f"required test browser missing: {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    async with chromium() as b:
        yield b


async def test_reports_page_draws_the_chart_and_the_table(hmi: Hmi, browser: Browser, request: pytest.FixtureRequest) -> None:
    shots = Shots(request.node.name)
    async with aiohttp.ClientSession() as http:  # the chart library: served from the project, the pinned build
        for name, f in VENDOR.items():
            async with http.get(f"{hmi.url}/static/vendor/{name}") as r:
                assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == f.sha256
        async with http.get(f"{hmi.url}/static/vendor/other.js") as r:
            assert r.status == 404
    today = dt.datetime.now(TZ8).date()
    first = today.replace(day=1)
    backend = hmi.rt.ctx[HISTORY].historian.backend
    meters = sorted(hmi.rt.ctx[HISTORY].assets.snapshot.meters)[:4]
    records = []
    day = first
    while day <= today:
        for i, meter in enumerate(meters):
            t0 = int(dt.datetime.combine(day, dt.time(3), TZ8).timestamp())
            t1 = int(dt.datetime.combine(day, dt.time(10), TZ8).timestamp())
            records.append(IntervalRecord(meter, t0, 900, {"energy_total": (i + 1) * 1_000_000, "energy_valley": (i + 1) * 1_000_000}))
            records.append(IntervalRecord(meter, t1, 900, {"energy_total": 2_000_000, "energy_peak": 2_000_000}))
        day += dt.timedelta(days=1)
    await backend.write_intervals(records)
    await backend.rebuild_days(sorted({(r.meter, *day_bounds(r.start, TZ8)) for r in records}))
    page = await browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai")
    try:
        await sign_in(page, hmi, "engineer1", PASSWORDS["engineer1"])
        await page.goto(hmi.url + "/reports")
        section = page.locator("#report")
        await expect(section).to_have_attribute("data-state", "shown")
        assert await page.locator("select[name=kind] option").all_inner_texts() == ["Energy report", "Year-on-year comparison"]
        chart = page.locator("[data-chart]")
        await expect(chart.locator("canvas")).to_have_count(1)
        await expect(chart).to_have_attribute("data-points", str((today - first).days + 1))
        legend = await chart.locator(".u-legend").inner_text()
        assert "Valley (kWh)" in legend and "Peak (kWh)" in legend
        await expect(page.locator("[data-table] thead th").first).to_have_text("Day")
        assert int(await section.get_attribute("data-rows") or 0) > 0
        await shots(page, "energy-by-room")
        href = await page.locator("[data-download=xlsx]").get_attribute("href")
        assert href is not None and href.startswith("/api/v1/reports/energy?") and "format=xlsx" in href
        await page.select_option("select[name=group]", "building")
        await page.select_option("select[name=interval]", "week")
        await page.get_by_role("button", name="Show").click()
        await expect(page.locator("[data-table] thead th").nth(1)).to_have_text("Building")
        await page.select_option("select[name=kind]", "compare")
        await page.get_by_role("button", name="Show").click()
        await expect(chart).to_have_attribute("data-series", "3")
        await shots(page, "compare")
        await page.close()
        page = await browser.new_page(viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai")  # a context of its own
        await sign_in(page, hmi, "super1", PASSWORDS["super1"])
        await page.goto(hmi.url + "/reports")
        section = page.locator("#report")
        await page.select_option("select[name=kind]", "finance")
        await page.select_option("select[name=group]", "channel")
        await page.get_by_role("button", name="Show").click()
        await expect(page.locator(".form-error")).to_be_hidden()
        await expect(page.locator("[data-table] thead th").nth(1)).to_have_text("Channel")
        await expect(section).to_have_attribute("data-state", "shown")
        await shots(page, "finance")
    finally:
        await page.close()
