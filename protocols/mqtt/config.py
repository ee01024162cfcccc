"""Configuration of an MQTT gateway link (``[[links]] kind = "mqtt"``).

One entry is one gateway (a Sparkplug edge node, or the gateway part of a JSON topic): meters
name it as their ``link`` and their device id as their ``address``. Links naming the same broker
(host, port, TLS, user) share one connection: one subscriber per broker.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..secret import SecretSource

__all__ = ["MqttLinkConfig", "TEMPLATE_FIELDS"]

# the placeholders a JSON topic template may hold
TEMPLATE_FIELDS = ("gateway", "meter")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_SPARKPLUG_ID = re.compile(r"^[^/#+]+$")


class MqttLinkConfig(BaseModel):
    """A gateway publishing its meters to an MQTT broker."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["mqtt"]
    format: Literal["sparkplug", "json"] = "sparkplug"
    # the broker
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default 1883, or 8883 with TLS
    tls: bool = False
    ca_file: str | None = None  # a CA bundle for the broker's certificate (default: the system's)
    username: str | None = None
    password: SecretSource | None = None
    client_id: str | None = None  # default scada-<host_id>
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    qos: Literal[0, 1] = 1
    # Sparkplug B: the edge node of this gateway, and our host application's id (STATE topic)
    group_id: str = "site"
    edge_node: str | None = None  # default: the link's name
    host_id: str = "scada"
    rebirth_interval_s: float = Field(default=10.0, ge=0, le=3600)  # at most one rebirth request per node per interval
    # JSON: where readings and the gateway's status are published, and how a payload reads
    gateway: str | None = None  # the {gateway} of the topics (default: the link's name)
    topic: str = "meters/{gateway}/{meter}/data"
    status_topic: str | None = "meters/{gateway}/status"
    online_payload: str = "online"
    offline_payload: str = "offline"
    command_topic: str | None = "meters/{gateway}/{meter}/cmd"
    timestamp_field: str | None = "ts"
    timestamp_format: Literal["epoch_s", "epoch_ms", "iso8601"] = "epoch_ms"
    fields: dict[str, str] = {}  # point -> payload field (dotted path); default: the profile's metric

    @model_validator(mode="after")
    def _check(self) -> MqttLinkConfig:
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls = true")
        if self.format == "sparkplug":
            for key in ("group_id", "host_id"):
                if not _SPARKPLUG_ID.match(getattr(self, key)):
                    raise ValueError(f"{key}: a Sparkplug id may not contain '/', '#' or '+'")
            if not _SPARKPLUG_ID.match(self.edge_node_id):
                raise ValueError("edge_node: a Sparkplug id may not contain '/', '#' or '+'")
        else:
            for key in ("topic", "status_topic", "command_topic"):
                template = getattr(self, key)
                if template is None:
                    continue
                unknown = [p for p in _PLACEHOLDER.findall(template) if p not in TEMPLATE_FIELDS]
                if unknown:
                    raise ValueError(f"{key}: unknown placeholder {{{unknown[0]}}} (known: {{gateway}}, {{meter}})")
                if "#" in template or "+" in template:
                    raise ValueError(f"{key}: a template names its parts with {{gateway}} and {{meter}}, not wildcards")
            if "{meter}" not in self.topic:
                raise ValueError("topic: the template needs {meter} (which meter a message is about)")
            if self.command_topic is not None and "{meter}" not in self.command_topic:
                raise ValueError("command_topic: the template needs {meter}")
            if self.status_topic is not None and "{meter}" in self.status_topic:
                raise ValueError("status_topic: the gateway's status is one topic, without {meter}")
        return self

    @property
    def edge_node_id(self) -> str:
        return self.edge_node or self.name

    @property
    def gateway_id(self) -> str:
        return self.gateway or self.name

    @property
    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    @property
    def broker_key(self) -> tuple[object, ...]:
        """Links with the same key share one connection."""
        return (self.host, self.broker_port, self.tls, self.ca_file, self.username, self.password,
                self.client_id, self.keepalive_s, self.host_id)
