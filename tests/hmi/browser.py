"""Headless Chromium (Debian's) driven by Playwright's async API, with screenshots kept as
test artifacts under build/artifacts/hmi/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from ..services import build_dir

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Shots", "chromium"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Shots:
    """Numbered screenshots of one test's steps."""

    def __init__(self, test_name: str) -> None:
        self.folder = build_dir() / "artifacts" / "hmi" / re.sub(r"[^\w.-]+", "_", test_name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.n = 0

    async def __call__(self, page: Page, step: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path
