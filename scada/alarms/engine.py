"""The alarm engine: condition tags in, ISA-18.2 alarms out.

Pipeline, one stage per module: tag values → :mod:`sources` (is the condition active?) →
:mod:`conditions` (delay-on / delay-off) → flood control and out-of-service (here) →
:mod:`lifecycle` (state machine) → :mod:`store` (every transition in the database) → events
to subscribers (HMI, OPC UA, notifications) and counts as tags (:mod:`exposure`).

The engine is level-triggered: whatever changed marks alarm points *dirty*, and a reconcile
brings each dirty point's occurrence to where its condition, flood control, shelving and
out-of-service say it should be, writing all transitions of one batch in one transaction.
Memory always mirrors what was committed; if the database refuses a write, the points stay
dirty and the reconcile is retried with backoff, so nothing is lost and nothing is shown that
is not stored.

Flood control: a link whose ``comm_ok`` is False raises one ``link_down`` alarm, and the
``comm_loss`` alarms of its meters are suppressed by design (not presented, not notified;
an occurrence already standing moves to SUPPRESSED). When the link recovers, its alarm
clears and meters that are still silent alarm one by one. Chattering is absorbed by each
class's delay-on/delay-off and, for analog sources, a deadband.

Changes made by others (``scada alarms ack`` on the command line works on the database) are
picked up by :meth:`AlarmEngine.sync`, which the component runs every
``alarms.sync_interval_s``: every occurrence carries a version, and one that changed in the
database is reloaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.alarms import operations, store
from scada.alarms.alarm import Alarm, AlarmEvent, AlarmKey, AlarmState, Transition
from scada.alarms.clock import Clock, SystemClock
from scada.alarms.conditions import ConditionTable
from scada.alarms.config import AlarmsConfig
from scada.alarms.exposure import AlarmExposure
from scada.alarms.lifecycle import Event, IllegalTransition
from scada.alarms.models import AlarmTransitionRow
from scada.alarms.occurrence import apply_event, new_occurrence
from scada.alarms.sources import Reading, SourceEvaluator, is_source_tag
from scada.alarms.store import AlarmFilter, OutOfService, VersionConflict
from scada.db import Database
from scada.site.assets import AssetRegistry, AssetSnapshot, RegistryDiff
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Permission
from tags import Subscription, TagChange, TagDB, TagValue

__all__ = ["AlarmEngine", "EventListener", "SYSTEM_ACTOR"]

_STANDING = AlarmFilter()  # frozen: shared defaults of the query methods
_EVERY = AlarmFilter(states=None, open_only=False)

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:alarms"
EventListener = Callable[[Sequence[AlarmEvent]], None]


def _event_key(event: AlarmEvent) -> int:
    return event.alarm.id  # past the queue's bound, an alarm's newest event replaces its older ones
_HIDDEN = (AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE)
_SERVICE_EVENTS = (Event.REMOVE_FROM_SERVICE, Event.RETURN_TO_SERVICE)


@dataclass(slots=True)
class _Change:
    key: AlarmKey
    old: Alarm | None  # None: a new occurrence
    new: Alarm
    transitions: list[Transition]


class AlarmEngine:
    def __init__(
        self,
        db: Database,
        tagdb: TagDB,
        assets: AssetRegistry,
        config: AlarmsConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.tagdb = tagdb
        self.assets = assets
        self.config = config
        self.classes = config.resolved_classes()
        self.clock: Clock = clock or SystemClock()
        self.exposure = AlarmExposure(tagdb)
        self._conditions = ConditionTable(self.classes)
        self._evaluator = SourceEvaluator(self.classes, self._max_power_kw)
        self._open: dict[str, Alarm] = {}  # key -> its open occurrence
        self._ids: dict[int, str] = {}  # id of an open occurrence -> key
        self._shelved: dict[int, datetime] = {}  # id -> shelved until
        self._oos: dict[tuple[str, str], OutOfService] = {}
        self._dirty: set[AlarmKey] = set()
        self._lock = asyncio.Lock()
        self._subs: list[Subscription[AlarmEvent]] = []
        self._listeners: list[EventListener] = []
        self._tag_sub: Subscription | None = None
        self._wake: asyncio.Future[None] | None = None
        self._retry_at: datetime | None = None
        self._retry_s = 1.0
        self._store_ok = True
        self._unsubscribe_assets: Callable[[], None] | None = None
        self.transitions_written = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load open occurrences and out-of-service objects, register the count tags, subscribe
        to the condition tags and take their current values."""
        async with self.db.reads() as session:  # only reads: no write lock at start-up
            for alarm in await store.load_open(session):
                self._remember(alarm)
            self._oos = {(o.object_type, o.object_id): o for o in await store.load_out_of_service(session)}
        self.exposure.register(self.assets.snapshot)
        self._unsubscribe_assets = self.assets.subscribe(self._on_registry)
        self._tag_sub = self.tagdb.subscribe(is_source_tag, maxsize=50_000, name="alarms")
        now = self.clock.now()
        for name, value in self.tagdb.snapshot(is_source_tag).items():
            self._read(name, value, now)
        self._dirty.update(AlarmKey.parse(k) for k in self._open)  # e.g. shelving that expired while down
        async with self._lock:
            await self._reconcile()
        self._publish_counts()
        log.info("alarm engine started", extra={"open": len(self._open), "out_of_service": len(self._oos)})

    async def close(self) -> None:
        if self._unsubscribe_assets is not None:
            self._unsubscribe_assets()
            self._unsubscribe_assets = None
        if self._tag_sub is not None:
            self._tag_sub.close()
        for sub in list(self._subs):
            sub.close()

    # -- the engine's tasks (spawned by the component) ---------------------------------------
    async def run_tags(self) -> None:
        """Consume condition tag changes in batches."""
        sub = self._tag_sub
        assert sub is not None, "start() first"
        while True:
            await sub.wait()
            if sub.closed and not sub.pending:
                return
            # taken under the lock: a concurrent settle() then applies these changes itself, or
            # finds them applied; never returns while they sit in this task's hands
            async with self._lock:
                batch = sub.drain(10_000)
                if batch:
                    self._apply_changes(batch)
                    await self._reconcile()
                    self._poke()  # a condition may now wait for its delay: the timer loop must know

    async def run_timers(self) -> None:
        """Settle delays, expire shelving and retry failed writes when they are due."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._next_deadline()
            wake: asyncio.Future[None] = loop.create_future()
            self._wake = wake
            waits: set[asyncio.Future[None]] = {wake}
            timer = self.clock.timer(deadline) if deadline is not None else None
            if timer is not None:
                waits.add(timer)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if timer is not None:
                    timer.cancel()
                wake.cancel()
                self._wake = None
            await self.settle(drain_tags=False)

    async def run_sync(self) -> None:
        """Pick up changes others made in the database, every ``sync_interval_s``."""
        interval = timedelta(seconds=self.config.sync_interval_s)
        while True:
            timer = self.clock.timer(self.clock.now() + interval)
            try:
                await timer
            finally:
                timer.cancel()
            try:
                await self.sync()
            except Exception as exc:  # the database may be down: the next round tries again
                log.warning("alarm sync failed", extra={"error": repr(exc)})

    async def settle(self, *, drain_tags: bool = True) -> None:
        """Process everything pending now: queued tag changes (unless ``drain_tags`` is False),
        delays and shelving that are due, dirty points. Tests call this after writing tags or
        advancing a manual clock; the engine's own tasks call it as things come due."""
        async with self._lock:
            if drain_tags and self._tag_sub is not None:
                self._apply_changes(self._tag_sub.drain())
            now = self.clock.now()
            for key in self._conditions.pop_due(now):
                self._touch(key)
            for alarm_id, until in list(self._shelved.items()):
                if until <= now:
                    self._dirty.add(AlarmKey.parse(self._ids[alarm_id]))
            if self._retry_at is not None and now < self._retry_at:
                return
            await self._reconcile()

    # -- reading conditions ------------------------------------------------------------------
    def _apply_changes(self, changes: Iterable[TagChange]) -> None:
        now = self.clock.now()
        for change in changes:
            self._read(change.name, change.new, now)

    def _read(self, name: str, value: TagValue, now: datetime) -> None:
        unit = self.tagdb.meta(name).unit if name in self.tagdb else ""
        for reading in self._evaluator.evaluate(name, value, unit):
            self._take_reading(reading, now)

    def _take_reading(self, reading: Reading, now: datetime) -> None:
        raw_before = self._conditions.raw(reading.key)
        changed = self._conditions.update(reading, now)
        if changed or self._conditions.raw(reading.key) != raw_before:
            self._touch(reading.key)

    def _touch(self, key: AlarmKey) -> None:
        self._dirty.add(key)
        if key.alarm_class == "link_down":  # the link's meters may be (un)suppressed
            for meter in self.assets.snapshot.meters_on_link(key.object_id):
                self._dirty.add(AlarmKey("comm_loss", "meter", meter.id))

    def _max_power_kw(self, meter_id: str) -> float | None:
        meter = self.assets.snapshot.meters.get(meter_id)
        return float(meter.max_power_kw) if meter is not None and meter.max_power_kw is not None else None

    def _suppressed(self, key: AlarmKey) -> bool:
        if key.alarm_class != "comm_loss":
            return False
        meter = self.assets.snapshot.meters.get(key.object_id)
        if meter is None:
            return False
        link = AlarmKey("link_down", "link", meter.link)
        return self._conditions.raw(link) is True or self._conditions.active(link) is True

    def _on_registry(self, snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
        self.exposure.register(snapshot)
        now = self.clock.now()
        # a meter taken out of the registry (replaced, deactivated) reports nothing any more:
        # its conditions end here, so its alarms can clear
        for alarm in list(self._open.values()):
            if alarm.object_type == "meter" and alarm.object_id in diff.meters_removed:
                key = AlarmKey.parse(alarm.key)
                self._conditions.force(key, False, now, detail="meter no longer active")
                self._dirty.add(key)
        self._publish_counts()
        self._poke()

    # -- reconcile ---------------------------------------------------------------------------
    async def _reconcile(
        self,
        *,
        actor: str = SYSTEM_ACTOR,
        reason: str = "",
        extra: Callable[[AsyncSession], Awaitable[None]] | None = None,
        keys: Iterable[AlarmKey] = (),
    ) -> list[AlarmEvent]:
        """Bring dirty points (and ``keys``) to their target state in one transaction; ``extra``
        runs first in the same transaction (an out-of-service record and its audit entry).
        Must hold the lock. Raises only when ``extra`` is given (the caller's action failed)."""
        for attempt in range(4):
            todo = self._dirty | set(keys)
            if not todo and extra is None:
                return []
            self._dirty = set()
            now = self.clock.now()
            changes = [c for c in (self._plan(k, now, actor, reason) for k in todo) if c is not None]
            try:
                events = await self._commit(changes, extra)
            except VersionConflict as conflict:
                self._dirty |= todo
                await self._reload([conflict.alarm_id])
                if attempt == 3:
                    raise
                continue
            except Exception as exc:
                self._dirty |= todo
                if extra is not None:
                    raise
                self._store_failed(exc, now)
                return []
            if not self._store_ok:
                self._store_ok = True
                log.info("alarm store writable again")
            self._retry_at = None
            self._retry_s = 1.0
            self._emit(events)
            return events
        return []

    def _store_failed(self, exc: Exception, now: datetime) -> None:
        self._retry_at = now + timedelta(seconds=self._retry_s)
        if self._store_ok:
            self._store_ok = False
            log.error("cannot store alarm transitions; retrying", extra={"error": repr(exc), "retry_in_s": self._retry_s})
        self._retry_s = min(self._retry_s * 2, 60.0)
        self._poke()

    def _plan(self, key: AlarmKey, now: datetime, actor: str, reason: str) -> _Change | None:
        cls = self.classes.get(key.alarm_class)
        if cls is None:
            return None
        cond = self._conditions.get(key)
        active = cond.active if cond is not None else None
        oos = (key.object_type, key.object_id) in self._oos
        suppressed = self._suppressed(key)
        old = self._open.get(str(key))
        alarm = old
        if alarm is None:
            if not active or oos or suppressed or cond is None:
                return None
            meter_id, room_id, link, label = self._where(key)
            alarm = new_occurrence(
                key, priority=cls.priority, message=f"{cls.title}: {label}", detail=cond.detail, value=cond.value,
                meter_id=meter_id, room_id=room_id, link=link, now=now,
            )
        transitions: list[Transition] = []
        try:
            for _ in range(6):
                event = _next_event(alarm, active, oos, suppressed, now)
                if event is None:
                    break
                by_operator = event in _SERVICE_EVENTS
                condition_event = event in (Event.ACTIVATE, Event.CLEAR)
                alarm, transition = apply_event(
                    alarm, event, now,
                    actor=actor if by_operator else SYSTEM_ACTOR,
                    reason=reason if by_operator else self._why(event, key, cond.detail if cond else "", alarm),
                    value=cond.value if cond is not None and condition_event else None,
                    detail=cond.detail if cond is not None and condition_event else None,
                )
                transitions.append(transition)
                if alarm.state is AlarmState.NORMAL:
                    break
        except IllegalTransition as exc:  # a bug, not an operator's mistake: keep running
            log.error("alarm transition refused", extra={"alarm": str(key), "error": str(exc)})
            return None
        if not transitions:
            return None
        return _Change(key, old, alarm, transitions)

    def _why(self, event: Event, key: AlarmKey, detail: str, alarm: Alarm) -> str:
        if event is Event.ACTIVATE:
            return detail
        if event in (Event.SUPPRESS, Event.UNSUPPRESS):
            meter = self.assets.snapshot.meters.get(key.object_id)
            link = meter.link if meter is not None else "?"
            return f"link {link} {'down' if event is Event.SUPPRESS else 'up'}"
        if event is Event.UNSHELVE:
            if alarm.shelve_one_shot and not alarm.condition_active:
                return "one-shot shelving ended: the condition cleared"
            return "shelving expired"
        return ""

    def _where(self, key: AlarmKey) -> tuple[str | None, str | None, str | None, str]:
        """(meter, room, link, label) of an alarm point's object."""
        snap = self.assets.snapshot
        if key.object_type == "meter":
            meter = snap.meters.get(key.object_id)
            room = snap.rooms.get(meter.room_id) if meter is not None and meter.room_id else None
            label = f"meter {key.object_id}" + (f" (room {room.name})" if room is not None else "")
            return key.object_id, meter.room_id if meter else None, (meter.link or None) if meter else None, label
        if key.object_type == "room":
            room = snap.rooms.get(key.object_id)
            return None, key.object_id, None, f"room {room.name if room else key.object_id}"
        if key.object_type == "link":
            return None, None, key.object_id, f"link {key.object_id}"
        return None, None, None, key.object_id

    async def _commit(
        self, changes: list[_Change], extra: Callable[[AsyncSession], Awaitable[None]] | None
    ) -> list[AlarmEvent]:
        if not changes and extra is None:
            return []
        async with self.db.transaction() as session:
            if extra is not None:
                await extra(session)
            new = [c for c in changes if c.old is None]
            stored_new = await store.insert_alarms(session, [c.new for c in new])
            for change, stored in zip(new, stored_new, strict=False):
                change.new = stored
                change.transitions = [_with_id(t, stored.id) for t in change.transitions]
            for change in changes:
                if change.old is not None:
                    change.new = await store.update_alarm(session, change.new, change.old)
            store.add_transitions(session, (t for c in changes for t in c.transitions))
        events: list[AlarmEvent] = []
        for change in changes:
            self._remember(change.new)
            events.extend(AlarmEvent(change.new, t) for t in change.transitions)
        self.transitions_written += len(events)
        return events

    async def _reload(self, ids: Sequence[int]) -> list[Alarm]:
        async with self.db.reads() as session:
            alarms = await store.get_alarms(session, list(ids))
        for alarm in alarms:
            self._remember(alarm)
        return alarms

    # -- memory and events -------------------------------------------------------------------
    def _remember(self, alarm: Alarm) -> None:
        if alarm.closed_at is None:
            self._open[alarm.key] = alarm
            self._ids[alarm.id] = alarm.key
        else:
            if self._ids.pop(alarm.id, None) is not None and self._open.get(alarm.key, alarm).id == alarm.id:
                del self._open[alarm.key]
        if alarm.state is AlarmState.SHELVED and alarm.shelved_until is not None and alarm.closed_at is None:
            self._shelved[alarm.id] = alarm.shelved_until
        else:
            self._shelved.pop(alarm.id, None)

    def _emit(self, events: Sequence[AlarmEvent]) -> None:
        if not events:
            return
        for sub in self._subs:
            for event in events:
                sub.put(event)
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("alarm listener failed", extra={"listener": repr(listener)})
        self._publish_counts()
        self._poke()

    def _publish_counts(self) -> None:
        self.exposure.publish(self._open.values(), self.assets.snapshot)

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _next_deadline(self) -> datetime | None:
        if self._dirty and self._retry_at is None:
            return self.clock.now()
        candidates = [d for d in (self._conditions.next_deadline(), self._retry_at) if d is not None]
        if self._shelved:
            candidates.append(min(self._shelved.values()))
        return min(candidates) if candidates else None

    # -- the Python API ----------------------------------------------------------------------
    def active(self, f: AlarmFilter = _STANDING) -> list[Alarm]:
        """Open occurrences matching ``f`` (default: the standing ones), in console order:
        unacknowledged first, then by priority, newest first."""
        return sorted((a for a in self._open.values() if store.matches(a, f)), key=store.sort_key)[: f.limit]

    def get(self, alarm_id: int) -> Alarm | None:
        """An open occurrence from memory (None when closed or unknown: see :meth:`find`)."""
        key = self._ids.get(alarm_id)
        return self._open.get(key) if key is not None else None

    async def find(self, alarm_id: int) -> Alarm | None:
        async with self.db.reads() as session:
            return await store.get_alarm(session, alarm_id)

    async def history(self, f: AlarmFilter = _EVERY) -> list[Alarm]:
        """Occurrences from the database, newest first."""
        async with self.db.reads() as session:
            return await store.query_alarms(session, f)

    async def transitions(self, alarm_id: int) -> list[Transition]:
        async with self.db.reads() as session:
            return await store.query_transitions(session, alarm_id)

    def out_of_service(self) -> list[OutOfService]:
        return sorted(self._oos.values(), key=lambda o: (o.object_type, o.object_id))

    def subscribe(self, *, maxsize: int = 10_000, name: str = "") -> Subscription[AlarmEvent]:
        """Every transition from now on, as :class:`AlarmEvent`; close it to unsubscribe."""
        sub: Subscription[AlarmEvent] = Subscription(self._unsubscribe, key=_event_key, maxsize=maxsize, name=name)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription[AlarmEvent]) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(events)`` after each committed batch (it must not block)."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def acknowledge(self, alarm_id: int, actor: Actor, reason: str = "") -> Alarm:
        """Acknowledge; the actor's role must be allowed by the alarm's class."""
        async with self._lock:
            _, after, transition = await operations.acknowledge(
                self.db, alarm_id, actor, reason, self.classes, self.clock.now()
            )
            self._take(after, transition)
        return after

    async def acknowledge_many(self, alarm_ids: list[int], actor: Actor, reason: str = "") -> list[tuple[int, Alarm | Exception]]:
        """Acknowledge several alarms in one transaction; each answers for itself with the
        alarm after, or the reason it was refused."""
        async with self._lock:
            results = await operations.acknowledge_many(self.db, alarm_ids, actor, reason, self.classes, self.clock.now())
            events = []
            for _, outcome, transition in results:
                if isinstance(outcome, Alarm) and transition is not None:
                    self._remember(outcome)
                    events.append(AlarmEvent(outcome, transition))
            self._emit(events)
        return [(alarm_id, outcome) for alarm_id, outcome, _ in results]

    async def confirm(self, alarm_id: int, actor: Actor, reason: str = "") -> Alarm:
        """Confirm an acknowledged alarm (the roles that may acknowledge it may confirm it)."""
        async with self._lock:
            _, after, transition = await operations.confirm(self.db, alarm_id, actor, reason, self.classes, self.clock.now())
            self._take(after, transition)
        return after

    async def comment(self, alarm_id: int, actor: Actor, text: str) -> Alarm:
        """Add a comment to an open alarm (recorded as a transition, audited)."""
        async with self._lock:
            _, after, transition = await operations.comment(self.db, alarm_id, actor, text, self.clock.now())
            self._take(after, transition)
        return after

    @property
    def max_shelve(self) -> timedelta:
        return timedelta(hours=self.config.max_shelve_hours)

    async def shelve(self, alarm_id: int, actor: Actor, reason: str, duration: timedelta | None = None, *, one_shot: bool = False) -> Alarm:
        """Shelve a standing alarm for ``duration`` (at most ``alarms.max_shelve_hours``);
        ``one_shot``: until its condition clears (at most ``duration``, or the maximum)."""
        if duration is None:
            if not one_shot:
                raise ValueError("duration: give how long to shelve the alarm")
            duration = self.max_shelve
        async with self._lock:
            _, after, transition = await operations.shelve(
                self.db, alarm_id, actor, reason, duration, self.classes, self.clock.now(),
                max_duration=self.max_shelve, one_shot=one_shot,
            )
            self._take(after, transition)
            if one_shot:
                self._dirty.add(AlarmKey.parse(after.key))  # a condition already clear ends it at once
                await self._reconcile()
        return self.get(alarm_id) or after

    async def unshelve(self, alarm_id: int, actor: Actor, reason: str = "") -> Alarm:
        async with self._lock:
            _, after, transition = await operations.unshelve(self.db, alarm_id, actor, reason, self.clock.now())
            self._take(after, transition)
            self._dirty.add(AlarmKey.parse(after.key))
            await self._reconcile()
        return self.get(alarm_id) or after

    def _take(self, alarm: Alarm, transition: Transition) -> None:
        self._remember(alarm)
        self._emit([AlarmEvent(alarm, transition)])

    async def set_out_of_service(self, object_type: str, object_id: str, actor: Actor, reason: str) -> OutOfService:
        """Take an object's alarms out of service (a meter under maintenance): its open alarms
        move to OUT_OF_SERVICE and none is raised until it returns to service."""
        operations.check_permission(actor, Permission.METER_SERVICE)
        self._check_object(object_type, object_id)
        if not reason.strip():
            raise ValueError("reason: say why the alarms are taken out of service")
        async with self._lock:
            ident = (object_type, object_id)
            if ident in self._oos:
                raise IllegalTransition(AlarmState.OUT_OF_SERVICE, Event.REMOVE_FROM_SERVICE, f"{object_type} {object_id} is already out of service")
            oos = OutOfService(object_type, object_id, self.clock.now(), actor.name, reason)

            async def record(session: AsyncSession) -> None:
                if not await store.add_out_of_service(session, oos):
                    raise IllegalTransition(AlarmState.OUT_OF_SERVICE, Event.REMOVE_FROM_SERVICE, f"{object_type} {object_id} is already out of service")
                AuditLog.record(session, actor, "alarm.out_of_service", object_type, object_id, reason=reason,
                                after={"out_of_service": True})

            self._oos[ident] = oos
            try:
                await self._reconcile(actor=actor.name, reason=reason, extra=record, keys=self._keys_of(object_type, object_id))
            except BaseException:
                self._oos.pop(ident, None)
                raise
        return oos

    async def return_to_service(self, object_type: str, object_id: str, actor: Actor, reason: str = "") -> None:
        """Put an object's alarms back in service: alarms whose condition is still active are
        presented again (unacknowledged)."""
        operations.check_permission(actor, Permission.METER_SERVICE)
        async with self._lock:
            ident = (object_type, object_id)
            oos = self._oos.get(ident)
            if oos is None:
                raise IllegalTransition(AlarmState.NORMAL, Event.RETURN_TO_SERVICE, f"{object_type} {object_id} is not out of service")

            async def record(session: AsyncSession) -> None:
                await store.remove_out_of_service(session, object_type, object_id)
                AuditLog.record(session, actor, "alarm.return_to_service", object_type, object_id, reason=reason,
                                before={"out_of_service": True, "since": oos.since, "by": oos.actor}, after={"out_of_service": False})

            del self._oos[ident]
            try:
                await self._reconcile(actor=actor.name, reason=reason, extra=record, keys=self._keys_of(object_type, object_id))
            except BaseException:
                self._oos[ident] = oos
                raise

    def _check_object(self, object_type: str, object_id: str) -> None:
        snap = self.assets.snapshot
        if object_type == "meter" and object_id not in snap.meters:
            raise LookupError(f"no meter {object_id!r}")
        if object_type == "room" and object_id not in snap.rooms:
            raise LookupError(f"no room {object_id!r}")
        if object_type == "link" and not snap.meters_on_link(object_id):
            raise LookupError(f"no link {object_id!r} with active meters")
        if object_type not in ("meter", "room", "link"):
            raise ValueError(f"object_type: expected meter, room or link, found {object_type!r}")

    def _keys_of(self, object_type: str, object_id: str) -> list[AlarmKey]:
        """Every point of the object with an open occurrence or a known condition."""
        keys = [AlarmKey.parse(k) for k, a in self._open.items() if a.object_type == object_type and a.object_id == object_id]
        keys += [AlarmKey(c.name, object_type, object_id) for c in self.classes.values() if c.object_type == object_type]
        return keys

    async def sync(self) -> int:
        """Take in changes others made to open occurrences (e.g. ``scada alarms ack``).
        Returns how many occurrences were reloaded."""
        async with self._lock:
            ids = list(self._ids)
            if not ids:
                return 0
            async with self.db.reads() as session:
                current = await store.versions(session, ids)
            changed = [i for i in ids if current.get(i) != self._open[self._ids[i]].version]
            if not changed:
                return 0
            async with self.db.reads() as session:
                alarms = await store.get_alarms(session, changed)
                last = await _last_transitions(session, changed)
            events = []
            for alarm in alarms:
                self._remember(alarm)
                self._dirty.add(AlarmKey.parse(alarm.key))
                if alarm.id in last:
                    events.append(AlarmEvent(alarm, last[alarm.id]))
            log.info("alarm changes picked up", extra={"alarms": len(alarms)})
            self._emit(events)
            await self._reconcile()
            return len(alarms)

    def stats(self) -> dict[str, object]:
        return {
            "open": len(self._open),
            "standing": sum(1 for a in self._open.values() if a.standing),
            "out_of_service": len(self._oos),
            "conditions": len(self._conditions),
            "transitions_written": self.transitions_written,
            "store_ok": self._store_ok,
        }


