"""Reading and writing occurrences, transitions and out-of-service objects.

Functions take the caller's session, so a transition commits together with its audit entry.
Updates are conditional on the version the writer read (:class:`VersionConflict` otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scada.alarms.alarm import STANDING_STATES, Alarm, AlarmState, Priority, Transition
from scada.alarms.models import AlarmRow, AlarmTransitionRow, OutOfServiceRow

__all__ = [
    "AlarmFilter",
    "OutOfService",
    "VersionConflict",
    "add_out_of_service",
    "add_transitions",
    "get_alarm",
    "get_alarms",
    "insert_alarms",
    "load_open",
    "load_out_of_service",
    "matches",
    "query_alarms",
    "query_transitions",
    "remove_out_of_service",
    "sort_key",
    "update_alarm",
    "versions",
]

_COLUMNS = [f.name for f in dataclasses.fields(Alarm) if f.name != "id"]

class VersionConflict(Exception):
    """Someone else changed the occurrence since it was read."""

    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"alarm {alarm_id} was changed by someone else")
        self.alarm_id = alarm_id

@dataclass(frozen=True, slots=True)
class OutOfService:
    object_type: str
    object_id: str
    since: datetime
    actor: str
    reason: str

@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Which occurrences to list. By default the standing ones (the operators' active list)."""

    states: frozenset[AlarmState] | None = STANDING_STATES  # None: any state
    open_only: bool = True
    classes: frozenset[str] | None = None
    min_priority: int = 0
    meter_id: str | None = None
    room_id: str | None = None
    link: str | None = None
    object_id: str | None = None
    since: datetime | None = None  # raised at or after
    until: datetime | None = None  # raised before
    limit: int = 1000

def matches(alarm: Alarm, f: AlarmFilter) -> bool:
    return (
        (f.states is None or alarm.state in f.states)
        and (not f.open_only or alarm.closed_at is None)
        and (f.classes is None or alarm.alarm_class in f.classes)
        and alarm.priority >= f.min_priority
        and (f.meter_id is None or alarm.meter_id == f.meter_id)
        and (f.room_id is None or alarm.room_id == f.room_id)
        and (f.link is None or alarm.link == f.link)
        and (f.object_id is None or alarm.object_id == f.object_id)
        and (f.since is None or alarm.raised_at >= f.since)
        and (f.until is None or alarm.raised_at < f.until)
    )

def sort_key(alarm: Alarm) -> tuple[object, ...]:
    """Console order: unacknowledged first, then by priority, newest first."""
    return (alarm.acknowledged, -alarm.priority, -alarm.last_active_at.timestamp(), alarm.id)

def _from_row(row: AlarmRow) -> Alarm:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["priority"] = Priority(row.priority)
    values["state"] = AlarmState(row.state)
    return Alarm(id=row.id, **values)

def _values(alarm: Alarm) -> dict[str, object]:
    out: dict[str, object] = {name: getattr(alarm, name) for name in _COLUMNS}
    out["priority"] = int(alarm.priority)
    out["state"] = alarm.state.value
    return out

async def insert_alarms(session: AsyncSession, alarms: Sequence[Alarm]) -> list[Alarm]:
    """Store new occurrences (version 1); returns them with their ids."""
    rows = [AlarmRow(**{**_values(a), "version": 1}) for a in alarms]
    session.add_all(rows)
    await session.flush()
    return [dataclasses.replace(a, id=row.id, version=1) for a, row in zip(alarms, rows, strict=False)]

