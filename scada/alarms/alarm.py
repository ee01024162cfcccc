"""The alarm model: priorities, lifecycle states, alarm keys and immutable alarm snapshots.

An *alarm point* is one condition of one object (``comm_loss`` of meter ``E-B1-0101``), named by
its :class:`AlarmKey`. An *occurrence* of a point starts when the condition becomes active and
the alarm leaves the normal state, and ends when it returns to normal (cleared and
acknowledged). Every occurrence is a row in the database with the timestamps of its
transitions; :class:`Alarm` is its immutable snapshot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

__all__ = [
    "Alarm",
    "AlarmEvent",
    "AlarmKey",
    "AlarmState",
    "ObjectType",
    "Priority",
    "PriorityName",
    "STANDING_STATES",
    "Transition",
    "alarm_document",
]

ObjectType = Literal["meter", "room", "link", "system"]
PriorityName = Literal["low", "medium", "high", "critical"]


class Priority(enum.IntEnum):
    """Alarm priority; higher is more urgent. 0 is used by tags for "no alarm"."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Priority:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {name!r}: expected low, medium, high or critical") from None

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def severity(self) -> int:
        """OPC UA event severity (1..1000)."""
        return self.value * 250


class AlarmState(str, enum.Enum):
    """ISA-18.2 states of an alarm occurrence.

    ``NORMAL`` is the end of an occurrence (condition cleared and acknowledged). The last three
    are the states in which an alarm is not presented to operators.
    """

    NORMAL = "normal"
    ACTIVE_UNACK = "active_unack"
    ACTIVE_ACK = "active_ack"
    CLEARED_UNACK = "cleared_unack"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"  # suppressed by design (flood control)
    OUT_OF_SERVICE = "out_of_service"

    @property
    def standing(self) -> bool:
        """Presented in the operators' active list (active, or cleared but not acknowledged)."""
        return self in STANDING_STATES

    @property
    def acknowledged(self) -> bool:
        return self not in (AlarmState.ACTIVE_UNACK, AlarmState.CLEARED_UNACK)


STANDING_STATES = frozenset({AlarmState.ACTIVE_UNACK, AlarmState.ACTIVE_ACK, AlarmState.CLEARED_UNACK})


class AlarmKey(NamedTuple):
    """An alarm point: a class of condition on one object. ``str(key)`` is its stable name."""

    alarm_class: str
    object_type: str
    object_id: str

    def __str__(self) -> str:
        return f"{self.alarm_class}:{self.object_type}:{self.object_id}"

    @classmethod
    def parse(cls, text: str) -> AlarmKey:
        parts = text.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"alarm key {text!r} is not <class>:<object type>:<object id>")
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class Alarm:
    """One occurrence of an alarm point, as stored."""

    id: int
    key: str
    alarm_class: str
    object_type: str
    object_id: str
    meter_id: str | None
    room_id: str | None
    link: str | None
    priority: Priority
    state: AlarmState
    condition_active: bool
    message: str
    detail: str
    value: str
    raised_at: datetime
    last_active_at: datetime
    cleared_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    ack_reason: str | None
    shelved_at: datetime | None
    shelved_until: datetime | None
    shelved_by: str | None
    shelve_reason: str | None
    closed_at: datetime | None
    activations: int
    updated_at: datetime
    version: int
    # confirmation after acknowledgement (OPC UA Confirm), the last comment (acknowledge,
    # confirm and comment carry one) and one-shot shelving (until the condition clears)
    confirmed_at: datetime | None = None
    confirmed_by: str | None = None
    comment: str | None = None
    comment_by: str | None = None
    comment_at: datetime | None = None
    shelve_one_shot: bool = False

    @property
    def standing(self) -> bool:
        return self.state.standing

    @property
    def open(self) -> bool:
        return self.closed_at is None

    @property
    def acknowledged(self) -> bool:
        return self.state.acknowledged


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded change of an occurrence: a state change or a condition change while the
    alarm is not presented (``from_state == to_state``)."""

    alarm_id: int
    ts: datetime
    event: str  # activate, clear, acknowledge, shelve, unshelve, suppress, ...
    from_state: AlarmState
    to_state: AlarmState
    actor: str
    reason: str
    value: str


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """What subscribers (HMI, OPC UA, notifications) get: the transition and the alarm after it."""

    alarm: Alarm
    transition: Transition

    @property
    def event(self) -> str:
        return self.transition.event


def alarm_document(alarm: Alarm) -> dict[str, object]:
    """A JSON-ready view of an occurrence (webhooks, the REST API, ``scada alarms list --json``)."""

    def ts(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": alarm.id,
        "key": alarm.key,
        "class": alarm.alarm_class,
        "object_type": alarm.object_type,
        "object_id": alarm.object_id,
        "meter_id": alarm.meter_id,
        "room_id": alarm.room_id,
        "link": alarm.link,
        "priority": int(alarm.priority),
        "priority_name": alarm.priority.label,
        "state": alarm.state.value,
        "standing": alarm.standing,
        "acknowledged": alarm.acknowledged,
        "condition_active": alarm.condition_active,
        "message": alarm.message,
        "detail": alarm.detail,
        "value": alarm.value,
        "raised_at": ts(alarm.raised_at),
        "last_active_at": ts(alarm.last_active_at),
        "cleared_at": ts(alarm.cleared_at),
        "acked_at": ts(alarm.acked_at),
        "acked_by": alarm.acked_by,
        "ack_reason": alarm.ack_reason,
        "shelved_at": ts(alarm.shelved_at),
        "shelved_until": ts(alarm.shelved_until),
        "shelved_by": alarm.shelved_by,
        "shelve_reason": alarm.shelve_reason,
        "closed_at": ts(alarm.closed_at),
        "activations": alarm.activations,
        "confirmed_at": ts(alarm.confirmed_at),
        "confirmed_by": alarm.confirmed_by,
        "comment": alarm.comment,
        "comment_by": alarm.comment_by,
        "comment_at": ts(alarm.comment_at),
        "shelve_one_shot": alarm.shelve_one_shot,
        "version": alarm.version,
    }
