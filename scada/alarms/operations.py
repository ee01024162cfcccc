"""Operator actions on one occurrence: acknowledge, confirm, comment, shelve, unshelve.

Each runs in one transaction on the database: read the occurrence, check who may do it,
apply the lifecycle event, store it over the version read, record the transition and the
audit entry. The running engine calls these and then takes the result into memory; the
command line calls them directly and the engine picks the change up (``AlarmEngine.sync``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from scada.alarms import store
from scada.alarms.alarm import Alarm, Transition
from scada.alarms.classes import AlarmClass
from scada.alarms.lifecycle import Event, IllegalTransition
from scada.alarms.occurrence import apply_event
from scada.db import Database
from scada.users.audit import Actor, AuditLog
from scada.users.auth import ROLE_PERMISSIONS, Permission, Role

__all__ = [
    "AlarmNotFound",
    "NotPermitted",
    "acknowledge",
    "acknowledge_many",
    "check_ack",
    "check_permission",
    "comment",
    "confirm",
    "shelve",
    "unshelve",
]


class AlarmNotFound(LookupError):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"no alarm {alarm_id}")
        self.alarm_id = alarm_id


class NotPermitted(PermissionError):
    pass


def check_permission(actor: Actor, permission: Permission) -> None:
    try:
        role = Role(actor.role)
    except ValueError:
        raise NotPermitted(f"{actor.name} (role {actor.role or 'none'}) may not {permission.value}") from None
    if permission not in ROLE_PERMISSIONS[role]:
        raise NotPermitted(f"role {role.value} may not {permission.value}")


def check_ack(actor: Actor, cls: AlarmClass) -> None:
    if actor.role not in cls.ack_roles:
        raise NotPermitted(
            f"role {actor.role or 'none'} may not acknowledge {cls.name} alarms (allowed: {', '.join(cls.ack_roles)})"
        )


async def _apply(
    db: Database,
    alarm_id: int,
    actor: Actor,
    action: str,
    reason: str,
    make: Callable[[Alarm], tuple[Alarm, Transition]],
) -> tuple[Alarm, Alarm, Transition]:
    for attempt in range(3):
        try:
            async with db.transaction() as session:
                before = await store.get_alarm(session, alarm_id)
                if before is None:
                    raise AlarmNotFound(alarm_id)
                after, transition = make(before)
                stored = await store.update_alarm(session, after, before)
                store.add_transitions(session, [transition])
                AuditLog.record(
                    session, actor, action, "alarm", str(alarm_id), reason=reason,
                    before=_audit_view(before), after=_audit_view(stored),
                )
                return before, stored, transition
        except store.VersionConflict:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _audit_view(alarm: Alarm) -> dict[str, object]:
    return {
        "key": alarm.key, "state": alarm.state.value, "priority": int(alarm.priority),
        "shelved_until": alarm.shelved_until, "version": alarm.version,
    }


async def acknowledge(
    db: Database, alarm_id: int, actor: Actor, reason: str, classes: dict[str, AlarmClass], now: datetime
) -> tuple[Alarm, Alarm, Transition]:
    def make(before: Alarm) -> tuple[Alarm, Transition]:
        check_permission(actor, Permission.ALARM_ACK)
        check_ack(actor, classes[before.alarm_class])
        return apply_event(before, Event.ACKNOWLEDGE, now, actor=actor.name, reason=reason)

    return await _apply(db, alarm_id, actor, "alarm.acknowledge", reason, make)


async def confirm(
    db: Database, alarm_id: int, actor: Actor, reason: str, classes: dict[str, AlarmClass], now: datetime
) -> tuple[Alarm, Alarm, Transition]:
    """Confirm an acknowledged alarm (the same roles as acknowledging it): the operator says it
    was dealt with. Once per acknowledgement."""

    def make(before: Alarm) -> tuple[Alarm, Transition]:
        check_permission(actor, Permission.ALARM_ACK)
        check_ack(actor, classes[before.alarm_class])
        if before.confirmed_at is not None:
            raise IllegalTransition(before.state, Event.CONFIRM, "the alarm is already confirmed")
        return apply_event(before, Event.CONFIRM, now, actor=actor.name, reason=reason)

    return await _apply(db, alarm_id, actor, "alarm.confirm", reason, make)


async def comment(db: Database, alarm_id: int, actor: Actor, text: str, now: datetime) -> tuple[Alarm, Alarm, Transition]:
    """Add a comment to an open alarm (``alarm_ack``: those who handle alarms)."""
    text = text.strip()
    if not text:
        raise ValueError("comment: write something")
    if len(text) > 500:
        raise ValueError("comment: at most 500 characters")

    def make(before: Alarm) -> tuple[Alarm, Transition]:
        check_permission(actor, Permission.ALARM_ACK)
        return apply_event(before, Event.COMMENT, now, actor=actor.name, reason=text)

    return await _apply(db, alarm_id, actor, "alarm.comment", text, make)


async def acknowledge_many(
    db: Database, alarm_ids: list[int], actor: Actor, reason: str, classes: dict[str, AlarmClass], now: datetime
) -> list[tuple[int, Alarm | Exception, Transition | None]]:
    """Acknowledge several alarms in one transaction (the console's "acknowledge all").
    Each answers for itself: (id, the alarm after, its transition) or (id, the refusal, None)."""
    check_permission(actor, Permission.ALARM_ACK)
    ids = list(dict.fromkeys(alarm_ids))
    for attempt in range(3):
        try:
            async with db.transaction() as session:
                found = {a.id: a for a in await store.get_alarms(session, ids)}
                results: list[tuple[int, Alarm | Exception, Transition | None]] = []
                # transitions and audit entries go in one batch at commit, not before each update
                session.sync_session.autoflush = False
                for alarm_id in ids:
                    before = found.get(alarm_id)
                    if before is None:
                        results.append((alarm_id, AlarmNotFound(alarm_id), None))
                        continue
                    try:
                        check_ack(actor, classes[before.alarm_class])
                        after, transition = apply_event(before, Event.ACKNOWLEDGE, now, actor=actor.name, reason=reason)
                    except (NotPermitted, IllegalTransition) as exc:
                        results.append((alarm_id, exc, None))
                        continue
                    stored = await store.update_alarm(session, after, before)
                    store.add_transitions(session, [transition])
                    AuditLog.record(
                        session, actor, "alarm.acknowledge", "alarm", str(alarm_id), reason=reason,
                        before=_audit_view(before), after=_audit_view(stored),
                    )
                    results.append((alarm_id, stored, transition))
                return results
        except store.VersionConflict:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def shelve(
    db: Database,
    alarm_id: int,
    actor: Actor,
    reason: str,
    duration: timedelta,
    classes: dict[str, AlarmClass],
    now: datetime,
    *,
    max_duration: timedelta,
    one_shot: bool = False,
) -> tuple[Alarm, Alarm, Transition]:
    """Shelve for ``duration``; ``one_shot``: until the condition clears, at most ``duration``."""
    if not reason.strip():
        raise ValueError("reason: say why the alarm is shelved")
    if duration <= timedelta(0):
        raise ValueError("duration: must be positive")
    if duration > max_duration:
        raise ValueError(f"duration: at most {max_duration.total_seconds() / 3600:g} h (alarms.max_shelve_hours)")

    def make(before: Alarm) -> tuple[Alarm, Transition]:
        check_permission(actor, Permission.ALARM_SHELVE)
        cls = classes[before.alarm_class]
        if not cls.shelvable:
            raise IllegalTransition(before.state, Event.SHELVE, f"{cls.name} alarms may not be shelved")
        return apply_event(
            before, Event.SHELVE, now, actor=actor.name, reason=reason, shelved_until=now + duration, one_shot=one_shot
        )

    return await _apply(db, alarm_id, actor, "alarm.shelve", reason, make)


async def unshelve(
    db: Database, alarm_id: int, actor: Actor, reason: str, now: datetime
) -> tuple[Alarm, Alarm, Transition]:
    def make(before: Alarm) -> tuple[Alarm, Transition]:
        check_permission(actor, Permission.ALARM_SHELVE)
        return apply_event(before, Event.UNSHELVE, now, actor=actor.name, reason=reason)

    return await _apply(db, alarm_id, actor, "alarm.unshelve", reason, make)
