"""``[alarms.notifications]``: channels, routing rules, quiet hours, limits and retries."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from scada.alarms.alarm import PriorityName
from scada.core.configbase import ConfigModel, SecretRef
from scada.core.inputs import InputError, e164

__all__ = [
    "ChannelConfig",
    "Language",
    "LANGUAGES",
    "NotificationsConfig",
    "QuietHours",
    "RateLimit",
    "RouteConfig",
    "RouteEvent",
]

Language = Literal["en", "zh-CN"]
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
RouteEvent = Literal["raised", "cleared", "acknowledged"]

_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

# the keys each channel kind accepts besides kind, name and timeout_s
_KIND_KEYS: dict[str, frozenset[str]] = {
    "email": frozenset({"host", "port", "security", "user", "password", "sender", "ca_file"}),
    "webhook": frozenset({"url", "secret", "signature_header", "headers", "ca_file"}),
    "sms": frozenset({"url", "method", "headers", "body", "content_type", "key", "success_status", "max_length", "ca_file"}),
}
_COMMON = frozenset({"kind", "name", "timeout_s"})


class ChannelConfig(ConfigModel):
    """A way to deliver a message. One model for all kinds (like ``[[links]]``): a key that does
    not belong to the channel's kind is an error naming it."""

    name: str = Field(pattern=_NAME)
    kind: Literal["email", "webhook", "sms"]
    timeout_s: float = Field(default=15.0, gt=0, le=300)
    # email: SMTP submission with STARTTLS (587), implicit TLS (465) or, on a trusted host, none
    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    password: SecretRef | None = None
    sender: str | None = None
    ca_file: str | None = None  # a CA bundle to trust instead of the system's (private CAs)
    # webhook and sms gateway
    url: str | None = None
    headers: dict[str, str] = {}
    # webhook: HMAC-SHA256 of the body with this secret, hex, in this header as sha256=<hex>
    secret: SecretRef | None = None
    signature_header: str = Field(default="X-Scada-Signature", pattern=r"^[A-Za-z0-9-]{1,64}$")
    # sms gateway: url, headers and body are jinja2 templates over to, text, subject, key, id
    method: Literal["POST", "GET"] = "POST"
    body: str = ""
    content_type: str = "application/json"
    key: SecretRef | None = None
    success_status: list[int] = [200, 201, 202, 204]
    max_length: int = Field(default=480, ge=20, le=5000)

    @model_validator(mode="after")
    def _kind_keys(self) -> ChannelConfig:
        allowed = _KIND_KEYS[self.kind] | _COMMON
        stray = sorted(self.model_fields_set - allowed)
        if stray:
            raise ValueError(
                f"{', '.join(stray)}: not a key of a {self.kind} channel (allowed: {', '.join(sorted(allowed))})"
            )
        if self.kind == "email":
            if not self.host or not self.sender:
                raise ValueError("an email channel needs 'host' and 'sender'")
            if self.user and self.password is None:
                raise ValueError("an email channel with 'user' needs 'password' (a secret: { env = \"VAR\" })")
            if self.user and self.security == "none":
                raise ValueError("refusing to send an SMTP password without TLS: set security to starttls or tls")
        else:
            if not self.url:
                raise ValueError(f"a {self.kind} channel needs 'url'")
            if self.kind == "webhook":
                scheme = urlsplit(self.url).scheme
                if scheme not in ("http", "https"):
                    raise ValueError(f"url: expected an http:// or https:// URL, found {self.url!r}")
                if self.secret is None:
                    raise ValueError("a webhook channel needs 'secret' (a secret: { env = \"VAR\" })")
            if self.kind == "sms":
                if not re.match(r"^https?://", self.url):
                    raise ValueError(f"url: expected an http:// or https:// URL template, found {self.url!r}")
                host = re.match(r"^https?://([^/?#]*)", self.url)
                if host is not None and "{" in host.group(1):
                    raise ValueError("url: template values may go in the path, query or fragment, not in the host")
                if self.method == "POST" and not self.body:
                    raise ValueError("an sms channel using POST needs a 'body' template")
        return self


