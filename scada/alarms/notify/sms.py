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

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from scada.alarms.notify.config import ChannelConfig
from scada.alarms.notify.delivery import DeliveryError, HttpDelivery, OutgoingMessage

__all__ = ["SmsGatewayChannel"]


class SmsGatewayChannel:
    """SMS through an HTTP gateway whose request is built from templates."""
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
        self._http = HttpDelivery(
            timeout_s=config.timeout_s, https=config.url.startswith("https:"), ca_file=config.ca_file, base_dir=base_dir,
        )

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
        await self._http.send(
            self.config.method, url, data=body, headers=headers, success=self.config.success_status,
            where=f"SMS gateway {url.split('?', 1)[0]}",
        )

    async def close(self) -> None:
        await self._http.close()
