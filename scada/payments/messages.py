"""The payment-success message to the tenant: amount, new balance and days of credit left, in
the tenant's language, by SMS or e-mail.

It goes through the alarm notifier's delivery path (:meth:`Notifier.queue_message`: the same
channels, retries, quiet hours and delivery log), over the first of
``payments.message_channels`` the account's contact has an address for. Its key is
``payment:<ledger entry>``, so one credit gets one message however often it is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from scada.alarms.notify.notifier import Notifier, QueuedMessage
from scada.core.inputs import InputError, e164
from scada.payments.orders import OrderView
from scada.prepaid.accounts import PostResult
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.money import format_minor

__all__ = ["MESSAGES", "PaymentMessenger"]

log = logging.getLogger(__name__)

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "subject": "{site}: payment received for room {room}",
        "body": "{site}: we received your payment of {amount} {currency} for room {room} (order {order}). "
                "New balance: {balance} {currency}. {days}",
        "days": "That is about {days} days of credit.",
        "no_days": "",
    },
    "zh-CN": {
        "subject": "{site}：房间{room}充值成功",
        "body": "【{site}】房间{room}在线充值 {amount} {currency} 已到账（订单 {order}），当前余额 {balance} {currency}。{days}",
        "days": "预计可用约 {days} 天。",
        "no_days": "",
    },
}


class PaymentMessenger:
    """Queues the message of each credited online payment (see the module docstring)."""

    def __init__(
        self,
        notifier: Notifier,
        engine: PrepaidEngine,
        channels: list[str],
        *,
        site_name: str,
        spawn: Callable[[Callable[[], Awaitable[Any]], str], Any],
    ) -> None:
        self.notifier = notifier
        self.engine = engine
        self.channels = channels
        self.site_name = site_name
        self.spawn = spawn

    def on_credited(self, order: OrderView, result: PostResult) -> None:
        """The order service's listener: the message is queued in the background."""
        self.spawn(lambda: self.send(order, result), f"payment-message:{result.entry.id}")

    def _target(self, phone: str | None, email: str | None) -> tuple[str, str] | None:
        for name in self.channels:
            channel = self.notifier.channels.get(name)
            if channel is None:
                continue
            if channel.kind == "sms" and phone:
                try:
                    return name, e164(phone)
                except InputError:
                    continue
            if channel.kind == "email" and email:
                return name, email
        return None

    async def send(self, order: OrderView, result: PostResult) -> QueuedMessage | None:
        account = result.account
        contact = account.contact
        target = self._target(contact.phone, contact.email)
        if target is None:
            log.info("payment message not sent: no address for the channels",
                     extra={"order": order.id, "account": account.id, "channels": ",".join(self.channels)})
            return None
        channel, address = target
        language = contact.language if contact.language in MESSAGES else "en"
        text = MESSAGES[language]
        m = self.engine.minor_units
        daily = self.engine.biller.daily_cost(account.id)
        days = None
        if account.balance_minor > 0 and daily is not None and daily > 0:
            days = format(round(account.balance_minor / daily, 1), "f")
        room = self.engine.assets.snapshot.rooms.get(account.room_id)
        values = {
            "site": self.site_name, "room": room.name if room is not None else account.room_id, "order": order.order_no,
            "amount": format_minor(order.amount_minor, m), "balance": format_minor(account.balance_minor, m),
            "currency": order.currency,
        }
        values["days"] = text["days"].format(days=days) if days is not None else text["no_days"]
        queued = await self.notifier.queue_message(
            key=f"payment:{result.entry.id}", route="payment", event="payment", channel=channel, recipient=address,
            language=language, subject=text["subject"].format(**values), body=text["body"].format(**values).strip() + "\n",
            subject_id=f"room:{account.room_id}", quiet_hours=False,
        )
        log.info("payment message queued", extra={"order": order.id, "delivery": queued.id, "status": queued.status})
        return queued
