"""Applying a lifecycle event to an occurrence: the new snapshot and the transition record.

The engine and the command line both go through :func:`apply_event`, so an acknowledgement
has the same effect and leaves the same record wherever it comes from.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from scada.alarms.alarm import Alarm, AlarmKey, AlarmState, Priority, Transition
from scada.alarms.lifecycle import Event, next_state

__all__ = ["apply_event", "new_occurrence"]

_UNACK = (AlarmState.ACTIVE_UNACK, AlarmState.CLEARED_UNACK)
_COMMENTED = (Event.ACKNOWLEDGE, Event.CONFIRM, Event.COMMENT)


def new_occurrence(
    key: AlarmKey,
    *,
    priority: Priority,
    message: str,
    detail: str,
    value: str,
    meter_id: str | None,
    room_id: str | None,
    link: str | None,
    now: datetime,
) -> Alarm:
    """A not yet stored occurrence in the normal state (id 0); activate it to raise it."""
    return Alarm(
        id=0, key=str(key), alarm_class=key.alarm_class, object_type=key.object_type, object_id=key.object_id,
        meter_id=meter_id, room_id=room_id, link=link, priority=priority, state=AlarmState.NORMAL,
        condition_active=False, message=message, detail=detail, value=value, raised_at=now, last_active_at=now,
        cleared_at=None, acked_at=None, acked_by=None, ack_reason=None, shelved_at=None, shelved_until=None,
        shelved_by=None, shelve_reason=None, closed_at=None, activations=0, updated_at=now, version=0,
    )


def apply_event(
    alarm: Alarm,
    event: Event,
    now: datetime,
    *,
    actor: str,
    reason: str = "",
    condition_active: bool | None = None,
    value: str | None = None,
    detail: str | None = None,
    shelved_until: datetime | None = None,
    one_shot: bool = False,
) -> tuple[Alarm, Transition]:
    """The occurrence after ``event`` and the record of it. Raises ``IllegalTransition``.

    ``condition_active`` is the process condition after the event (defaults: True for
    activate, False for clear, unchanged otherwise). ``reason`` of an acknowledgement, a
    confirmation or a comment becomes the occurrence's last comment; ``one_shot`` shelving ends
    when the condition clears.
    """
    if event is Event.ACTIVATE:
        condition = True
    elif event is Event.CLEAR:
        condition = False
    else:
        condition = alarm.condition_active if condition_active is None else condition_active
    state = next_state(alarm.state, event, condition_active=condition)
    changes: dict[str, object] = {"state": state, "condition_active": condition, "updated_at": now}
    if value is not None:
        changes["value"] = value
    if detail is not None:
        changes["detail"] = detail
    if event is Event.ACTIVATE and not alarm.condition_active:
        changes["activations"] = alarm.activations + 1
        changes["last_active_at"] = now
        changes["cleared_at"] = None
        if alarm.state is AlarmState.NORMAL:
            changes["raised_at"] = now
    elif event is Event.CLEAR and alarm.condition_active:
        changes["cleared_at"] = now
    elif event is Event.ACKNOWLEDGE:
        changes.update(acked_at=now, acked_by=actor, ack_reason=reason)
    elif event is Event.CONFIRM:
        changes.update(confirmed_at=now, confirmed_by=actor)
    elif event is Event.SHELVE:
        changes.update(shelved_at=now, shelved_until=shelved_until, shelved_by=actor, shelve_reason=reason, shelve_one_shot=one_shot)
    elif event is Event.UNSHELVE:
        changes.update(shelved_until=None, shelve_one_shot=False)
    if event in _COMMENTED and reason:
        changes.update(comment=reason, comment_by=actor, comment_at=now)
    if state in _UNACK and alarm.state not in _UNACK:
        # presented again as unacknowledged: an earlier acknowledgement (and confirmation) no longer counts
        changes.update(acked_at=None, acked_by=None, ack_reason=None, confirmed_at=None, confirmed_by=None)
    if state is AlarmState.NORMAL:
        changes["closed_at"] = now
    new = dataclasses.replace(alarm, **changes)  # type: ignore[arg-type]
    transition = Transition(
        alarm_id=alarm.id, ts=now, event=event.value, from_state=alarm.state, to_state=state,
        actor=actor, reason=reason, value=new.value,
    )
    return new, transition
