"""The HMI component: serves the pages, the WebSocket feed and the JSON API on the configured
(loopback) address, and follows the tag stream for the live views."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from scada.alarms.component import ALARMS, NOTIFIER
from scada.approvals.component import APPROVALS
from scada.billing.service import BILLING_SERVICE
from scada.commands.service import COMMANDS, SUPPLY_DRIVER
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import HISTORY
from scada.payments.component import PAYMENTS
from scada.polling.component import COMMS, MODBUS
from scada.prepaid.approvals import PREPAID_APPROVALS
from scada.prepaid.engine import PREPAID
from scada.reports.service import REPORTS
from scada.site.component import ASSETS
from scada.tenants.component import TENANTS
from scada.topology.service import TOPOLOGY
from scada.users.component import AUDIT, LOGINS, USERS

from .app import create_app
from .live import LiveRooms

__all__ = ["HMI_URL", "HmiComponent"]

log = logging.getLogger(__name__)

HMI_URL: Key[str] = Key("hmi_url", str)


class HmiComponent(Component):
    """Serves the HMI and the REST API (``ctx[HMI_URL]`` is where); the pages and endpoints of
    the optional parts (prepaid, alarms, history, commands) appear when those parts run."""

    name = "hmi"
    requires = (CONFIG, DATABASE, USERS, AUDIT, LOGINS, ASSETS, TAGDB)
    # read by pages and endpoints when present; the HMI starts after them
    optional = (
        PREPAID, PREPAID_APPROVALS, APPROVALS, BILLING_SERVICE, PAYMENTS, TENANTS, ALARMS, NOTIFIER, HISTORY, COMMANDS, SUPPLY_DRIVER,
        MODBUS, COMMS, REPORTS, TOPOLOGY,
    )
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
            tls = await asyncio.to_thread(_tls_context, config) if config.hmi.tls_cert else None
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
            await runner.setup()
            try:
                site = web.TCPSite(runner, config.hmi.host, config.hmi.port, ssl_context=tls)
                await site.start()
                port = runner.addresses[0][1]  # the real port when configured as 0
                host = f"[{config.hmi.host}]" if ":" in config.hmi.host else config.hmi.host
                url = f"{'https' if tls else 'http'}://{host}:{port}"
                ctx[HMI_URL] = url
                payments = ctx.get(PAYMENTS)
                if payments is not None:
                    payments.bind_url(url)  # pay pages, return and notify URLs, unless payments.public_url says
                log.info("HMI listening", extra={"url": url})
                yield
            finally:
                await runner.cleanup()
        finally:
            live.close()


def _tls_context(config: ScadaConfig) -> ssl.SSLContext:
    """The HMI's HTTPS context from ``hmi.tls_cert`` and ``hmi.tls_key`` (PEM; TLS 1.2 at least)."""
    hmi = config.hmi
    assert hmi.tls_cert is not None and hmi.tls_key is not None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.path(hmi.tls_cert), config.path(hmi.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"hmi.tls_cert / hmi.tls_key: cannot load {hmi.tls_cert} with {hmi.tls_key}: {exc}") from None
    return ctx
