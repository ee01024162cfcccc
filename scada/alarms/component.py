"""Runtime components: the alarm engine, the notifier, and a contact file.

Context keys: :data:`ALARMS` (the :class:`AlarmEngine`: the Python API for the HMI, the REST
API and OPC UA), :data:`NOTIFIER` (the :class:`Notifier` and its delivery log) and
``notify.contacts.CONTACTS`` (provided by :class:`ContactFileComponent` when
``alarms.notifications.contacts_file`` is set; the prepaid engine provides it otherwise).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from scada.alarms.alarm import Alarm, AlarmState
from scada.alarms.clock import Clock, SystemClock
from scada.alarms.engine import AlarmEngine
from scada.alarms.notify.channels import build_channel
from scada.alarms.notify.contacts import CONTACTS, StaticContactDirectory
from scada.alarms.notify.delivery import Channel
from scada.alarms.notify.notifier import Notifier
from scada.alarms.notify.templates import MessageTemplates
from scada.config import CONFIG
from scada.core.configbase import SecretError
from scada.core.context import Context, Key
from scada.core.runtime import Component
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.site.component import ASSETS
from tags import names

__all__ = ["ALARMS", "AlarmComponent", "ContactFileComponent", "NOTIFIER", "NotificationComponent"]

log = logging.getLogger(__name__)

ALARMS: Key[AlarmEngine] = Key("alarms", AlarmEngine)
NOTIFIER: Key[Notifier] = Key("notifier", Notifier)


class AlarmComponent(Component):
    """Provides the alarm engine (``ctx[ALARMS]``): conditions from tags, ISA-18.2 states, history."""
    name = "alarms"
    requires = (CONFIG, DATABASE, ASSETS, TAGDB)
    provides = (ALARMS,)

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        engine = AlarmEngine(ctx[DATABASE], ctx[TAGDB], ctx[ASSETS], config.alarms, clock=self.clock)
        await engine.start()
        try:
            self.tasks.spawn(engine.run_tags, "tags")
            self.tasks.spawn(engine.run_timers, "timers")
            self.tasks.spawn(engine.run_sync, "sync")
            ctx[ALARMS] = engine
            yield
        finally:
            await engine.close()


class ContactFileComponent(Component):
    """Room contacts from ``alarms.notifications.contacts_file``."""

    name = "contacts"
    requires = (CONFIG,)
    provides = (CONTACTS,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        path = config.alarms.notifications.contacts_file
        assert path is not None
        directory = StaticContactDirectory.load(config.path(path))
        ctx[CONTACTS] = directory
        log.info("room contacts loaded", extra={"file": path, "contacts": len(directory)})
        yield


class NotificationComponent(Component):
    """Provides the notifier (``ctx[NOTIFIER]``): routes alarm events to e-mail, webhook and SMS channels."""
    name = "notifications"
    requires = (CONFIG, DATABASE, ASSETS, TAGDB, ALARMS)
    optional = (CONTACTS,)  # read at each message: the room contacts of a file or of the accounts
    provides = (NOTIFIER,)

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        settings = config.alarms.notifications
        base_dir = Path(config.base_dir)
        templates = MessageTemplates(config.path(settings.templates_dir) if settings.templates_dir else None)
        for template in sorted({r.template for r in settings.routes}):
            templates.check(template)
        channels: dict[str, Channel] = {}
        for c in settings.channels:
            try:
                channels[c.name] = build_channel(c, base_dir)
            except (SecretError, OSError, ValueError) as exc:  # a missing secret or CA file fails the start
                raise RuntimeError(f"alarms.notifications.channels {c.name!r}: {exc}") from None
        engine = ctx[ALARMS]
        assets, tagdb = ctx[ASSETS], ctx[TAGDB]
        site = config.site
        tz = site.tz
        quantum = Decimal(1).scaleb(-site.currency_minor_units)

        def facts(alarm: Alarm) -> dict[str, Any]:
            snap = assets.snapshot
            room = snap.rooms.get(alarm.room_id) if alarm.room_id else None
            balance = None
            if alarm.room_id:
                value = tagdb.get(names.room_tag(alarm.room_id, "balance"))
                if value is not None and value.good and isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
                    balance = format(Decimal(str(value.value)).quantize(quantum), "f")  # display only
            now: datetime = self.clock.now()
            return {
                "site": site.name, "room": room.name if room else None, "balance": balance,
                "currency": site.currency, "when": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            }

        def relevance(alarm_id: int) -> str | None:
            alarm = engine.get(alarm_id)
            if alarm is None:
                return "the alarm ended before the message could go"
            if not alarm.condition_active:
                return "the alarm cleared before the message could go"
            if alarm.state in (AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE):
                return f"the alarm was {alarm.state.value.replace('_', ' ')} before the message could go"
            return None

        notifier = Notifier(
            ctx[DATABASE], settings, channels=channels, templates=templates, clock=self.clock, tz=tz, facts=facts,
            contacts=lambda: ctx.get(CONTACTS), relevance=relevance,
        )
        resumed = await notifier.load()
        remove_listener = engine.add_listener(notifier.submit)
        try:
            self.tasks.spawn(notifier.run_intake, "intake")
            self.tasks.spawn(notifier.run_scheduler, "scheduler")
            for i in range(settings.workers):
                self.tasks.spawn(notifier.run_worker, f"worker-{i}")
            ctx[NOTIFIER] = notifier
            log.info("notifier started", extra={"channels": len(channels), "routes": len(settings.routes), "resumed": resumed})
            yield
        finally:
            remove_listener()
            await notifier.close()
