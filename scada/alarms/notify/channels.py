"""The delivery channel for each configured ``[[alarms.notifications.channels]]`` entry."""

from __future__ import annotations

from pathlib import Path

from scada.alarms.notify.config import ChannelConfig
from scada.alarms.notify.delivery import Channel
from scada.alarms.notify.sms import SmsGatewayChannel
from scada.alarms.notify.smtp import EmailChannel
from scada.alarms.notify.webhook import WebhookChannel

__all__ = ["build_channel"]


def build_channel(config: ChannelConfig, base_dir: Path) -> Channel:
    """The channel for a config entry; secrets are read here, so a missing one fails at start."""
    if config.kind == "email":
        return EmailChannel(config, base_dir)
    if config.kind == "webhook":
        return WebhookChannel(config, base_dir)
    return SmsGatewayChannel(config, base_dir)
