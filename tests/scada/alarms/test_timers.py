"""The engine's own tasks, left alone (no test calling settle): a condition that starts waiting
for its delay is raised once the delay is over, by the timer loop alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from scada.alarms.clock import ManualClock
from scada.db import Database

from .harness import alarm_runtime, config_with
from .site import build_site, site_toml


async def test_a_delayed_condition_is_raised_by_the_timer_loop_alone(tmp_path: Path, db: Database, db_url: str) -> None:
    assets = await build_site(db, site_toml(2, link="gw-9"))
    config = config_with(tmp_path, db_url, "[alarms.classes.link_down]\ndelay_on_s = 5\n")
    clock = ManualClock(datetime(2026, 3, 2, 4, 0, tzinfo=UTC))
    async with alarm_runtime(config, db, assets, clock) as alarms:
        alarms.tags.write("link:gw-9.comm_ok", True)
        alarms.tags.write("link:gw-9.comm_ok", False)
        for _ in range(50):  # the tag task takes the change and the timer loop its deadline
            await asyncio.sleep(0.01)
        assert alarms.engine.active() == []
        clock.advance(6)
        for _ in range(200):
            if alarms.engine.active():
                break
            await asyncio.sleep(0.01)
        assert [(a.alarm_class, a.object_id) for a in alarms.engine.active()] == [("link_down", "gw-9")]
