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
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from .channels import DeliveryError, OutgoingMessage, ssl_context
from .config import ChannelConfig

__all__ = ["WebhookChannel", "sign"]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    kind = "webhook"

    def __init__(self, config: ChannelConfig, base_dir: Path) -> None:
        assert config.url and config.secret
        self.name = config.name
        self.config = config
        self.url = config.url
        self.secret = config.secret.require(base_dir)
        self._ssl = ssl_context(config.ca_file, base_dir) if config.url.startswith("https:") else None
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        return self._session

    async def send(self, message: OutgoingMessage) -> None:
        document = {
            "delivery_id": message.delivery_id,
            "event": message.event,
            "sent_at": datetime.now(timezone.utc).isoformat(),
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
        try:
            async with self._http().post(self.url, data=body, headers=headers, ssl=self._ssl) as response:
                if 200 <= response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:200]
                permanent = 400 <= response.status < 500 and response.status not in (408, 425, 429)
                raise DeliveryError(f"HTTP {response.status} from {self.url}: {text}", permanent=permanent)
        except DeliveryError:
            raise
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"POST {self.url}: {exc!r}") from None
        except TimeoutError:
            raise DeliveryError(f"POST {self.url}: no answer within {self.config.timeout_s:g} s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
