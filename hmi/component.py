"""The HMI component: serves the pages, the WebSocket feed and the JSON API on the configured
(loopback) address, and follows the tag stream for the live views."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from scada.alarms.component import ALARMS, NOTIFIER
from scada.commands.service import COMMANDS, SUPPLY_DRIVER
from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import HISTORY
from scada.operations.component import JOBS
from scada.polling.component import MODBUS
from scada.prepaid.engine import PREPAID
from scada.site.component import ASSETS
from scada.users.component import AUDIT, USERS

from .app import create_app
from .live import LiveRooms

__all__ = ["HMI_URL", "HmiComponent"]

log = logging.getLogger(__name__)

HMI_URL: Key[str] = Key("hmi_url", str)


class HmiComponent(Component):
    """Serves the HMI and the REST API (``ctx[HMI_URL]`` is where); the pages and endpoints of
    the optional parts (prepaid, alarms, history, commands) appear when those parts run."""

    name = "hmi"
    requires = (CONFIG, DATABASE, USERS, AUDIT, ASSETS, TAGDB)
    # read by pages and endpoints when present; the HMI starts after them
    optional = (PREPAID, ALARMS, NOTIFIER, HISTORY, COMMANDS, SUPPLY_DRIVER, MODBUS, JOBS)
    provides = (HMI_URL,)

    def __init__(self) -> None:
        super().__init__()
        self.live: LiveRooms | None = None
        self.app: web.Application | None = None  # while serving

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        self.live = live = LiveRooms(ctx[ASSETS], ctx[TAGDB], minor_units=config.site.currency_minor_units)
        live.start()
        try:
            self.tasks.spawn(live.run, "live-rooms", restart=Restart.ON_FAILURE)
            self.app = app = create_app(ctx, live=live)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
            await runner.setup()
            try:
                site = web.TCPSite(runner, config.hmi.host, config.hmi.port)
                await site.start()
                port = runner.addresses[0][1]  # the real port when configured as 0
                url = f"http://{config.hmi.host}:{port}"
                ctx[HMI_URL] = url
                log.info("HMI listening", extra={"url": url})
                yield
            finally:
                await runner.cleanup()
        finally:
            live.close()
