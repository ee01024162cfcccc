"""The HMI component: serves the aiohttp application on the configured (loopback) address."""

from __future__ import annotations

import logging

from aiohttp import web

from scada.context import Context, Key
from scada.foundation import AUDIT, CONFIG, USERS
from scada.runtime import Component

from .app import create_app

__all__ = ["HMI_URL", "HmiComponent"]

log = logging.getLogger(__name__)

HMI_URL: Key[str] = Key("hmi_url", str)


class HmiComponent(Component):
    name = "hmi"
    requires = (CONFIG, USERS, AUDIT)
    provides = (HMI_URL,)

    def __init__(self) -> None:
        super().__init__()
        self.runner: web.AppRunner | None = None

    async def start(self, ctx: Context) -> None:
        config = ctx[CONFIG]
        app = create_app(ctx)
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