async def update_alarm(session: AsyncSession, alarm: Alarm, before: Alarm) -> Alarm:
    """Store ``alarm`` over ``before`` (the version read); returns it with its new version.
    Only the columns that changed are written."""
    new = dataclasses.replace(alarm, version=before.version + 1)
    old_values, new_values = _values(before), _values(new)
    changed = {k: v for k, v in new_values.items() if v != old_values[k]}
    result = await session.execute(
        update(AlarmRow)
        .where(AlarmRow.id == alarm.id, AlarmRow.version == before.version)
        .values(**changed)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise VersionConflict(alarm.id)
    return new


def add_transitions(session: AsyncSession, transitions: Iterable[Transition]) -> None:
    session.add_all(
        AlarmTransitionRow(
            alarm_id=t.alarm_id, ts=t.ts, event=t.event, from_state=t.from_state.value,
            to_state=t.to_state.value, actor=t.actor, reason=t.reason, value=t.value[:200],
        )
        for t in transitions
    )

async def load_open(session: AsyncSession) -> list[Alarm]:
    rows = await session.scalars(select(AlarmRow).where(AlarmRow.closed_at.is_(None)))
    return [_from_row(r) for r in rows]

async def get_alarm(session: AsyncSession, alarm_id: int) -> Alarm | None:
    row = await session.get(AlarmRow, alarm_id, populate_existing=True)
    return _from_row(row) if row is not None else None

async def get_alarms(session: AsyncSession, ids: Sequence[int]) -> list[Alarm]:
    out: list[Alarm] = []
    for i in range(0, len(ids), 500):
        rows = await session.scalars(select(AlarmRow).where(AlarmRow.id.in_(ids[i : i + 500])))
        out.extend(_from_row(r) for r in rows)
    return out

async def versions(session: AsyncSession, ids: Sequence[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(0, len(ids), 500):
        rows = await session.execute(select(AlarmRow.id, AlarmRow.version).where(AlarmRow.id.in_(ids[i : i + 500])))
        out.update({r[0]: r[1] for r in rows})
    return out

async def query_alarms(session: AsyncSession, f: AlarmFilter) -> list[Alarm]:
    stmt = select(AlarmRow)
    if f.states is not None:
        stmt = stmt.where(AlarmRow.state.in_([s.value for s in f.states]))
    if f.open_only:
        stmt = stmt.where(AlarmRow.closed_at.is_(None))
    if f.classes is not None:
        stmt = stmt.where(AlarmRow.alarm_class.in_(sorted(f.classes)))
    if f.min_priority:
        stmt = stmt.where(AlarmRow.priority >= f.min_priority)
    for column, wanted in (
        (AlarmRow.meter_id, f.meter_id), (AlarmRow.room_id, f.room_id), (AlarmRow.link, f.link),
        (AlarmRow.object_id, f.object_id),
    ):
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    if f.since is not None:
        stmt = stmt.where(AlarmRow.raised_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(AlarmRow.raised_at < f.until)
    stmt = stmt.order_by(AlarmRow.raised_at.desc(), AlarmRow.id.desc()).limit(f.limit)
    return [_from_row(r) for r in await session.scalars(stmt)]

async def query_transitions(session: AsyncSession, alarm_id: int) -> list[Transition]:
    rows = await session.scalars(
        select(AlarmTransitionRow).where(AlarmTransitionRow.alarm_id == alarm_id).order_by(AlarmTransitionRow.id)
    )
    return [
        Transition(r.alarm_id, r.ts, r.event, AlarmState(r.from_state), AlarmState(r.to_state), r.actor, r.reason, r.value)
        for r in rows
    ]

# -- out of service ------------------------------------------------------------------------------
async def load_out_of_service(session: AsyncSession) -> list[OutOfService]:
    rows = await session.scalars(select(OutOfServiceRow))
    return [OutOfService(r.object_type, r.object_id, r.since, r.actor, r.reason) for r in rows]

async def add_out_of_service(session: AsyncSession, oos: OutOfService) -> bool:
    """False when the object is out of service already."""
    if await session.get(OutOfServiceRow, (oos.object_type, oos.object_id)) is not None:
        return False
    session.add(OutOfServiceRow(object_type=oos.object_type, object_id=oos.object_id, since=oos.since, actor=oos.actor, reason=oos.reason))
    return True

async def remove_out_of_service(session: AsyncSession, object_type: str, object_id: str) -> bool:
    result = await session.execute(
        delete(OutOfServiceRow).where(OutOfServiceRow.object_type == object_type, OutOfServiceRow.object_id == object_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
