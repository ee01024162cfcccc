"""Every page of the operator HMI passes an automated WCAG 2.1 AA audit (axe-core: no serious or
critical violation) at a phone's size (390 × 844) and a desktop's; at the phone's size no page
scrolls sideways, no chart's labels shrink below 10 px, and the room grid, a room, the alarm
console and the cashier offer no touch target smaller than 44 px. One demo server for the module (its accounts, bills, meter tree,
apportionment rule and alarms give the pages something to show; the test adds a finished job
and, on the import page, a dry run with a bad row so that its error table is audited too)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from hmi.component import HMI_URL
from scada.billing.service import BILLING_SERVICE
from scada.operations.component import JOBS
from scada.prepaid.engine import PREPAID
from scada.users.audit import Actor
from scada.users.component import USERS

from ..services import require_services
from ..threaded import ThreadedServer, threaded_server
from .axe import DESKTOP, PHONE, audit, overflow, small_targets, small_text, violations_text
from .browser import CHROMIUM, Shots, chromium
from .conftest import ADMIN_PASSWORD, demo_site_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OPERATOR_PAGES = [
    "/", "/?state=low", "/rooms/B1-R101", "/alarms", "/alarms/history", "/cashier", "/cashier?q=R10", "/cashier?room=B1-R101",
    "/accounts", "/accounts?room=B1-R101", "/accounts?room=B1-R104", "/tariffs", "/comms", "/users", "/approvals",
    "/customers", "/charges", "/billing", "/bills", "/statements?room=B1-R101", "/adjustments", "/arrears", "/rooms/NOPE",
    "/jobs", "/messages", "/accounts/import", "/reports", "/meters", "/losses", "/apportionment",
]  # and, made by the test: /jobs/{id} (a finished job), /bills/{id} (one of the demo's issued bills), a receipt
IMPORT_CSV = """customer,contact,language,room,mode,tariff,opening_balance,thresholds,credit_limit,water_tariff
Zhao Liu,+8613800000006,zh-CN,B1-R999,prepaid,FLAT,10,,,
"""
PHONE_PAGES = ["/", "/rooms/B1-R101", "/alarms", "/cashier?room=B1-R101"]
CHARTS = {"/rooms/B1-R101": "#trend[data-shown]", "/losses": "#loss-chart[data-bars]"}  # drawn once their data came


@dataclass
class Demo:
    srv: ThreadedServer
    url: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    config = demo_site_config(tmp_path_factory.mktemp("a11y"))
    with threaded_server(config, env={"SCADA_ADMIN_PASSWORD": ADMIN_PASSWORD}, demo=True) as srv:
        assert srv.rt is not None
        yield Demo(srv, srv.rt.ctx[HMI_URL])


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if require_services():
            pytest.fail(f"required test browser missing: {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    async with chromium() as b:
        yield b


async def sign_in(page: Page, url: str) -> None:
    await page.goto(url + "/login")
    await page.locator('input[name="user"]').fill("admin")
    await page.locator('input[name="password"]').fill(ADMIN_PASSWORD)
    await page.locator('form[action="/login"] button[type="submit"]').click()
    await expect(page).to_have_url(url + "/")


async def settle(page: Page) -> None:
    """The page's scripts have drawn what the feed sent (a live page says so)."""
    live = page.locator("#live-status")
    if await live.count():
        await expect(live).to_have_attribute("data-state", "live", timeout=10_000)
    await page.wait_for_timeout(150)


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_every_operator_page_passes_the_wcag_21_aa_audit(demo: Demo, browser: Browser, size: str,
                                                               request: pytest.FixtureRequest, tmp_path: Path) -> None:
    shots = Shots(request.node.name)
    viewport = PHONE if size == "phone" else DESKTOP
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    found: dict[str, list[dict[str, object]]] = {}
    layout: dict[str, object] = {}
    try:
        engine = demo.srv.rt.ctx[PREPAID]  # type: ignore[union-attr]
        _, entries = await demo.srv.run(lambda: engine.ledger("B1-R101", limit=1))
        bills = await demo.srv.run(lambda: demo.srv.rt.ctx[BILLING_SERVICE].bills(limit=1))  # type: ignore[union-attr]
        assert bills, "the demo issues last month's bills"
        job = await _finished_job(demo)
        pages = [*OPERATOR_PAGES, f"/cashier/receipt/B1-R101/{entries[0].id}", f"/jobs/{job}", f"/bills/{bills[0]['id']}"]
        found_signed_out = await _signed_out_pages(page, demo.url)
        found.update(found_signed_out)
        await sign_in(page, demo.url)
        for path in pages:
            response = await page.goto(demo.url + path)
            assert response is not None and response.status in (200, 404), (path, response.status if response else None)
            await settle(page)
            if path in CHARTS:
                await expect(page.locator(CHARTS[path])).to_have_count(1, timeout=10_000)
                assert await page.locator(CHARTS[path] + " svg text").count() > 0, path
            if path == "/accounts/import":
                await _dry_run_with_a_bad_row(page, tmp_path)
            violations = await audit(page)
            if violations:
                found[path] = violations
            if size == "phone":
                layout[path] = {"overflow": await overflow(page), "small": await small_targets(page) if path in PHONE_PAGES else [],
                                "text": await small_text(page)}
                await shots(page, re.sub(r"\W+", "-", path).strip("-") or "grid")
    finally:
        await context.close()
    assert not found, "\n" + violations_text(found)
    bad = {p: v for p, v in layout.items() if v["overflow"] > 0 or v["small"] or v["text"]}  # type: ignore[index]
    assert not bad, "\n".join(f"{p}: overflow {v['overflow']} px; small: {v['small']}; small text: {v['text']}"  # type: ignore[index]
                               for p, v in bad.items())


async def _finished_job(demo: Demo) -> int:
    """A read-now job over two rooms' meters, run to its end: its page lists its items."""
    rt = demo.srv.rt
    assert rt is not None
    service = rt.ctx[JOBS]

    async def create() -> int:
        admin = await rt.ctx[USERS].get("admin")
        assert admin is not None
        view = await service.create("read_now", {"rooms": ["B1-R101", "B1-R102"]}, {}, user=admin, actor=Actor("admin", "api", "admin"))
        return view.id

    job_id = await demo.srv.run(create)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (state := (await demo.srv.run(lambda: service.get(job_id, items=False))).state) not in ("done", "failed"):
        assert loop.time() < deadline, f"job {job_id} stayed {state}"
        await asyncio.sleep(0.1)
    return job_id


async def _dry_run_with_a_bad_row(page: Page, tmp_path: Path) -> None:
    """The import page's dry run of a file with a bad row: the error table is shown."""
    csv = tmp_path / "accounts.csv"
    csv.write_text(IMPORT_CSV)
    await page.locator('input[type="file"]').set_input_files(str(csv))
    await page.locator('button[data-mode="dry"]').click()
    await expect(page.locator("#import-summary")).to_contain_text("1 rows: 0 good, 1 bad")
    await expect(page.locator("#import-errors tbody tr").first).to_be_visible()


async def _signed_out_pages(page: Page, url: str) -> dict[str, list[dict[str, object]]]:
    found = {}
    for path in ("/login",):
        await page.goto(url + path)
        violations = await audit(page)
        if violations:
            found[path] = violations
    return found
