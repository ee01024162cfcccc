"""Webhooks: an HTTP POST of a JSON document, signed with HMAC-SHA256.

The header (``X-Scada-Signature`` unless configured) carries ``sha256=<hex>``: the HMAC of the
exact body bytes under the shared secret. Receivers recompute it and compare in constant time;
the body carries ``delivery_id`` (the same on every retry of one message) and ``sent_at`` so
that a receiver can drop duplicates and replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

from scada.alarms.notify.config import ChannelConfig
from scada.alarms.notify.delivery import HttpDelivery, OutgoingMessage

__all__ = ["WebhookChannel", "sign"]


def sign(secret: str, body: bytes) -> str:
    """The ``sha256=<hex>`` HMAC signature of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """A signed JSON POST per message."""
    kind = "webhook"

    def __init__(self, config: ChannelConfig, base_dir: Path) -> None:
        assert config.url and config.secret
        self.name = config.name
        self.config = config
        self.url = config.url
        self.secret = config.secret.require(base_dir)
        self._http = HttpDelivery(
            timeout_s=config.timeout_s, https=config.url.startswith("https:"), ca_file=config.ca_file, base_dir=base_dir,
        )

    async def send(self, message: OutgoingMessage) -> None:
        document = {
            "delivery_id": message.delivery_id,
            "event": message.event,
            "sent_at": datetime.now(UTC).isoformat(),
            "language": message.language,
            "subject": message.subject,
            "text": message.body,
            "alarm": message.alarm,
        }
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            **self.config.headers,
            "Content-Type": "application/json; charset=utf-8",
            self.config.signature_header: sign(self.secret, body),
            "X-Scada-Delivery": str(message.delivery_id),
        }
        await self._http.send("POST", self.url, data=body, headers=headers)

    async def close(self) -> None:
        await self._http.close()
