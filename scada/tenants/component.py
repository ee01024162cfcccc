"""Tenant self-service as a runtime component (``ctx[TENANTS]``): PINs, one-time codes sent
through the notifier's SMS channel, tenant sessions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from scada.alarms.component import NOTIFIER
from scada.alarms.notify.delivery import Channel, OutgoingMessage
from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component
from scada.db.component import DATABASE
from scada.prepaid.engine import PREPAID
from scada.tenants.service import SendSms, TenantService

__all__ = ["TENANTS", "TenantsComponent"]

log = logging.getLogger(__name__)

TENANTS: Key[TenantService] = Key("tenants", TenantService)


class TenantsComponent(Component):
    """Runs :class:`TenantService` (``ctx[TENANTS]``), its one-time codes sent through the notifier's SMS channel."""

    name = "tenants"
    requires = (CONFIG, DATABASE, PREPAID)
    optional = (NOTIFIER,)  # its SMS channel carries the one-time codes
    provides = (TENANTS,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        cfg = config.tenants
        send: SendSms | None = None
        notifier = ctx.get(NOTIFIER)
        if notifier is not None:
            channel: Channel | None
            if cfg.code_channel:
                channel = notifier.channels.get(cfg.code_channel)
            else:
                channel = next((c for c in notifier.channels.values() if c.kind == "sms"), None)
            if channel is not None:
                sms = channel

                async def send_sms(phone: str, text: str, language: str) -> None:
                    # straight through the channel, not the delivery log: a code must not be kept
                    # where staff can read it, and it is useless once late
                    await sms.send(OutgoingMessage(0, "code", phone, language, "", text))

                send = send_sms
        if send is None:
            log.info("tenant sign-in by SMS code is off: no SMS channel (alarms.notifications.channels)")
        ctx[TENANTS] = TenantService(cfg, ctx[DATABASE], site_name=config.site.name, send_sms=send)
        yield