def _with_id(t: Transition, alarm_id: int) -> Transition:
    return Transition(alarm_id, t.ts, t.event, t.from_state, t.to_state, t.actor, t.reason, t.value)


def _next_event(alarm: Alarm, active: bool | None, oos: bool, suppressed: bool, now: datetime) -> Event | None:
    """The next lifecycle event that brings ``alarm`` toward its target, or None."""
    s = alarm.state
    change = None
    if active is not None and active != alarm.condition_active:
        change = Event.ACTIVATE if active else Event.CLEAR
    if s is AlarmState.NORMAL:
        return Event.ACTIVATE if change is Event.ACTIVATE else None
    if s in _HIDDEN and change is not None:
        return change  # recorded, state unchanged: the alarm returns knowing the condition
    if oos:
        return Event.REMOVE_FROM_SERVICE if s is not AlarmState.OUT_OF_SERVICE else None
    if s is AlarmState.OUT_OF_SERVICE:
        return Event.RETURN_TO_SERVICE
    if s is AlarmState.SHELVED:
        expired = alarm.shelved_until is not None and alarm.shelved_until <= now
        cleared = alarm.shelve_one_shot and not alarm.condition_active  # one-shot shelving ends here
        return Event.UNSHELVE if expired or cleared else None
    if suppressed:
        return Event.SUPPRESS if s.standing else None
    if s is AlarmState.SUPPRESSED:
        return Event.UNSUPPRESS
    return change


async def _last_transitions(session: AsyncSession, ids: Sequence[int]) -> dict[int, Transition]:
    out: dict[int, Transition] = {}
    last = (
        select(func.max(AlarmTransitionRow.id))
        .where(AlarmTransitionRow.alarm_id.in_(list(ids)))
        .group_by(AlarmTransitionRow.alarm_id)
    )
    rows = await session.scalars(select(AlarmTransitionRow).where(AlarmTransitionRow.id.in_(last)))
    for r in rows:
        out[r.alarm_id] = Transition(
            r.alarm_id, r.ts, r.event, AlarmState(r.from_state), AlarmState(r.to_state), r.actor, r.reason, r.value
        )
    return out
