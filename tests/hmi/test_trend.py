"""The room's consumption chart: ``/api/v1/rooms/{room}/trend`` from the historian's stored
intervals, and the chart on the room page (SVG, day/week/month)."""

from __future__ import annotations

import asyncio
import calendar
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, Route, expect

from historian import IntervalRecord, SqliteSettings, make_backend
from historian.rollup import day_rollups
from hmi.api.trend import trend_window
from hmi.component import HMI_URL
from scada.users.component import USERS

from ..harness import running_server
from .axe import PHONE, overflow, small_text
from .browser import Shots
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, add_role_users, demo_site_config
from .test_api_users import bearer
from .test_browser import browser, shots, sign_in  # noqa: F401  (fixtures)

TZ = ZoneInfo("Asia/Shanghai")


def _records(day0: datetime, days: int) -> list[IntervalRecord]:
    """15-minute intervals: E-B1-103 uses (k % 5) × 0.01 kWh in interval k, W-B1-103 0.001 m³."""
    out = []
    for k in range(96 * days):
        start = int(day0.timestamp()) + 900 * k
        out.append(IntervalRecord("E-B1-103", start, 900, {
            "energy_total": (k % 5) * 10_000, "samples": 15, "good_samples": 15, "flag_gap": 0, "flag_reset": 0,
            "flag_first": 0, "power_avg": 1.0, "power_max": 1.5, "power_min": 0.5,
        }))
        out.append(IntervalRecord("W-B1-103", start, 900, {
            "volume_total": 1000, "samples": 15, "good_samples": 15, "flag_gap": 0, "flag_reset": 0, "flag_first": 0,
        }))
    return out


