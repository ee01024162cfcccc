"""Every page of the operator HMI passes an automated WCAG 2.1 AA audit (axe-core: no serious or
critical violation) at a phone's size (390 × 844) and a desktop's; at the phone's size the room
grid, a room, the alarm console and the cashier neither scroll sideways nor offer a touch target
smaller than 44 px. One demo server for the module (its accounts, bills and alarms give the
pages something to show)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, Page, expect

from hmi.component import HMI_URL
from scada.prepaid.engine import PREPAID

from ..services import require_services
from ..threaded import ThreadedServer, threaded_server
from .axe import DESKTOP, PHONE, audit, overflow, small_targets, violations_text
from .browser import CHROMIUM, Shots, chromium
from .conftest import ADMIN_PASSWORD, demo_site_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OPERATOR_PAGES = [
    "/", "/?state=low", "/rooms/B1-R101", "/alarms", "/alarms/history", "/cashier", "/cashier?q=R10", "/cashier?room=B1-R101",
    "/accounts", "/accounts?room=B1-R101", "/accounts?room=B1-R104", "/tariffs", "/comms", "/users", "/approvals",
    "/customers", "/charges", "/billing", "/bills", "/statements?room=B1-R101", "/adjustments", "/arrears", "/rooms/NOPE",
]
PHONE_PAGES = ["/", "/rooms/B1-R101", "/alarms", "/cashier?room=B1-R101"]


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
                                                               request: pytest.FixtureRequest) -> None:
    shots = Shots(request.node.name)
    viewport = PHONE if size == "phone" else DESKTOP
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    found: dict[str, list[dict[str, object]]] = {}
    layout: dict[str, object] = {}
    try:
        engine = demo.srv.rt.ctx[PREPAID]  # type: ignore[union-attr]
        _, entries = await demo.srv.run(lambda: engine.ledger("B1-R101", limit=1))
        pages = [*OPERATOR_PAGES, f"/cashier/receipt/B1-R101/{entries[0].id}"]
        found_signed_out = await _signed_out_pages(page, demo.url)
        found.update(found_signed_out)
        await sign_in(page, demo.url)
        for path in pages:
            response = await page.goto(demo.url + path)
            assert response is not None and response.status in (200, 404), (path, response.status if response else None)
            await settle(page)
            violations = await audit(page)
            if violations:
                found[path] = violations
            if size == "phone" and path in PHONE_PAGES:
                layout[path] = {"overflow": await overflow(page), "small": await small_targets(page)}
                await shots(page, re.sub(r"\W+", "-", path).strip("-") or "grid")
    finally:
        await context.close()
    assert not found, "\n" + violations_text(found)
    bad = {p: v for p, v in layout.items() if v["overflow"] > 0 or v["small"]}  # type: ignore[index]
    assert not bad, "\n".join(f"{p}: overflow {v['overflow']} px; small: {v['small']}" for p, v in bad.items())  # type: ignore[index]


async def _signed_out_pages(page: Page, url: str) -> dict[str, list[dict[str, object]]]:
    found = {}
    for path in ("/login",):
        await page.goto(url + path)
        violations = await audit(page)
        if violations:
            found[path] = violations
    return found
