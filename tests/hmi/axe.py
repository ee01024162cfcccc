"""The WCAG 2.1 AA audit of a page in the browser: axe-core (from npm, pinned in
tests/interop/package.json, installed by ``make services``) injected into the page by the test —
never copied into the repository — and checks of the phone layout (no sideways scrolling,
touch targets of 44 px)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from ..services import require_services

__all__ = ["AXE", "audit", "axe_source", "overflow", "small_targets", "small_text", "violations_text"]

AXE = Path(__file__).resolve().parents[1] / "interop" / "node_modules" / "axe-core" / "axe.min.js"
WCAG21AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


@functools.cache
def _read() -> str:
    return AXE.read_text(encoding="utf-8")


def axe_source() -> str:
    """axe-core's script, or the test is skipped (failed under ``make test``) when npm did not install it."""
    if not AXE.exists():
        message = f"axe-core is not installed ({AXE}): run make services (npm ci in tests/interop)"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    return _read()


async def audit(page: Page) -> list[dict[str, Any]]:
    """The serious and critical WCAG 2.1 A/AA violations of the page as it is now. The script is
    evaluated through the browser's debugging protocol, which the page's CSP does not govern."""
    source = axe_source()
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(source + "\n;undefined")
    result = await page.evaluate(
        "async (tags) => { const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '), summary: n.failureSummary}))})); }",
        WCAG21AA,
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def violations_text(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: {v['impact']} {v['id']}: {v['help']}")
            lines += [f"    {n['target']}: {n['summary'].splitlines()[-1] if n['summary'] else ''}" for n in v["nodes"]]
    return "\n".join(lines)


async def overflow(page: Page) -> int:
    """How far the page scrolls sideways (0: it does not)."""
    return int(await page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"))


async def small_targets(page: Page, minimum: float = 44.0) -> list[str]:
    """Visible controls smaller than ``minimum`` CSS pixels either way: buttons, fields, menus,
    summaries, and links that are not words inside a sentence (WCAG's inline exception); a
    checkbox or radio button counts with its label."""
    return list(await page.evaluate(
        """(min) => {
          const out = [];
          const seen = new Set();
          for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')) {
            let box = el;
            if (el.matches('input[type=checkbox], input[type=radio]') && el.closest('label')) box = el.closest('label');
            if (el.tagName === 'A' && el.closest('p, li.inline-text, .prose') && !el.closest('nav')) continue;
            if (seen.has(box)) continue;
            seen.add(box);
            const style = getComputedStyle(box);
            if (style.visibility === 'hidden' || style.display === 'none') continue;
            const r = box.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) continue;
            if (r.width + 0.5 < min || r.height + 0.5 < min) {
              const name = (el.getAttribute('aria-label') || el.textContent || el.name || el.id || '').trim().slice(0, 30);
              out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${name}" ${Math.round(r.width)}x${Math.round(r.height)}`);
            }
          }
          return out;
        }""",
        minimum,
    ))




async def small_text(page: Page, minimum: float = 10.0) -> list[str]:
    """Text drawn in an SVG chart smaller than ``minimum`` CSS pixels as shown: its font size
    times the chart's scale (a drawing wider than the screen is scaled down, and its labels
    with it)."""
    return list(await page.evaluate(
        """(min) => {
          const out = [];
          for (const el of document.querySelectorAll('svg text')) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 && box.height === 0) continue;
            const matrix = el.getScreenCTM();
            const scale = matrix ? Math.hypot(matrix.b, matrix.d) : 1;  // the vertical scale
            const px = parseFloat(getComputedStyle(el).fontSize) * scale;
            if (px + 0.05 < min) out.push(`${(el.textContent || '').trim().slice(0, 30)} ${px.toFixed(1)}px`);
          }
          return out;
        }""",
        minimum,
    ))
