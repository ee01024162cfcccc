"""The HMI component: serves the pages, the WebSocket feed and the JSON API on the configured
(loopback) address, and follows the tag stream for the live views."""

from __future__ import annotations

import logging

from aiohttp import web

from scada.context import Context, Key
from scada.foundation import ASSETS, AUDIT, CONFIG, DATABASE, TAGDB, USERS
from scada.runtime import Component, Restart

from .app import create_app
from .live import LiveRooms

__all__ = ["HMI_URL", "HmiComponent"]

log = logging.getLogger(__name__)

HMI_URL: Key[str] = Key("hmi_url", str)


class HmiComponent(Component):
    name = "hmi"
    requires = (CONFIG, DATABASE, USERS, AUDIT, ASSETS, TAGDB)
    provides = (HMI_URL,)

    def __init__(self) -> None:
        super().__init__()
        self.runner: web.AppRunner | None = None
        self.live: LiveRooms | None = None

    async def start(self, ctx: Context) -> None:
        config = ctx[CONFIG]
        self.live = live = LiveRooms(ctx[ASSETS], ctx[TAGDB], minor_units=config.site.currency_minor_units)
        live.start()
        self.tasks.spawn(live.run, "live-rooms", restart=Restart.ON_FAILURE)
        app = create_app(ctx, live=live)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, config.hmi.host, config.hmi.port)
        await site.start()
        port = self.runner.addresses[0][1]  # the real port when configured as 0
        url = f"http://{config.hmi.host}:{port}"
        ctx[HMI_URL] = url
        log.info("HMI listening", extra={"url": url})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.live is not None:
            self.live.close()