@pytest.fixture
async def history_hmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Hmi, date]]:
    """The demo with 3 days of stored intervals for room B1-R103, ending yesterday."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    yesterday = datetime.now(TZ).date() - timedelta(days=1)
    day0 = datetime.combine(yesterday - timedelta(days=2), datetime.min.time(), TZ)
    backend = make_backend(SqliteSettings(tmp_path / "historian.db"))
    await backend.open()
    records = _records(day0, 3)
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, TZ))
    await backend.close()
    async with running_server(demo_site_config(tmp_path)) as rt:
        await add_role_users(rt.ctx[USERS])
        yield Hmi(rt, rt.ctx[HMI_URL]), yesterday


def test_windows() -> None:
    d = date(2026, 2, 10)
    start, end, interval = trend_window("day", d, TZ)
    assert (start.isoformat(), end.isoformat(), interval) == ("2026-02-10T00:00:00+08:00", "2026-02-11T00:00:00+08:00", "1h")
    start, end, interval = trend_window("week", d, TZ)
    assert (start.date(), end.date(), interval) == (date(2026, 2, 4), date(2026, 2, 11), "1d")
    start, end, _ = trend_window("month", d, TZ)
    assert (start.date(), end.date()) == (date(2026, 2, 1), date(2026, 3, 1))
    assert trend_window("month", date(2026, 12, 31), TZ)[1].date() == date(2027, 1, 1)


async def test_trend_api(history_hmi: tuple[Hmi, date]) -> None:
    hmi, yesterday = history_hmi
    headers = await bearer(hmi, "viewer1", PASSWORDS["viewer1"])  # a viewer may see a room's use
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(hmi.api + f"/rooms/B1-R103/trend?range=day&date={yesterday}") as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        energy = body["series"]["energy_total"]
        assert energy["unit"] == "kWh" and len(energy["points"]) == 24
        # hour h holds intervals 4h..4h+3 of the day (the day starts at k = 96·2): (k % 5) / 100 each
        first = [(96 * 2 + i) % 5 for i in range(4)]
        assert energy["points"][0]["v"] == pytest.approx(sum(first) / 100) and energy["points"][0]["intervals"] == 4
        assert body["series"]["volume_total"]["unit"] == "m3" and body["series"]["volume_total"]["points"][5]["v"] == pytest.approx(0.004)
        async with http.get(hmi.api + f"/rooms/B1-R103/trend?range=week&date={yesterday}") as r:
            week = (await r.json())["series"]["energy_total"]["points"]
        assert len(week) == 7 and [p["v"] is not None for p in week] == [False] * 4 + [True] * 3
        assert week[-1]["intervals"] == 96
        async with http.get(hmi.api + f"/rooms/B1-R103/trend?range=month&date={yesterday}") as r:
            month = (await r.json())["series"]["energy_total"]["points"]
        assert len(month) == calendar.monthrange(yesterday.year, yesterday.month)[1]
        async with http.get(hmi.api + "/rooms/B1-R101/trend") as r:
            assert set((await r.json())["series"]) == {"energy_total"}  # no water meter in R101
        for query, status, field in (("?range=year", 422, "range"), ("?date=yesterday", 422, "date"), ("?range=day&x=1", 422, "x")):
            async with http.get(hmi.api + "/rooms/B1-R103/trend" + query) as r:
                assert r.status == status and (await r.json())["field"] == field, query
        async with http.get(hmi.api + "/rooms/NOPE/trend") as r:
            assert r.status == 404
    async with aiohttp.ClientSession() as anon:
        async with anon.get(hmi.api + "/rooms/B1-R103/trend") as r:
            assert r.status == 401


async def test_trend_chart_on_the_room_page(history_hmi: tuple[Hmi, date], browser: Browser, shots: Shots) -> None:  # noqa: F811
    hmi, yesterday = history_hmi
    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        await sign_in(page, hmi, "viewer1")
        await page.goto(hmi.url + "/rooms/B1-R103")
        trend = page.locator("#trend")
        await trend.locator("[data-date]").fill(yesterday.isoformat())
        await trend.locator("[data-date]").dispatch_event("change")
        energy = trend.locator('figure[data-series="energy_total"]')
        await expect(energy.locator("rect.chart-bar")).to_have_count(24)
        await expect(energy.locator("[data-total]")).to_contain_text("kWh")
        await expect(trend.locator('figure[data-series="volume_total"] rect.chart-bar')).to_have_count(24)
        await shots(page, "day")
        await trend.get_by_role("button", name="Week").click()
        await expect(energy.locator("rect.chart-bar")).to_have_count(3)  # 3 days of data in the last 7
        await expect(energy.locator("rect.chart-gap")).to_have_count(4)
        await trend.get_by_role("button", name="Earlier").click()
        await expect(trend).to_have_attribute("data-shown", f"week {yesterday - timedelta(days=7)}")
        await shots(page, "week-before")
        # on a phone the chart is drawn at the phone's width: its labels stay readable (not scaled
        # down to a few pixels), fewer of them, and the page does not scroll sideways
        await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        await trend.get_by_role("button", name="Day").click()
        await trend.locator("[data-date]").fill(yesterday.isoformat())
        await trend.locator("[data-date]").dispatch_event("change")
        await expect(trend).to_have_attribute("data-shown", f"day {yesterday}")
        await expect(energy.locator("rect.chart-bar")).to_have_count(24)
        hours = await energy.locator("text.chart-tick").all_text_contents()
        assert "00" in hours and 4 <= len([h for h in hours if len(h) == 2]) < 24, hours
        assert await small_text(page) == [] and await overflow(page) == 0
        await shots(page, "day-phone")
    finally:
        await page.close()


async def test_a_late_answer_for_an_earlier_choice_does_not_replace_the_chart(
    history_hmi: tuple[Hmi, date], browser: Browser  # noqa: F811
) -> None:
    """Two days chosen one after the other: the first day's answer, arriving last, is not drawn
    over the second's (the chart and its caption stay on the day chosen last)."""
    hmi, yesterday = history_hmi
    earlier = (yesterday - timedelta(days=7)).isoformat()
    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    release = asyncio.Event()

    async def hold_the_earlier_day(route: Route) -> None:
        if f"date={earlier}" in route.request.url:
            await release.wait()
        await route.continue_()

    try:
        await sign_in(page, hmi, "viewer1")
        await page.goto(hmi.url + "/rooms/B1-R103")
        trend = page.locator("#trend")
        await expect(trend).to_have_attribute("data-shown", re.compile(r"^day "))
        await page.route("**/trend?*", hold_the_earlier_day)
        date_input = trend.locator("[data-date]")
        await date_input.fill(earlier)
        await date_input.dispatch_event("change")
        await date_input.fill(yesterday.isoformat())
        await date_input.dispatch_event("change")
        energy = trend.locator('figure[data-series="energy_total"]')
        await expect(trend).to_have_attribute("data-shown", f"day {yesterday}")
        await expect(energy.locator("rect.chart-bar")).to_have_count(24)
        async with page.expect_response(lambda r: f"date={earlier}" in r.url):
            release.set()
        await page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # its handler has run
        await expect(trend).to_have_attribute("data-shown", f"day {yesterday}")
        await expect(energy.locator("rect.chart-bar")).to_have_count(24)
    finally:
        release.set()
        await page.close()
