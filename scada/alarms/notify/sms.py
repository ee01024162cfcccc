"""SMS through an HTTP gateway described by templates, so any provider's API fits.

``url``, each header value and ``body`` are jinja2 templates (sandboxed) over ``to`` (the phone
number), ``text`` (the message, cut to ``max_length``), ``subject``, ``id`` (the delivery id)
and ``key`` (the gateway secret). Filters ``tojson`` and ``urlencode`` help build JSON and form
bodies. For example::

    url = "https://sms.example.com/v1/messages"
    headers = { Authorization = "Bearer {{ key }}" }
    content_type = "application/json"
    body = '{"to": {{ to|tojson }}, "text": {{ text|tojson }}, "ref": "{{ id }}"}'

A status in ``success_status`` is a success; any other answer is a failure (4xx other than
408/429 permanent, the rest retried).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .channels import DeliveryError, OutgoingMessage, ssl_context
from .config import ChannelConfig

__all__ = ["SmsGatewayChannel"]


class SmsGatewayChannel:
    kind = "sms"

    def __init__(self, config: ChannelConfig, base_dir: Path) -> None:
        assert config.url
        self.name = config.name
        self.config = config
        self.key = config.key.require(base_dir) if config.key is not None else ""
        env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            self._url = env.from_string(config.url)
            self._headers = {k: env.from_string(v) for k, v in config.headers.items()}
            self._body = env.from_string(config.body) if config.body else None
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"alarms.notifications.channels {config.name!r}: template error: {exc.message}") from None
        self._ssl = ssl_context(config.ca_file, base_dir) if config.url.startswith("https:") else None
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        return self._session

    def render(self, message: OutgoingMessage) -> tuple[str, dict[str, str], bytes | None]:
        text = message.body.strip()
        if len(text) > self.config.max_length:
            text = text[: self.config.max_length - 1] + "…"
        values = {"to": message.recipient, "text": text, "subject": message.subject, "id": message.delivery_id, "key": self.key}
        try:
            url = self._url.render(values)
            headers = {k: t.render(values) for k, t in self._headers.items()}
            body = self._body.render(values).encode() if self._body is not None else None
        except jinja2.TemplateError as exc:
            raise DeliveryError(f"sms template: {exc}", permanent=True) from None
        if body is not None:
            headers.setdefault("Content-Type", self.config.content_type)
        return url, headers, body

    async def send(self, message: OutgoingMessage) -> None:
        url, headers, body = self.render(message)
        # the url may carry the key: never put it in an error message
        where = url.split("?", 1)[0]
        try:
            async with self._http().request(self.config.method, url, data=body, headers=headers, ssl=self._ssl) as response:
                if response.status in self.config.success_status:
                    return
                text = (await response.text(errors="replace"))[:200]
                permanent = 400 <= response.status < 500 and response.status not in (408, 425, 429)
                raise DeliveryError(f"SMS gateway answered HTTP {response.status}: {text}", permanent=permanent)
        except DeliveryError:
            raise
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"SMS gateway {where}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise DeliveryError(f"SMS gateway {where}: no answer within {self.config.timeout_s:g} s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
