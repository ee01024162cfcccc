"""The one periodic timer of the project: run a step every so often until cancelled.

The next step is scheduled when the current one ends (a slow step never overlaps the next),
with optional jitter so that many timers started together spread out. A step that raises is
logged and the timer goes on: a periodic job must not die of one bad round.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

__all__ = ["run_every"]

log = logging.getLogger(__name__)


async def run_every(
    interval_s: float,
    step: Callable[[], Awaitable[object]],
    *,
    name: str,
    jitter: float = 0.0,
    first_delay_s: float | None = None,
    log_failures: bool = True,
) -> None:
    """Await ``step()`` every ``interval_s`` seconds (after ``first_delay_s``, by default one interval)
    until cancelled. ``jitter`` spreads each delay by ±that fraction. A failing step is logged
    (under ``name``) when ``log_failures``, and re-raised otherwise, for a supervisor to restart."""
    if interval_s <= 0:
        raise ValueError(f"{name}: interval must be positive, found {interval_s}")
    delay = interval_s if first_delay_s is None else first_delay_s
    while True:
        if jitter:
            delay *= random.uniform(1 - jitter, 1 + jitter)
        await asyncio.sleep(delay)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not log_failures:
                raise
            log.warning("periodic step failed", extra={"timer": name, "error": repr(exc)})
        delay = interval_s
