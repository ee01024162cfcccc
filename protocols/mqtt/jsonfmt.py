"""The JSON scheme of MQTT gateways: topic templates and payloads.

A link describes its topics by templates with ``{gateway}`` and ``{meter}``
(``meters/{gateway}/{meter}/data``); the broker is asked for the template with ``+`` in their
places, and a message's topic tells which gateway and meter it is about. A payload is one JSON
object — or a list of them, e.g. a gateway's replay — with a timestamp field and one field per
point (a dotted path reaches into nested objects)::

    {"ts": 1714528800000, "energy_total": 1234.56, "power": 1.2, "relay_closed": true}

Everything from outside is bounded: the payload's size, numbers (finite, |x| <= 1e15), strings
(256 characters), timestamps (a time far ahead of the server's clock is not believed).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["MAX_PAYLOAD", "Template", "field_value", "parse_payload", "parse_time"]

MAX_PAYLOAD = 1 << 20  # bytes
_LIMIT = 1e15
_PLACEHOLDER = re.compile(r"\{(gateway|meter)\}")


class Template:
    """A topic template: its broker subscription and the parts of a matching topic."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.filter = _PLACEHOLDER.sub("+", template)
        pattern = ""
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            pattern += re.escape(template[pos:m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        self._regex = re.compile(pattern + re.escape(template[pos:]) + r"\Z")

    def match(self, topic: str) -> dict[str, str] | None:
        m = self._regex.match(topic)
        return m.groupdict() if m else None

    def format(self, **parts: str) -> str:
        return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], self.template)


def parse_payload(data: bytes) -> list[dict[str, Any]]:
    """The payload's objects; ValueError naming what is wrong."""
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(data)} bytes is larger than {MAX_PAYLOAD}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        raise ValueError("expected a JSON object or a list of objects")
    return items


def field_value(item: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    node: Any = item
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    x = float(value)
    return x if math.isfinite(x) and -_LIMIT <= x <= _LIMIT else None


def parse_time(value: Any, fmt: str) -> datetime | None:
    """A payload timestamp in ``fmt`` (epoch_s, epoch_ms, iso8601), or None when unreadable."""
    if fmt == "iso8601":
        if not isinstance(value, str) or len(value) > 40:
            return None
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None
        return ts if ts.tzinfo is not None else None  # a time without a zone is not believed
    x = number(value)
    if x is None:
        return None
    seconds = x / 1000.0 if fmt == "epoch_ms" else x
    if not 946_684_800 <= seconds <= 4_102_444_800:  # 2000 .. 2100
        return None
    return datetime.fromtimestamp(seconds, UTC)
