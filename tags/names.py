"""Tag naming: ``<owner>.<point>``, split at the last dot.

- meter tags: ``<meter_id>.<point>``, e.g. ``E-B1-0301.energy_total``, ``E-B1-0301.comm_ok``
  (meter ids have no dots and no colons);
- room tags: ``room:<room_id>.<point>`` (``balance``, ``supply_state``, ``alarm_level``,
  ``account_state``), published by the prepaid engine;
- link tags: ``link:<link>.<point>`` (``comm_ok``), published by the poller;
- system tags: ``system:<component>.<point>`` (e.g. ``system:historian.buffer_fill``).

Condition tags (``comm_ok``, ``relay_fault``, ``review_hold``, ``alarm_level``,
``buffer_fill``…) are how parts report conditions; the alarm engine turns them into alarms.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["TagName", "link_tag", "meter_tag", "parse", "room_tag", "split", "system_tag"]


class TagName(NamedTuple):
    kind: str  # "meter" | "room" | "link" | "system"
    owner: str  # meter id, room id, link name or component
    point: str


def meter_tag(meter_id: str, point: str) -> str:
    return f"{meter_id}.{point}"


def room_tag(room_id: str, point: str) -> str:
    return f"room:{room_id}.{point}"


def link_tag(link: str, point: str) -> str:
    return f"link:{link}.{point}"


def system_tag(component: str, point: str) -> str:
    return f"system:{component}.{point}"


def split(name: str) -> tuple[str, str]:
    """``(owner, point)`` of a tag name, the owner with its namespace (``room:B1-R101``); ``("", name)``
    for a name without a dot. The cheap form of :func:`parse` for hot paths that only need the point."""
    owner, _, point = name.rpartition(".")
    return owner, point


def parse(name: str) -> TagName:
    owner, dot, point = name.rpartition(".")
    if not dot or not owner or not point:
        raise ValueError(f"tag name {name!r} is not <owner>.<point>")
    kind, colon, ident = owner.partition(":")
    if not colon:
        return TagName("meter", owner, point)
    if kind not in ("room", "link", "system"):
        raise ValueError(f"tag name {name!r}: unknown namespace {kind!r}")
    return TagName(kind, ident, point)
