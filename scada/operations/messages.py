"""Messages to tenants: manual reminders and notices (``message`` jobs), repeated reminders
while an account stays at a balance level, a message on every payment, a daily summary.

Every message goes through the alarm notifier's delivery path
(:meth:`scada.alarms.notify.notifier.Notifier.queue_message`): the same channels (SMS gateway,
e-mail), retries, quiet hours and delivery log, which the HMI shows. The channel is the first
of ``operations.messages.channels`` the tenant has an address for. Messages are rendered per
the tenant's language from templates (``reminder``, ``notice``, ``payment``, ``daily_summary``;
a file ``<set>/<language>/{subject,body}.txt`` in ``alarms.notifications.templates_dir``
overrides one). Each message has a key (the job item's, ``reminder:<account>:<level>:<n>``,
``payment:<entry>``, ``summary:<account>:<day>``), so none is sent twice.

Reminders: an account at a balance level in ``reminders.levels`` is reminded every
``every_h`` hours, at most ``max_times`` times per level (the alarm's own notification is the
first word; the count starts again when the level changes); quiet hours hold them till morning.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import delete, func, select

from scada.alarms.notify.contacts import Contact
from scada.alarms.notify.notifier import Notifier, QueuedMessage
from scada.db import Database
from scada.prepaid.accounts import PostResult
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import AccountView
from scada.prepaid.levels import LEVEL_NAMES
from scada.prepaid.models import LedgerEntry
from scada.prepaid.money import format_minor
from tags.timers import run_every

from .config import MessagesConfig
from .models import ReminderRow

__all__ = ["MESSAGE_EVENTS", "MessageTemplates", "TenantMessenger"]

log = logging.getLogger(__name__)

MESSAGE_EVENTS = ("message", "reminder", "payment", "summary")
LEVEL_TEXT = {
    "en": {1: "low", 2: "very low", 3: "used up"},
    "zh-CN": {1: "不足", 2: "严重不足", 3: "已用尽"},
}

BUILTIN: dict[str, str] = {
    "reminder/en/subject.txt": "{{ site }}: please recharge room {{ room }}",
    "reminder/en/body.txt": """\
{% if contact %}Dear {{ contact.name }},{% else %}Dear tenant,{% endif %}
{% if level %}the prepaid balance of room {{ room }} is {{ level_text }}. {% endif %}
{%- if balance is not none %}Current balance: {{ balance }} {{ currency }}. {% endif %}Please recharge soon.
{% if text %}{{ text }}
{% endif %}{{ site }}, {{ when }}
""",
    "reminder/zh-CN/subject.txt": "{{ site }}：房间{{ room }}请及时充值",
    "reminder/zh-CN/body.txt": """\
{% if contact %}尊敬的{{ contact.name }}：{% else %}尊敬的用户：{% endif %}
{% if level %}您房间{{ room }}的预付费余额{{ level_text }}。{% endif %}
{%- if balance is not none %}当前余额：{{ balance }} {{ currency }}。{% endif %}请及时充值。
{% if text %}{{ text }}
{% endif %}{{ site }} {{ when }}
""",
    "notice/en/subject.txt": "{{ site }}: a notice for room {{ room }}",
    "notice/en/body.txt": "{% if contact %}Dear {{ contact.name }},{% else %}Dear tenant,{% endif %}\n{{ text }}\n{{ site }}, {{ when }}\n",
    "notice/zh-CN/subject.txt": "{{ site }}：房间{{ room }}通知",
    "notice/zh-CN/body.txt": "{% if contact %}尊敬的{{ contact.name }}：{% else %}尊敬的用户：{% endif %}\n{{ text }}\n{{ site }} {{ when }}\n",
    "payment/en/subject.txt": "{{ site }}: payment received for room {{ room }}",
    "payment/en/body.txt": """\
{% if contact %}Dear {{ contact.name }},{% else %}Dear tenant,{% endif %}
we received {{ amount }} {{ currency }} for room {{ room }}{% if bill %} on bill {{ bill }}{% endif %} (reference {{ reference }}). \
New balance: {{ balance }} {{ currency }}.
{{ site }}, {{ when }}
""",
    "payment/zh-CN/subject.txt": "{{ site }}：房间{{ room }}{% if bill %}缴费成功{% else %}充值成功{% endif %}",
    "payment/zh-CN/body.txt": """\
{% if contact %}尊敬的{{ contact.name }}：{% else %}尊敬的用户：{% endif %}
房间{{ room }}{% if bill %}已缴纳账单 {{ bill }} {{ amount }} {{ currency }}{% else %}已充值 {{ amount }} {{ currency }}{% endif %}\
（单号 {{ reference }}），当前余额 {{ balance }} {{ currency }}。
{{ site }} {{ when }}
""",
    "daily_summary/en/subject.txt": "{{ site }}: room {{ room }} on {{ day }}",
    "daily_summary/en/body.txt": """\
{% if contact %}Dear {{ contact.name }},{% else %}Dear tenant,{% endif %}
room {{ room }} used {{ deducted }} {{ currency }} on {{ day }}. Balance: {{ balance }} {{ currency }}.
{{ site }}
""",
    "daily_summary/zh-CN/subject.txt": "{{ site }}：房间{{ room }} {{ day }} 用量",
    "daily_summary/zh-CN/body.txt": """\
{% if contact %}尊敬的{{ contact.name }}：{% else %}尊敬的用户：{% endif %}
房间{{ room }}在{{ day }}扣费 {{ deducted }} {{ currency }}，当前余额 {{ balance }} {{ currency }}。
{{ site }}
""",
}


class MessageTemplates:
    """The tenant message templates (built in, or overridden from a folder), sandboxed."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir is not None and templates_dir.is_dir():
            loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
        loaders.append(jinja2.DictLoader(BUILTIN))
        self.env = SandboxedEnvironment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, autoescape=False)

    def render(self, template: str, language: str, context: dict[str, Any]) -> tuple[str, str]:
        if language not in LEVEL_TEXT:
            language = "en"
        full = {**context, "language": language, "level_text": LEVEL_TEXT[language].get(context.get("level") or 0, "")}
        subject = self.env.get_template(f"{template}/{language}/subject.txt").render(full)
        body = self.env.get_template(f"{template}/{language}/body.txt").render(full)
        return " ".join(subject.split()), body.strip() + "\n"


