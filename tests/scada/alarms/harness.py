"""The alarm and notification components started on a manual clock, with a real database,
a real TagDB and a real asset registry (no HMI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from scada.alarms.clock import ManualClock
from scada.alarms.component import (
    ALARMS,
    NOTIFIER,
    AlarmComponent,
    ContactFileComponent,
    NotificationComponent,
)
from scada.alarms.engine import AlarmEngine
from scada.alarms.notify.notifier import Notifier
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context
from scada.core.runtime import Component, Runtime
from scada.core.tags import TAGDB
from scada.db import Database
from scada.db.component import DATABASE
from scada.site.assets import AssetRegistry
from scada.site.component import ASSETS
from tags import TagDB

from ...harness import server_config
from .site import register_condition_tags

__all__ = ["Alarms", "alarm_runtime", "config_with"]


def config_with(tmp_path: Path, db_url: str, alarms_toml: str) -> ScadaConfig:
    return server_config(tmp_path, db_url, alarms_toml)


@dataclass
class Alarms:
    engine: AlarmEngine
    notifier: Notifier
    clock: ManualClock
    tags: TagDB

    async def settle(self) -> None:
        """Let the engine and then the notifier finish what is due now."""
        await self.engine.settle()
        await self.notifier.wait_idle()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()


@asynccontextmanager
async def alarm_runtime(config: ScadaConfig, db: Database, assets: AssetRegistry, clock: ManualClock) -> AsyncIterator[Alarms]:
    ctx = Context()
    tagdb = TagDB()
    register_condition_tags(tagdb, assets)
    ctx[CONFIG], ctx[DATABASE], ctx[ASSETS], ctx[TAGDB] = config, db, assets, tagdb
    components: list[Component] = [AlarmComponent(clock), NotificationComponent(clock)]
    if config.alarms.notifications.contacts_file:
        components.append(ContactFileComponent())
    runtime = Runtime(components, ctx=ctx)
    await runtime.start()
    try:
        yield Alarms(ctx[ALARMS], ctx[NOTIFIER], clock, tagdb)
    finally:
        await runtime.stop()
