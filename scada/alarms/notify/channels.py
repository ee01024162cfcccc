"""Delivery channels: one message to one recipient, or a :class:`DeliveryError` saying why not.

A channel answers an error as *permanent* (retrying cannot help: refused address, rejected
credentials, a 4xx from a webhook) or transient (timeouts, refused connections, 5xx, 429),
which the notifier retries with backoff.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .config import ChannelConfig

__all__ = ["Channel", "DeliveryError", "OutgoingMessage", "build_channel", "ssl_context"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    delivery_id: int
    event: str
    recipient: str
    language: str
    subject: str
    body: str
    alarm: dict[str, Any] = field(default_factory=dict)  # JSON-ready snapshot, for webhooks


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: str
    kind: str

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver or raise :class:`DeliveryError`."""
        ...

    async def close(self) -> None: ...


def ssl_context(ca_file: str | None, base_dir: Path) -> ssl.SSLContext:
    """Certificates are always verified; ``ca_file`` replaces the system CAs (private CA)."""
    if ca_file is None:
        return ssl.create_default_context()
    path = Path(ca_file)
    if not path.is_absolute():
        path = base_dir / path
    return ssl.create_default_context(cafile=str(path))


def build_channel(config: ChannelConfig, base_dir: Path) -> Channel:
    """The channel for a config entry; secrets are read here, so a missing one fails at start."""
    if config.kind == "email":
        from .smtp import EmailChannel

        return EmailChannel(config, base_dir)
    if config.kind == "webhook":
        from .webhook import WebhookChannel

        return WebhookChannel(config, base_dir)
    from .sms import SmsGatewayChannel

    return SmsGatewayChannel(config, base_dir)