class TenantMessenger:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        engine: PrepaidEngine,
        config: MessagesConfig,
        *,
        site_name: str,
        templates: MessageTemplates,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.db = db
        self.notifier = notifier
        self.engine = engine
        self.config = config
        self.site_name = site_name
        self.templates = templates
        self.now = now
        self.tz = engine.tz
        self._summary_day: dt.date | None = None

    def _channel_for(self, contact: Contact) -> tuple[str, str] | None:
        for name in self.config.channels:
            channel = self.notifier.channels.get(name)
            if channel is None:
                continue
            address = contact.email if channel.kind == "email" else contact.phone if channel.kind == "sms" else None
            if address:
                return name, address
        return None

    def _context(self, room_id: str, view: AccountView | None, contact: Contact | None) -> dict[str, Any]:
        room = self.engine.assets.snapshot.rooms.get(room_id)
        m = self.engine.minor_units
        return {
            "site": self.site_name, "room": room.name if room else room_id, "contact": contact,
            "balance": format_minor(view.balance_minor, m) if view is not None and view.open else None,
            "currency": self.engine.currency, "level": view.alarm_level if view is not None else 0,
            "when": self.now().astimezone(self.tz).strftime("%Y-%m-%d %H:%M"), "text": "",
        }

    async def send_room(self, room_id: str, template: str, *, key: str, route: str, event: str = "message",
                        extra: dict[str, Any] | None = None) -> QueuedMessage:
        """Queue one message to the contact of the room's open account."""
        view = self.engine.views.get(room_id)
        if view is None or not view.open:
            view = await self.engine.account(room_id)
        if view is None or not view.open:
            return QueuedMessage(0, "skipped", f"room {room_id} has no open account", "", "")
        contact = view.contact
        target = self._channel_for(contact)
        if target is None:
            channels = ", ".join(self.config.channels) or "none configured (operations.messages.channels)"
            return QueuedMessage(0, "skipped", f"contact {contact.name or '(no name)'} has no address for the channels ({channels})", "", "")
        channel, address = target
        context = self._context(room_id, view, contact) | (extra or {})
        try:
            subject, body = self.templates.render(template, contact.language, context)
        except jinja2.TemplateError as exc:
            return QueuedMessage(0, "failed", f"template {template}/{contact.language}: {exc}", address, channel)
        return await self.notifier.queue_message(
            key=key, route=route, event=event, channel=channel, recipient=address, language=contact.language,
            subject=subject, body=body, subject_id=f"room:{room_id}",
        )

    # -- payments -------------------------------------------------------------------------------
    def payment_listener(self, spawn: Callable[[Callable[[], Any], str], Any]) -> Callable[[str, PostResult], None]:
        """A listener for the prepaid engine's recharges: a message per successful payment."""
        def on_payment(room_id: str, result: PostResult) -> None:
            if not self.config.payment_messages or result.replayed:
                return
            entry = result.entry
            m = self.engine.minor_units
            extra = {"amount": format_minor(entry.amount_minor, m), "reference": entry.reference or entry.id,
                     "balance": format_minor(result.account.balance_minor, m),
                     # a bill paid in the back office (an entry of kind payment names its bill)
                     "bill": entry.detail.get("number") if entry.kind == "payment" and isinstance(entry.detail, dict) else None}

            async def send() -> None:
                queued = await self.send_room(room_id, "payment", key=f"payment:{entry.id}", route="payment", event="payment", extra=extra)
                if queued.status in ("skipped", "failed"):
                    log.info("payment message not sent", extra={"room": room_id, "reason": queued.reason})

            spawn(send, f"payment-message:{entry.id}")

        return on_payment

    # -- reminders and summaries -------------------------------------------------------------------
    async def remind(self) -> int:
        """Send the reminders that are due now; returns how many were queued."""
        cfg = self.config.reminders
        if not cfg.enabled:
            return 0
        now = self.now()
        sent = 0
        views = {v.id: v for v in self.engine.views.values() if v.open}
        due: list[tuple[AccountView, int]] = []
        async with self.db.transaction() as s:
            rows = {r.account_id: r for r in (await s.scalars(select(ReminderRow))).all()}
            for account_id in [a for a in rows if a not in views or views[a].alarm_level not in cfg.levels]:
                await s.execute(delete(ReminderRow).where(ReminderRow.account_id == account_id))
            for view in views.values():
                if view.alarm_level not in cfg.levels:
                    continue
                row = rows.get(view.id)
                if row is None or row.level != view.alarm_level:
                    # the alarm's own notification was the first word at this level
                    if row is not None:
                        await s.execute(delete(ReminderRow).where(ReminderRow.account_id == view.id))
                        await s.flush()
                    s.add(ReminderRow(account_id=view.id, level=view.alarm_level, count=0, last_at=now))
                    continue
                if row.count >= cfg.max_times or (row.last_at is not None and now - row.last_at < dt.timedelta(hours=cfg.every_h)):
                    continue
                due.append((view, row.count + 1))
                row.count += 1
                row.last_at = now
        # sent after the commit: the notifier writes its delivery log in its own transaction, which
        # waited on this one's write lock on SQLite until "database is locked"; the message key
        # keeps a reminder from going twice
        for view, n in due:
            queued = await self.send_room(
                view.room_id, "reminder", key=f"reminder:{view.id}:{view.alarm_level}:{n}", route="reminder",
                event="reminder", extra={"level": view.alarm_level, "level_name": LEVEL_NAMES[view.alarm_level]},
            )
            if queued.status not in ("skipped", "failed"):
                sent += 1
        return sent

    async def summaries(self) -> int:
        """The daily deduction summary, once a day after ``summary_at`` (site time)."""
        if not self.config.daily_summary:
            return 0
        local = self.now().astimezone(self.tz)
        hh, mm = (int(x) for x in self.config.summary_at.split(":"))
        if (local.hour, local.minute) < (hh, mm) or self._summary_day == local.date():
            return 0
        day = local.date()
        start = dt.datetime.combine(day, dt.time(0), self.tz).astimezone(dt.UTC)
        async with self.db.sessions() as s:
            totals = dict((await s.execute(
                select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_minor))
                .where(LedgerEntry.kind.in_(("deduction", "charge")), LedgerEntry.ts >= start).group_by(LedgerEntry.account_id)
            )).all())
        sent = 0
        m = self.engine.minor_units
        for view in [v for v in self.engine.views.values() if v.open]:
            deducted = -int(totals.get(view.id) or 0)
            queued = await self.send_room(view.room_id, "daily_summary", key=f"summary:{view.id}:{day.isoformat()}", route="summary",
                                          event="summary", extra={"day": day.isoformat(), "deducted": format_minor(deducted, m)})
            sent += queued.status not in ("skipped", "failed")
        self._summary_day = day
        return sent

    async def run(self) -> None:
        async def step() -> None:
            await self.remind()
            await self.summaries()

        await run_every(self.config.check_every_s, step, name="tenant-reminders", first_delay_s=0)
