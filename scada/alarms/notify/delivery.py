"""What every delivery channel shares: the message, the error, the protocol, and the one
outbound HTTP path (webhooks and SMS gateways).

A channel delivers one message to one recipient, or raises a :class:`DeliveryError` saying why
not: *permanent* (retrying cannot help: refused address, rejected credentials, a 4xx) or
transient (timeouts, refused connections, 5xx, 408/425/429), which the notifier retries with
backoff.
"""

from __future__ import annotations

import ssl
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

__all__ = ["Attachment", "Channel", "DeliveryError", "HttpDelivery", "OutgoingMessage", "ssl_context"]

# answers that a later attempt may get past
_TRANSIENT_4XX = (408, 425, 429)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with an e-mail (a scheduled report)."""
    filename: str
    content_type: str  # "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    data: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered message for one recipient, as a channel sends it."""
    delivery_id: int
    event: str
    recipient: str
    language: str
    subject: str
    body: str
    alarm: dict[str, Any] = field(default_factory=dict)  # JSON-ready snapshot, for webhooks
    attachments: tuple[Attachment, ...] = ()  # e-mail only


class DeliveryError(Exception):
    """A delivery failed; ``permanent`` when retrying cannot help."""
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """A way to deliver messages (e-mail, webhook, SMS gateway)."""
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


class HttpDelivery:
    """One channel's outbound HTTP: one client session, certificates always verified (``ca_file``
    replaces the system CAs), a bounded time per request, and the answer mapped to
    :class:`DeliveryError` the same way for every HTTP channel."""

    def __init__(self, *, timeout_s: float, https: bool, ca_file: str | None, base_dir: Path) -> None:
        self.timeout_s = timeout_s
        self._ssl = ssl_context(ca_file, base_dir) if https else None
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        headers: Mapping[str, str],
        success: Container[int] = range(200, 300),
        where: str | None = None,
    ) -> None:
        """Send one request; return when the status is in ``success``, else raise. ``where`` names
        the target in errors instead of ``url`` (a URL may carry a key)."""
        where = where or url
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.request(method, url, data=data, headers=dict(headers), ssl=self._ssl) as response:
                if response.status in success:
                    return
                text = (await response.text(errors="replace"))[:200]
                permanent = 400 <= response.status < 500 and response.status not in _TRANSIENT_4XX
                raise DeliveryError(f"HTTP {response.status} from {where}: {text}", permanent=permanent)
        except DeliveryError:
            raise
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{method} {where}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise DeliveryError(f"{method} {where}: no answer within {self.timeout_s:g} s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
