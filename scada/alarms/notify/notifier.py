"""The notifier: alarm events → routed, rendered, logged messages → delivered with retries.

1. **Intake** (:meth:`Notifier.submit`, called by the engine after each committed batch):
   raised / cleared / acknowledged transitions are queued; nothing here blocks the engine.
2. **Planning**: each event is matched against the routes (class, priority, event); each
   route names fixed recipients and/or the room's account contact (from the
   :class:`ContactDirectory`). Per recipient a row goes into the delivery log in one
   transaction: *skipped* when it duplicates a message of the last ``dedup_window_s``, when
   the recipient had ``rate_limit.messages`` in ``rate_limit.window_s``, or when the contact
   has no address for the channel; *held* until the quiet hours end for routes that respect
   them; otherwise *pending*.
3. **Delivery**: a scheduler hands due rows to ``workers`` tasks. A failed attempt is
   recorded with its error and retried with exponential backoff (``retry_initial_s`` doubling
   up to ``retry_max_s``) until ``max_attempts``; a permanent error fails at once. A "raised"
   message whose alarm has ended meanwhile is *cancelled* rather than sent late.

Pending and held messages live in the database, so a restart resumes them.

Messages that are not about an alarm (to tenants: reminders, payment confirmations) enter
through :meth:`Notifier.queue_message` and share the log, the channels, the retries and the
quiet hours; there a per-recipient rate limit *holds* a message until the window has room,
and a gateway's HTTP 429 defers it without using up an attempt: such messages are late,
never lost. A message's ``key`` makes it idempotent (a second one with the key is not queued).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.alarms.alarm import Alarm, AlarmEvent, AlarmState, Priority, alarm_document
from scada.alarms.clock import Clock
from scada.alarms.notify.config import NotificationsConfig, RouteConfig
from scada.alarms.notify.contacts import Contact, ContactDirectory
from scada.alarms.notify.delivery import Channel, DeliveryError, OutgoingMessage
from scada.alarms.notify.models import DeliveryAttemptRow, DeliveryRow, DeliveryStatus
from scada.alarms.notify.templates import MessageTemplates, TemplateProblem
from scada.core.inputs import InputError, e164, quote
from scada.db import Database

__all__ = ["Attempt", "Delivery", "Notifier", "QueuedMessage", "notification_event"]

log = logging.getLogger(__name__)

St = DeliveryStatus


def notification_event(event: AlarmEvent) -> str | None:
    """raised, cleared or acknowledged: the transitions people are told about."""
    t = event.transition
    if t.to_state is AlarmState.ACTIVE_UNACK and t.from_state is not AlarmState.ACTIVE_UNACK:
        return "raised"
    if t.event == "clear" and t.from_state in (AlarmState.ACTIVE_UNACK, AlarmState.ACTIVE_ACK):
        return "cleared"
    if t.event == "acknowledge":
        return "acknowledged"
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A row of the delivery log."""

    id: int
    created_at: datetime
    alarm_id: int | None
    alarm_key: str
    event: str
    route: str
    channel: str
    recipient: str
    language: str
    subject: str
    body: str
    status: str
    reason: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt."""
    delivery_id: int
    ts: datetime
    outcome: str
    error: str


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """Where :meth:`Notifier.queue_message` put a message (or found it, by its key)."""
    id: int
    status: str
    reason: str
    recipient: str
    channel: str
    existing: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    route: RouteConfig
    channel: Channel
    recipient: str
    language: str
    contact: Contact | None = None
    skip: str = ""


Facts = Callable[[Alarm], dict[str, Any]]
Relevance = Callable[[int], str | None]


class Notifier:
    """Routes alarm events to channels, persists every delivery, retries with backoff, keeps quiet hours."""
    def __init__(
        self,
        db: Database,
        config: NotificationsConfig,
        *,
        channels: dict[str, Channel],
        templates: MessageTemplates,
        clock: Clock,
        tz: tzinfo,
        facts: Facts,
        contacts: Callable[[], ContactDirectory | None] = lambda: None,
        relevance: Relevance = lambda _alarm_id: None,
    ) -> None:
        self.db = db
        self.config = config
        self.channels = channels
        self.templates = templates
        self.clock = clock
        self.tz = tz
        self.facts = facts
        self.contacts = contacts
        self.relevance = relevance
        self._intake: deque[tuple[str, AlarmEvent]] = deque()
        self._planning = False
        self._intake_wake: asyncio.Future[None] | None = None
        self._heap: list[tuple[datetime, int, int]] = []
        self._due: dict[int, datetime] = {}  # delivery id -> when (heap entries not matching are stale)
        self._seq = itertools.count()
        self._sched_wake: asyncio.Future[None] | None = None
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._inflight: set[int] = set()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._intake_ok = True
        self.sent = 0
        self.failed = 0

    # -- intake ------------------------------------------------------------------------------
    def submit(self, events: Sequence[AlarmEvent]) -> None:
        """The engine's listener: queue what people may need to hear about. Never blocks."""
        if not self.config.routes:
            return
        added = False
        for event in events:
            name = notification_event(event)
            if name is not None:
                self._intake.append((name, event))
                added = True
        if added:
            _wake(self._intake_wake)

    async def load(self) -> int:
        """Schedule the pending and held messages left by a previous run."""
        async with self.db.reads() as session:  # only reads: no write lock at start-up
            rows = (await session.execute(
                select(DeliveryRow.id, DeliveryRow.next_attempt_at).where(DeliveryRow.status.in_(St.OPEN))
            )).all()
        for delivery_id, when in rows:
            self._schedule(delivery_id, when or self.clock.now())
        return len(rows)

    async def run_intake(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._intake:
                self._intake_wake = loop.create_future()
                try:
                    await self._intake_wake
                finally:
                    self._intake_wake = None
                continue
            name, event = self._intake[0]
            self._planning = True
            try:
                await self._plan(name, event)
            except Exception as exc:  # the database may be down: keep the event, try again
                if self._intake_ok:
                    self._intake_ok = False
                    log.error("cannot log notifications; retrying", extra={"error": repr(exc), "alarm": event.alarm.key})
                self._planning = False
                timer = self.clock.timer(self.clock.now() + timedelta(seconds=5))
                try:
                    await timer
                finally:
                    timer.cancel()
                continue
            finally:
                self._planning = False
            if not self._intake_ok:
                self._intake_ok = True
                log.info("notification log writable again")
            self._intake.popleft()
            self._progress()

    # -- planning ----------------------------------------------------------------------------
    async def _targets(self, name: str, alarm: Alarm) -> list[_Target]:
        out: list[_Target] = []
        for route in self.config.routes:
            if name not in route.events:
                continue
            if route.classes and alarm.alarm_class not in route.classes:
                continue
            if alarm.priority < Priority.parse(route.min_priority):
                continue
            channel = self.channels[route.channel]
            if channel.kind == "webhook":
                out.append(_Target(route, channel, getattr(channel, "url", route.channel).split("?", 1)[0][:255], route.language))
            out.extend(_Target(route, channel, address, route.language) for address in route.to)
            if route.to_room_contact and alarm.room_id:
                out.append(await self._contact_target(route, channel, alarm.room_id))
        return out

    async def _contact_target(self, route: RouteConfig, channel: Channel, room_id: str) -> _Target:
        placeholder = f"room:{room_id}"
        directory = self.contacts()
        if directory is None:
            return _Target(route, channel, placeholder, route.language, skip="no contact directory (set alarms.notifications.contacts_file)")
        try:
            contact = await directory.room_contact(room_id)
        except Exception as exc:
            return _Target(route, channel, placeholder, route.language, skip=f"contact lookup failed: {exc!r}")
        if contact is None:
            return _Target(route, channel, placeholder, route.language, skip=f"room {room_id} has no account contact")
        address = contact.email if channel.kind == "email" else contact.phone
        if not address:
            what = "e-mail address" if channel.kind == "email" else "phone number"
            return _Target(route, channel, placeholder, contact.language, contact, skip=f"contact {contact.name} has no {what}")
        if channel.kind == "sms":
            try:
                address = e164(address)  # a number stored before numbers were checked
            except InputError:
                return _Target(route, channel, placeholder, contact.language, contact,
                               skip=f"contact {contact.name}: {quote(address)} is not a phone number in E.164 form")
        return _Target(route, channel, address, contact.language, contact)

    async def _plan(self, name: str, event: AlarmEvent) -> None:
        alarm = event.alarm
        targets = await self._targets(name, alarm)
        if not targets:
            return
        now = self.clock.now()
        facts = self.facts(alarm)
        payload = json.dumps(alarm_document(alarm), ensure_ascii=False)
        rows: list[DeliveryRow] = []
        async with self.db.transaction() as session:
            for target in targets:
                row = DeliveryRow(
                    created_at=now, alarm_id=alarm.id, alarm_key=alarm.key, event=name, route=target.route.name,
                    channel=target.channel.name, recipient=target.recipient, language=target.language, subject="",
                    body="", payload=payload, dedup_key=f"{alarm.key}|{name}|{target.route.name}|{target.recipient}"[:400],
                    status=St.PENDING, reason="", attempts=0, next_attempt_at=now, sent_at=None,
                )
                row.status, row.reason = await self._admit(session, target, row, now)
                if row.status in St.OPEN:
                    try:
                        rendered = self.templates.render(
                            target.route.template, target.language,
                            {**facts, "alarm": alarm, "event": name, "contact": target.contact},
                        )
                        row.subject, row.body = rendered.subject, rendered.body
                    except TemplateProblem as exc:
                        row.status, row.reason = St.FAILED, str(exc)
                if row.status == St.HELD:
                    row.next_attempt_at = self._release_at(now)
                elif row.status not in St.OPEN:
                    row.next_attempt_at = None
                session.add(row)
                rows.append(row)
            await session.flush()
        for row in rows:
            if row.status in St.OPEN:
                self._schedule(row.id, row.next_attempt_at or now)
            elif row.status != St.PENDING:
                log.info("notification not sent", extra={"delivery": row.id, "status": row.status, "reason": row.reason,
                                                          "alarm": alarm.key, "recipient": row.recipient})

    async def _admit(self, session: AsyncSession, target: _Target, row: DeliveryRow, now: datetime) -> tuple[str, str]:
        """(status, reason) of a new message: skipped, held or pending."""
        if target.skip:
            return St.SKIPPED, target.skip
        counted = (St.PENDING, St.HELD, St.SENT)
        if self.config.dedup_window_s > 0:
            since = now - timedelta(seconds=self.config.dedup_window_s)
            dup = await session.scalar(
                select(DeliveryRow.id).where(
                    DeliveryRow.dedup_key == row.dedup_key, DeliveryRow.created_at >= since, DeliveryRow.status.in_(counted)
                ).limit(1)
            )
            if dup is not None:
                return St.SKIPPED, f"duplicate of delivery {dup} (within {self.config.dedup_window_s:g} s)"
        limit = self.config.rate_limit
        since = now - timedelta(seconds=limit.window_s)
        recent = await session.scalar(
            select(func.count()).select_from(DeliveryRow).where(
                DeliveryRow.recipient == row.recipient, DeliveryRow.created_at >= since, DeliveryRow.status.in_(counted)
            )
        )
        if (recent or 0) >= limit.messages:
            return St.SKIPPED, f"rate limit: {limit.messages} messages per {limit.window_s:g} s to this recipient"
        if target.route.quiet_hours and self._release_at(now) is not None:
            qh = self.config.quiet_hours
            assert qh is not None
            return St.HELD, f"quiet hours {qh.start}-{qh.end}"
        return St.PENDING, ""

    # -- messages that are not about an alarm ------------------------------------------------
    async def queue_message(
        self,
        *,
        key: str,
        route: str,
        event: str,
        channel: str,
        recipient: str,
        language: str,
        subject: str,
        body: str,
        subject_id: str = "",
        quiet_hours: bool = True,
    ) -> QueuedMessage:
        """Log one message for delivery: pending, or held for the quiet hours or the rate limit.

        ``key`` is the message's identity: one already logged with it is returned instead."""
        if channel not in self.channels:
            raise ValueError(f"channel {channel!r} is not configured")
        now = self.clock.now()
        async with self.db.transaction() as session:
            existing = await session.scalar(select(DeliveryRow).where(DeliveryRow.dedup_key == key[:400]).order_by(DeliveryRow.id).limit(1))
            if existing is not None:
                return QueuedMessage(existing.id, existing.status, existing.reason, existing.recipient, existing.channel, True)
            status, reason, when = St.PENDING, "", now
            limit = self.config.rate_limit
            since = now - timedelta(seconds=limit.window_s)
            recent = (await session.scalars(
                select(DeliveryRow.created_at).where(
                    DeliveryRow.recipient == recipient, DeliveryRow.created_at >= since,
                    DeliveryRow.status.in_((St.PENDING, St.HELD, St.SENT)),
                ).order_by(DeliveryRow.created_at)
            )).all()
            if len(recent) >= limit.messages:
                when = recent[len(recent) - limit.messages] + timedelta(seconds=limit.window_s)
                status = St.HELD
                reason = f"rate limit: {limit.messages} messages per {limit.window_s:g} s to this recipient; queued until {when.isoformat()}"
            release = self._release_at(max(when, now)) if quiet_hours else None
            if release is not None:
                qh = self.config.quiet_hours
                assert qh is not None
                status, when = St.HELD, release
                reason = f"quiet hours {qh.start}-{qh.end}" + (f"; {reason}" if reason else "")
            row = DeliveryRow(
                created_at=now, alarm_id=None, alarm_key=subject_id[:200], event=event[:16], route=route[:64], channel=channel,
                recipient=recipient[:255], language=language, subject=subject, body=body, payload="{}", dedup_key=key[:400],
                status=status, reason=reason, attempts=0, next_attempt_at=when, sent_at=None,
            )
            session.add(row)
            await session.flush()
            queued = QueuedMessage(row.id, row.status, row.reason, row.recipient, row.channel)
        self._schedule(queued.id, when)
        return queued

    def _release_at(self, now: datetime) -> datetime | None:
        qh = self.config.quiet_hours
        if qh is None:
            return None
        local = qh.release_at(now.astimezone(self.tz))
        return local.astimezone(now.tzinfo) if local is not None else None

    # -- scheduling and delivery -------------------------------------------------------------
    def _schedule(self, delivery_id: int, when: datetime) -> None:
        self._due[delivery_id] = when
        heapq.heappush(self._heap, (when, next(self._seq), delivery_id))
        _wake(self._sched_wake)

    def _next_due(self) -> datetime | None:
        while self._heap:
            when, _, delivery_id = self._heap[0]
            if self._due.get(delivery_id) == when:
                return when
            heapq.heappop(self._heap)
        return None

    async def run_scheduler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self.clock.now()
            while (when := self._next_due()) is not None and when <= now:
                _, _, delivery_id = heapq.heappop(self._heap)
                del self._due[delivery_id]
                self._inflight.add(delivery_id)
                self._queue.put_nowait(delivery_id)
            self._progress()
            when = self._next_due()
            wake = self._sched_wake = loop.create_future()
            waits: set[asyncio.Future[None]] = {wake}
            timer = self.clock.timer(when) if when is not None else None
            if timer is not None:
                waits.add(timer)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if timer is not None:
                    timer.cancel()
                wake.cancel()
                self._sched_wake = None

    async def run_worker(self) -> None:
        while True:
            delivery_id = await self._queue.get()
            try:
                await self._deliver(delivery_id)
            except Exception:
                log.exception("notification delivery failed unexpectedly", extra={"delivery": delivery_id})
            finally:
                self._inflight.discard(delivery_id)
                self._progress()

    async def _deliver(self, delivery_id: int) -> None:
        async with self.db.reads() as session:
            row = await session.get(DeliveryRow, delivery_id)
        if row is None or row.status not in St.OPEN:
            return
        now = self.clock.now()
        if row.event == "raised" and row.alarm_id is not None:
            why = self.relevance(row.alarm_id)
            if why:
                await self._finish(row, St.CANCELLED, why, outcome=None)
                return
        channel = self.channels.get(row.channel)
        if channel is None:
            await self._finish(row, St.FAILED, f"channel {row.channel!r} is no longer configured", outcome=None)
            return
        message = OutgoingMessage(
            row.id, row.event, row.recipient, row.language, row.subject, row.body, json.loads(row.payload or "{}")
        )
        try:
            await channel.send(message)
        except DeliveryError as exc:
            error, permanent = str(exc), exc.permanent
            if exc.retry_after is not None:  # rate limited by the far end: later, not lost
                retry_at = now + timedelta(seconds=exc.retry_after)
                await self._finish(row, St.PENDING, f"rate limited: {error}; retry at {retry_at.isoformat()}",
                                   outcome="deferred", error=error, next_attempt_at=retry_at, count=False)
                self._schedule(row.id, retry_at)
                return
        except Exception as exc:  # an unexpected failure is retried like a transient one
            error, permanent = repr(exc), False
        else:
            self.sent += 1
            # a message held (quiet hours, rate limit) or retried keeps why it went out late
            late = f"sent late; it was: {row.reason}" if row.reason else ""
            await self._finish(row, St.SENT, late, outcome="sent", sent_at=self.clock.now())
            return
        attempts = row.attempts + 1
        if permanent or attempts >= self.config.max_attempts:
            self.failed += 1
            why = error if permanent else f"gave up after {attempts} attempts: {error}"
            log.warning("notification failed", extra={"delivery": row.id, "channel": row.channel, "error": error})
            await self._finish(row, St.FAILED, why, outcome="failed", error=error)
            return
        delay = min(self.config.retry_initial_s * 2 ** (attempts - 1), self.config.retry_max_s)
        retry_at = now + timedelta(seconds=delay)
        await self._finish(row, St.PENDING, f"attempt {attempts} failed: {error}; retry at {retry_at.isoformat()}",
                           outcome="retry", error=error, next_attempt_at=retry_at)
        self._schedule(row.id, retry_at)

    async def _finish(
        self,
        row: DeliveryRow,
        status: str,
        reason: str,
        *,
        outcome: str | None,
        error: str = "",
        sent_at: datetime | None = None,
        next_attempt_at: datetime | None = None,
        count: bool = True,
    ) -> None:
        async with self.db.transaction() as session:
            stored = await session.get(DeliveryRow, row.id, with_for_update=False)
            assert stored is not None
            stored.status = status
            stored.reason = reason
            stored.next_attempt_at = next_attempt_at
            if outcome is not None:
                if count:
                    stored.attempts = row.attempts + 1
                session.add(DeliveryAttemptRow(delivery_id=row.id, ts=self.clock.now(), outcome=outcome, error=error))
            if sent_at is not None:
                stored.sent_at = sent_at

    # -- waiting and queries -----------------------------------------------------------------
    def _idle(self) -> bool:
        due = self._next_due()
        return (
            not self._intake and not self._planning and not self._inflight and self._queue.empty()
            and (due is None or due > self.clock.now())
        )

    def _progress(self) -> None:
        if self._idle():
            for waiter in self._idle_waiters:
                _wake(waiter)
            self._idle_waiters.clear()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is due now: every message planned, and sent, failed or waiting
        for a later retry or the end of the quiet hours."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not self._idle():
                waiter = loop.create_future()
                self._idle_waiters.append(waiter)
                _wake(self._sched_wake)  # a manual clock may have moved: re-check what is due
                await waiter

    async def deliveries(
        self, *, alarm_id: int | None = None, status: str | None = None, recipient: str | None = None, limit: int = 200,
        events: Sequence[str] | None = None, route_prefix: str | None = None,
    ) -> list[Delivery]:
        stmt = select(DeliveryRow).order_by(DeliveryRow.id.desc()).limit(limit)
        if events is not None:
            stmt = stmt.where(DeliveryRow.event.in_(list(events)))
        if route_prefix is not None:
            stmt = stmt.where(DeliveryRow.route.startswith(route_prefix, autoescape=True))
        if alarm_id is not None:
            stmt = stmt.where(DeliveryRow.alarm_id == alarm_id)
        if status is not None:
            stmt = stmt.where(DeliveryRow.status == status)
        if recipient is not None:
            stmt = stmt.where(DeliveryRow.recipient == recipient)
        async with self.db.reads() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            Delivery(r.id, r.created_at, r.alarm_id, r.alarm_key, r.event, r.route, r.channel, r.recipient, r.language,
                     r.subject, r.body, r.status, r.reason, r.attempts, r.next_attempt_at, r.sent_at)
            for r in rows
        ]

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        async with self.db.reads() as session:
            rows = await session.scalars(
                select(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id == delivery_id).order_by(DeliveryAttemptRow.id)
            )
            return [Attempt(r.delivery_id, r.ts, r.outcome, r.error) for r in rows]

    async def close(self) -> None:
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:
                log.exception("closing a notification channel failed", extra={"channel": channel.name})


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
