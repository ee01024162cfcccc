"""Operations as a runtime component: the jobs engine (``ctx[JOBS]``), the meter-side settings
checks, pre-set accounts and tenant messages, each part where what it needs is running."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from protocols.modbus.params import TouTableBlock
from scada.alarms.clock import Clock, SystemClock
from scada.alarms.component import NOTIFIER
from scada.approvals.component import APPROVALS
from scada.commands.service import COMMANDS, METER_ACCESS, PARAMETER_DRIVER, SUPPLY_DRIVER
from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.prepaid.engine import PREPAID
from scada.site.assets import MeterInfo
from scada.site.component import ASSETS
from scada.users.component import USERS

from .kinds import JobContext, tou_table_of
from .messages import MessageTemplates, TenantMessenger
from .meters import MeterSettings
from .prepared import PreparedAccounts
from .service import JobService
from .targets import Selection

__all__ = ["JOBS", "OperationsComponent"]

log = logging.getLogger(__name__)

JOBS: Key[JobService] = Key("jobs", JobService)


class OperationsComponent(Component):
    """Provides the jobs engine (``ctx[JOBS]``); its ``ctx`` holds the meter settings
    (``meters``), the prepared accounts (``prepared``) and the tenant messenger (``messenger``)."""

    name = "operations"
    requires = (CONFIG, DATABASE, USERS, ASSETS, TAGDB)
    optional = (COMMANDS, SUPPLY_DRIVER, PARAMETER_DRIVER, METER_ACCESS, PREPAID, NOTIFIER, APPROVALS)
    provides = (JOBS,)

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        cfg = config.operations
        db, assets, tagdb = ctx[DATABASE], ctx[ASSETS], ctx[TAGDB]
        engine = ctx.get(PREPAID)
        access = ctx.get(METER_ACCESS)
        params = ctx.get(PARAMETER_DRIVER)
        notifier = ctx.get(NOTIFIER)
        backlog = access.link_backlog if access is not None else (lambda _link: 0)
        jobs_ctx = JobContext(
            config=cfg, assets=assets, tagdb=tagdb, tz=config.site.tz, minor_units=config.site.currency_minor_units,
            commands=ctx.get(COMMANDS), supply=ctx.get(SUPPLY_DRIVER), params=params,
            reader=access.poll_now if access is not None else None, prepaid=engine,
            max_amount=config.prepaid.max_amount,
        )
        if ctx.get(APPROVALS) is not None:
            minor = config.site.currency_minor_units
            rules = config.approvals
            jobs_ctx.approval_limits = {
                "open": int(rules.opening_balance_above.scaleb(minor)), "set_credit": int(rules.credit_limit_above.scaleb(minor)),
            }
        cleanups: list[Any] = []
        if params is not None:
            async def expected(meter: MeterInfo, block: TouTableBlock, day: dt.date) -> dict[str, list[tuple[str, str]]] | None:
                view = engine.views.get(meter.room_id or "") if engine is not None else None
                if engine is None or view is None or not view.open or not view.electricity_tariff_id:
                    return None
                try:
                    return await tou_table_of(engine, view.electricity_tariff_id, day, block.day_types)
                except LookupError:
                    return None  # a flat tariff: nothing to compare with

            meters = MeterSettings(
                assets, tagdb, params, tz=config.site.tz, expected_table=expected, link_backlog=backlog,
                link_of=access.link_of if access is not None else (lambda _m: None), max_defer_s=cfg.max_defer_s,
                every_s=cfg.tou_check_every_s, clock=self.clock,
            )
            meters.start()
            cleanups.append(meters.close)
            jobs_ctx.meters = meters
        if engine is not None:
            prepared = PreparedAccounts(db, engine, clock=self.clock.now, billing=config.billing.enabled)
            await prepared.load()
            jobs_ctx.prepared = prepared
            cleanups.append(engine.add_retention_eraser(prepared.erase_personal_data))
            if notifier is not None:
                unknown = [c for c in cfg.messages.channels if c not in notifier.channels]
                if unknown:
                    raise RuntimeError(
                        f"operations.messages.channels: unknown channel {unknown[0]!r} "
                        f"(alarms.notifications.channels: {', '.join(notifier.channels) or 'none'})"
                    )
                templates_dir = config.alarms.notifications.templates_dir
                messenger = TenantMessenger(
                    db, notifier, engine, cfg.messages, site_name=config.site.name,
                    templates=MessageTemplates(config.path(templates_dir) if templates_dir else None), now=self.clock.now,
                )
                jobs_ctx.messenger = messenger
                cleanups.append(engine.add_payment_listener(messenger.payment_listener(
                    lambda factory, name: self.tasks.spawn(factory, name, Restart.NEVER))))

        def arrears(room: str) -> bool:
            view = engine.views.get(room) if engine is not None else None
            return view is not None and view.open and view.balance_minor < 0

        def level(room: str) -> int | None:
            view = engine.views.get(room) if engine is not None else None
            return view.alarm_level if view is not None and view.open else None

        selection = Selection(
            arrears=arrears, alarm_level=level,
            prepared=jobs_ctx.prepared.rooms if jobs_ctx.prepared is not None else set,
        )
        service = JobService(db, jobs_ctx, ctx[USERS], self.tasks, clock=self.clock, link_backlog=backlog, selection=selection,
                             approvals=ctx.get(APPROVALS))
        try:
            await service.start()
            self.tasks.spawn(service.run_scheduler, "scheduler", Restart.ON_FAILURE)
            if jobs_ctx.meters is not None and cfg.enabled:
                self.tasks.spawn(jobs_ctx.meters.run, "tou-checks", Restart.ON_FAILURE)
            if jobs_ctx.messenger is not None:
                self.tasks.spawn(jobs_ctx.messenger.run, "reminders", Restart.ON_FAILURE)
            ctx[JOBS] = service
            log.info("operations started", extra={"meter_settings": jobs_ctx.meters is not None,
                                                   "messages": jobs_ctx.messenger is not None})
            yield
        finally:
            await service.stop()
            for cleanup in reversed(cleanups):
                cleanup()