class RouteConfig(ConfigModel):
    """Which alarms go to whom through which channel."""

    name: str = Field(pattern=_NAME)
    channel: str
    classes: list[str] = []  # empty: every class
    min_priority: PriorityName = "low"
    events: list[RouteEvent] = ["raised"]
    to: list[str] = []  # fixed recipients: e-mail addresses or phone numbers
    to_room_contact: bool = False  # also the account contact of the alarm's room
    language: Language = "en"  # of the fixed recipients (a contact has its own)
    template: str = Field(default="alarm", pattern=_NAME)
    quiet_hours: bool = False  # hold messages during the quiet hours until they end

    @model_validator(mode="after")
    def _someone(self) -> RouteConfig:
        if not self.events:
            raise ValueError("events: name at least one of raised, cleared, acknowledged")
        return self


class QuietHours(ConfigModel):
    """Local (site time zone) hours during which held messages wait, e.g. 22:00-07:00."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"expected a time HH:MM (24 h), found {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: the quiet hours would be empty")
        return self

    @staticmethod
    def _t(value: str) -> time:
        h, m = value.split(":")
        return time(int(h), int(m))

    def release_at(self, local: datetime) -> datetime | None:
        """When a message held at ``local`` (aware, site zone) may go; None when not quiet now."""
        start, end = self._t(self.start), self._t(self.end)
        now = local.timetz().replace(tzinfo=None)
        if start < end:
            quiet = start <= now < end
        else:  # across midnight
            quiet = now >= start or now < end
        if not quiet:
            return None
        day = local.date()
        if start > end and now >= start:
            day = day + timedelta(days=1)
        naive = datetime.combine(day, end)
        return naive.replace(tzinfo=local.tzinfo)


class RateLimit(ConfigModel):
    """At most ``count`` messages per ``per_s`` seconds (per recipient or per channel)."""
    messages: int = Field(ge=1, le=100_000)
    window_s: float = Field(gt=0, le=7 * 86400)


class NotificationsConfig(ConfigModel):
    """The ``[alarms.notifications]`` section: channels, routes, quiet hours, retries."""
    enabled: bool = True
    channels: list[ChannelConfig] = []
    routes: list[RouteConfig] = []
    contacts_file: str | None = None  # TOML of room contacts (when the prepaid engine provides none)
    templates_dir: str | None = None  # templates here override the built-in ones by name
    quiet_hours: QuietHours | None = None
    rate_limit: RateLimit = RateLimit(messages=20, window_s=3600)  # per recipient
    dedup_window_s: float = Field(default=3600, ge=0, le=30 * 86400)
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_initial_s: float = Field(default=30, gt=0, le=86400)
    retry_max_s: float = Field(default=1800, gt=0, le=7 * 86400)
    workers: int = Field(default=2, ge=1, le=32)

    @model_validator(mode="after")
    def _references(self) -> NotificationsConfig:
        names = [c.name for c in self.channels]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"channels: duplicate channel name {dup!r}")
        kinds = {c.name: c.kind for c in self.channels}
        route_names = [r.name for r in self.routes]
        for dup in sorted({n for n in route_names if route_names.count(n) > 1}):
            raise ValueError(f"routes: duplicate route name {dup!r}")
        for i, route in enumerate(self.routes):
            kind = kinds.get(route.channel)
            if kind is None:
                known = ", ".join(names) or "none configured"
                raise ValueError(f"routes[{i}].channel: unknown channel {route.channel!r} (channels: {known})")
            if kind == "webhook" and (route.to or route.to_room_contact):
                raise ValueError(f"routes[{i}]: a webhook route has no recipients ('to', 'to_room_contact'): the channel's url is the target")
            if kind != "webhook" and not route.to and not route.to_room_contact:
                raise ValueError(f"routes[{i}]: name recipients with 'to' or set to_room_contact = true")
            if kind == "sms":
                for j, number in enumerate(route.to):
                    try:
                        e164(number)
                    except InputError as exc:
                        raise ValueError(f"routes[{i}].to[{j}]: {exc}") from None
        return self

    def channel(self, name: str) -> ChannelConfig:
        return next(c for c in self.channels if c.name == name)
