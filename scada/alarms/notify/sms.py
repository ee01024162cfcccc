"""SMS through an HTTP gateway described by templates, so any provider's API fits.

``url``, each header value and ``body`` are jinja2 templates (sandboxed) over ``to`` (the phone
number), ``text`` (the message, cut to ``max_length``), ``subject``, ``id`` (the delivery id)
and ``key`` (the gateway secret). Filters ``tojson`` and ``urlencode`` help build JSON and form
bodies. In ``url`` every value is URL-encoded for the part of the URL it stands in (path segment,
query, fragment), so that a text with ``&to=…`` cannot add a recipient and ``#`` cannot cut the
message; ``urlencode`` changes nothing there, and a value in the scheme or host is refused when
the channel is configured. ``to`` is an E.164 number (``+`` and digits) or the message is not
sent. For example::

    url = "https://sms.example.com/v1/messages"
    headers = { Authorization = "Bearer {{ key }}" }
    content_type = "application/json"
    body = '{"to": {{ to|tojson }}, "text": {{ text|tojson }}, "ref": "{{ id }}"}'

A status in ``success_status`` is a success; any other answer is a failure (4xx other than
408/429 permanent, the rest retried).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from scada.alarms.notify.config import ChannelConfig
from scada.alarms.notify.delivery import DeliveryError, HttpDelivery, OutgoingMessage
from scada.core.inputs import InputError, e164

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
        # the url's own environment: each {{ … }} becomes a marker, encoded after rendering for
        # the part of the URL it landed in (see _url_for)
        self._url_values: list[str] = []
        self._nonce = secrets.token_hex(6)
        url_env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=self._mark)
        url_env.filters["urlencode"] = lambda value: value  # every value is encoded anyway
        try:
            self._url = url_env.from_string(config.url)
            self._headers = {k: env.from_string(v) for k, v in config.headers.items()}
            self._body = env.from_string(config.body) if config.body else None
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"alarms.notifications.channels {config.name!r}: template error: {exc.message}") from None
        self._check_url_template()
        self._http = HttpDelivery(
            timeout_s=config.timeout_s, https=config.url.startswith("https:"), ca_file=config.ca_file, base_dir=base_dir,
        )

    def _mark(self, value: object) -> str:
        self._url_values.append("" if value is None else str(value))
        return f"zq{self._nonce}x{len(self._url_values) - 1}zq"

    def _check_url_template(self) -> None:
        sample = {"to": "+10000000000", "text": "t", "subject": "s", "id": 1, "key": "k"}
        try:
            parts = self._marked_url(sample)
        except jinja2.TemplateError:
            return  # reported at send time, where the values are known
        if self._marker.search(parts.scheme + parts.netloc):
            raise ValueError(
                f"alarms.notifications.channels {self.config.name!r}: url: values may go in the path, query or fragment, "
                "not in the scheme or host"
            )

    @property
    def _marker(self) -> re.Pattern[str]:
        return re.compile(f"zq{self._nonce}x([0-9]+)zq")

    def _marked_url(self, values: dict[str, object]) -> SplitResult:
        self._url_values = []
        return urlsplit(self._url.render(values))

    def _url_for(self, values: dict[str, object]) -> str:
        """The url template rendered with each value encoded for its part of the URL."""
        parts = self._marked_url(values)
        found = self._url_values
        marker = self._marker
        if marker.search(parts.scheme + parts.netloc):
            raise DeliveryError("sms url: a value in the scheme or host", permanent=True)

        def encoded(component: str, quoting: Callable[[str], str]) -> str:
            return marker.sub(lambda m: quoting(found[int(m.group(1))]), component)

        path = encoded(parts.path, lambda v: quote(v, safe=""))
        query = encoded(parts.query, lambda v: quote(v, safe=""))
        fragment = encoded(parts.fragment, lambda v: quote(v, safe=""))
        return urlunsplit((parts.scheme, parts.netloc, path, query, fragment))

    def render(self, message: OutgoingMessage) -> tuple[str, dict[str, str], bytes | None]:
        text = message.body.strip()
        if len(text) > self.config.max_length:
            text = text[: self.config.max_length - 1] + "…"
        try:
            to = e164(message.recipient)
        except InputError as exc:
            raise DeliveryError(f"sms recipient: {exc}", permanent=True) from None
        values: dict[str, object] = {"to": to, "text": text, "subject": message.subject, "id": message.delivery_id, "key": self.key}
        try:
            url = self._url_for(values)
            headers = {k: t.render(values) for k, t in self._headers.items()}
            body = self._body.render(values).encode() if self._body is not None else None
        except jinja2.TemplateError as exc:
            raise DeliveryError(f"sms template: {exc}", permanent=True) from None
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise DeliveryError(f"sms header {name}: a value with a line break", permanent=True)
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
