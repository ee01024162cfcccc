"""Online payment as a runtime component (``ctx[PAYMENTS]``): the providers, the order service,
the recovery at start (paid orders a crash left uncredited are credited), the periodic expiry
and recovery, and the daily reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable

from scada.alarms.component import NOTIFIER
from scada.approvals.component import APPROVALS
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.db.component import DATABASE
from scada.payments.messages import PaymentMessenger
from scada.payments.orders import KIND_REFUND, PaymentService
from scada.payments.provider import PaymentProvider
from scada.payments.reconcile import reconcile_day
from scada.payments.sandbox import SandboxBank, SandboxKeys, SandboxProvider
from scada.prepaid.approvals import PREPAID_APPROVALS
from scada.prepaid.engine import PREPAID
from tags import utcnow
from tags.timers import run_every

__all__ = ["PAYMENTS", "PaymentsComponent", "sandbox_keys"]

log = logging.getLogger(__name__)

PAYMENTS: Key[PaymentService] = Key("payments", PaymentService)


def sandbox_keys(config: ScadaConfig) -> SandboxKeys:
    """The sandbox provider's key pair (``payments.sandbox.key_file`` under the data folder)."""
    path = config.data_dir / config.payments.sandbox.key_file
    return SandboxKeys.load_or_create(path)


class PaymentsComponent(Component):
    """Runs :class:`PaymentService` with the configured providers."""

    name = "payments"
    requires = (CONFIG, DATABASE, PREPAID, PREPAID_APPROVALS, APPROVALS)
    optional = (NOTIFIER,)  # the payment message goes through its channels
    provides = (PAYMENTS,)

    def __init__(self, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        super().__init__()
        self.clock = clock

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        cfg = config.payments
        engine = ctx[PREPAID]
        service_ref: list[PaymentService] = []

        def spawn(factory: Callable[[], object], name: str) -> object:
            return self.tasks.spawn(factory, name, restart=Restart.NEVER)  # type: ignore[arg-type]

        providers: dict[str, PaymentProvider] = {}
        if "sandbox" in cfg.providers:
            keys = await asyncio.to_thread(sandbox_keys, config)
            bank = SandboxBank(ctx[DATABASE], keys, cfg.sandbox, minor_units=engine.minor_units,
                               pay_base=lambda: service_ref[0].public_url, spawn=spawn, clock=self.clock)
            providers["sandbox"] = SandboxProvider(bank, replay_window_s=cfg.replay_window_s)
        rule = ctx[PREPAID_APPROVALS].rule
        service = PaymentService(cfg, ctx[DATABASE], engine, providers, site_name=config.site.name, refund_rule=rule.refund,
                                 approvals=ctx[APPROVALS], spawn=spawn, clock=self.clock)
        service_ref.append(service)
        notifier = ctx.get(NOTIFIER)
        if notifier is not None and cfg.message_channels:
            messenger = PaymentMessenger(notifier, engine, cfg.message_channels, site_name=config.site.name, spawn=spawn)
            service.credited_listeners.append(messenger.on_credited)
        elif cfg.message_channels:
            log.warning("payment messages are off: the notifier does not run (alarms.notifications)")
        try:
            await ctx[APPROVALS].resume([KIND_REFUND])
            credited = await service.recover()  # what a crash left between paid and credited
            if credited:
                log.info("payments credited after a restart", extra={"orders": credited})
            self.tasks.spawn(lambda: run_every(cfg.recover_every_s, service.recover, name="payments-recover"), "recover",
                             restart=Restart.ON_FAILURE)
            if cfg.reconcile_at and providers:
                self.tasks.spawn(lambda: self._daily(service, config), "reconcile", restart=Restart.ON_FAILURE)
            ctx[PAYMENTS] = service
            yield
        finally:
            service.close()
            for provider in providers.values():
                await provider.close()

    async def _daily(self, service: PaymentService, config: ScadaConfig) -> None:
        """Reconcile the previous local day of every provider at ``payments.reconcile_at``."""
        tz = config.site.tz
        hh, mm = (int(x) for x in config.payments.reconcile_at.split(":"))
        while True:
            local = self.clock().astimezone(tz)
            due = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
            if due <= local:
                due += dt.timedelta(days=1)
            await asyncio.sleep(max((due - local).total_seconds(), 0.0))
            day = due.date() - dt.timedelta(days=1)
            for name in service.providers:
                try:
                    await reconcile_day(service.db, service.providers[name], day, tz=tz, minor_units=service.minor_units,
                                        now=self.clock())
                except Exception:
                    log.exception("payment reconciliation failed", extra={"provider": name, "day": day.isoformat()})
