"""The WebSocket feed (``GET /ws``): live room summaries and room details pushed to clients.

Protocol (JSON text frames):

- client → server ``{"type": "subscribe", "view": "overview", "filter": {"building": …,
  "floor": …, "state": …, "q": …}, "page": 1, "page_size": 120}``, ``{"type": "subscribe",
  "view": "room", "room": "<room id>"}`` (the room, its meters' values and its standing
  alarms) or ``{"type": "subscribe", "view": "alarms"}`` (the standing alarms in console
  order, when the alarm engine runs). A new subscription replaces the previous one.
- server → client ``{"type": "snapshot", …}`` with the whole view (after every subscribe, and
  whenever the page's membership changes or the asset registry was reloaded), then
  ``{"type": "update", "seq": n, "rooms": […], "counts": {…}, "tags": {…}}`` with only what
  changed since the last message. A client that reconnects subscribes again and so resyncs
  from a snapshot. ``{"type": "error", "message": …, "field": …}`` answers a bad request.

Flow control: the tag stream only marks a client's dirty set (bounded by the rooms of its
view: the newest state wins); each client has its own sender task that pushes at most once per
``hmi.push_interval_ms``, so a slow or stalled client delays nobody else. Clients that show
the same rooms and keep up share the encoded changes of each push (built once per batch of
changes); a client that falls behind keeps coalescing per room. What one client holds is
bounded: at most one push in flight (a push is encoded only when the kernel has taken the whole
previous one) and the dirty set of its view, where
the newest state replaces what was not sent yet. A client whose socket takes in nothing for
``hmi.ws_stall_timeout_s`` (:data:`STALL_TIMEOUT_S` by default) is logged with its user and
closed with code :data:`CLOSE_TOO_SLOW` (1013, "try again later"; it resyncs from a snapshot
when it reconnects): the close frame is offered for :data:`CLOSE_TIMEOUT_S`, then the
connection is aborted, which frees its buffers.

Authentication: the page's session cookie (the ``Origin`` must then be this server) or
``Authorization: Bearer <token>``; the caller is re-checked every minute, so a revoked session
or a disabled user loses the feed.

Limits: at most ``hmi.ws_max_per_user`` connections per user and ``hmi.ws_max_total`` in all;
one more is accepted and closed at once with code :data:`CLOSE_TOO_MANY` (4429) and a reason
naming the limit. Messages are at most 64 KiB, JSON nested at most a few levels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scada.alarms.alarm import AlarmEvent, AlarmState, alarm_document
from scada.alarms.engine import AlarmEngine
from scada.alarms.store import AlarmFilter
from scada.core.inputs import JsonInputError, parse_json
from scada.users.auth import Permission, UserInfo
from scada.users.component import USERS

from .api.router import json_response, to_json, validation_error
from .keys import CONTEXT, SESSION, SESSIONS
from .live import CATEGORIES, FilterError, LiveRooms, LiveUpdate, RoomFilter, tag_json
from .security import SESSION_COOKIE

__all__ = ["CLOSE_TOO_MANY", "CLOSE_TOO_SLOW", "Feed", "FEED", "STALL_TIMEOUT_S"]

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 10.0  # default of hmi.ws_stall_timeout_s
CLOSE_TOO_SLOW = 1013  # "try again later": the socket took nothing for the stall timeout
CLOSE_TOO_MANY = 4429  # like HTTP 429: too many live connections (per user or in all)
CLOSE_TIMEOUT_S = 2.0  # at shutdown: for the peers' close frames, then for their handlers to end
MAX_CLOSE_ROUNDS = 5  # of CLOSE_TIMEOUT_S each, cancelling again, before a connection's tasks are given up
RECHECK_AUTH_S = 60.0
MAX_PAGE_SIZE = 1000
MAX_ALARMS = 500  # the console shows the most urgent ones; the REST API pages the rest
SHELVED = frozenset({AlarmState.SHELVED})


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    building: str | None = Field(default=None, max_length=64)
    floor: str | None = Field(default=None, max_length=64)
    state: Literal[CATEGORIES] | None = None  # type: ignore[valid-type]
    q: str | None = Field(default=None, max_length=64)


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["subscribe"]
    view: Literal["overview", "room", "alarms", "jobs"]
    filter: FilterIn = FilterIn()
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=120, ge=1, le=MAX_PAGE_SIZE)
    room: str | None = Field(default=None, max_length=64)


class _Client:
    """One connection's view and what changed in it since the last push."""

    def __init__(self, ws: web.WebSocketResponse, user: UserInfo) -> None:
        self.ws = ws
        self.user = user
        self.view: Literal["overview", "room", "alarms", "jobs"] | None = None
        self.filter = RoomFilter()
        self.page = 1
        self.page_size = 120
        self.room: str | None = None
        self.ids: list[str] = []
        self.id_set: frozenset[str] = frozenset()
        self.dirty_rooms: set[str] = set()
        self.dirty_tags: set[str] = set()
        self.counts_dirty = False
        self.membership_dirty = False
        self.alarms_dirty = False
        self.jobs_dirty: set[int] = set()
        self.job_items: list[dict[str, Any]] = []
        self.resync = False
        self.wake = asyncio.Event()
        self.seq = 0
        self.pushes = 0
        self.handler: asyncio.Task[Any] | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.stalled = False

    def mark(self, update: LiveUpdate, live: LiveRooms) -> None:
        if self.view is None:
            return
        if update.rebuilt:
            self.resync = True
            self.wake.set()
            return
        if self.view == "room":
            if self.room in update.rooms:
                self.dirty_rooms.add(self.room)  # type: ignore[arg-type]
            names = update.tags.get(self.room or "")
            if names:
                self.dirty_tags.update(names)
        else:
            rooms = update.rooms
            hit = rooms & self.id_set if len(rooms) < len(self.id_set) else self.id_set & rooms
            if hit:
                self.dirty_rooms |= hit
            if update.category_changed and self._in_scope(update.category_changed, live):
                self.counts_dirty = True
                if self.filter.state is not None:
                    self.membership_dirty = True
        if self.dirty_rooms or self.dirty_tags or self.counts_dirty or self.membership_dirty:
            self.wake.set()

    def _in_scope(self, rooms: frozenset[str], live: LiveRooms) -> bool:
        building, floor = self.filter.scope()
        if building is None and floor is None:
            return True
        for room_id in rooms:
            s = live.summary(room_id)
            if s is None:
                continue
            if (floor is None or s["floor"] == floor) and (building is None or s["building"] == building):
                return True
        return False

    def mark_alarms(self, events: list[AlarmEvent]) -> None:
        if self.view == "alarms" or (self.view == "room" and any(e.alarm.room_id == self.room for e in events)):
            self.alarms_dirty = True
            self.wake.set()


MAX_JOB_ITEMS = 500  # item events kept per client between two pushes (the newest)


class Feed:
    def __init__(
        self,
        live: LiveRooms,
        *,
        interval_s: float = 0.1,
        alarms: AlarmEngine | None = None,
        jobs: Any = None,
        max_per_user: int = 20,
        max_total: int = 1000,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.live = live
        self.alarms = alarms
        self.jobs = jobs  # scada.operations.service.JobService, when it runs
        self._job_states: dict[int, dict[str, Any]] = {}
        self._remove_jobs_listener: Callable[[], None] | None = None
        self.interval_s = interval_s
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.stall_timeout_s = stall_timeout_s
        self.dropped = 0  # clients closed for a stalled socket
        self.clients: set[_Client] = set()
        # connections counted from before the upgrade to the end of their handler
        self._open: Counter[str] = Counter()
        self.pushes = 0
        self.recheck_s = RECHECK_AUTH_S
        self._remove_listener: Callable[[], None] | None = None
        self._remove_alarm_listener: Callable[[], None] | None = None
        # the JSON of a set of changed rooms, and of the counts of a scope, since the last change
        self._parts: dict[frozenset[str], str] = {}
        self._counts: dict[tuple[str | None, str | None], str] = {}

    def start(self) -> None:
        self._remove_listener = self.live.add_listener(self._on_update)
        if self.alarms is not None:
            self._remove_alarm_listener = self.alarms.add_listener(self._on_alarms)
        if self.jobs is not None:
            self._remove_jobs_listener = self.jobs.subscribe(self._on_job)

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._remove_alarm_listener is not None:
            self._remove_alarm_listener()
            self._remove_alarm_listener = None
        if self._remove_jobs_listener is not None:
            self._remove_jobs_listener()
            self._remove_jobs_listener = None
        clients = list(self.clients)
        if clients:
            await asyncio.gather(
                *(_close_within(c.ws, 1001, b"server shutting down") for c in clients),
                return_exceptions=True,
            )
        # The feed owns its connections: a handler still waiting on its peer is ended here,
        # not left to aiohttp's shutdown timeout (which cancels it without waiting for it).
        handlers = [c.handler for c in clients if c.handler is not None and c.handler is not asyncio.current_task()]
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    def _on_update(self, update: LiveUpdate) -> None:
        live = self.live
        # the shared parts describe the rooms as they were: a new batch of changes voids them
        self._parts.clear()
        self._counts.clear()
        for client in self.clients:
            client.mark(update, live)

    def _on_alarms(self, events: Any) -> None:
        events = list(events)
        for client in self.clients:
            client.mark_alarms(events)

    def _on_job(self, event: Any) -> None:
        state = {"id": event.job_id, "state": event.state, "total": event.total, "done": event.done,
                 "failed": event.failed, "cancelled": event.cancelled}
        self._job_states[event.job_id] = state
        if len(self._job_states) > 200:  # the newest jobs are the ones on screen
            for old in sorted(self._job_states)[:-200]:
                del self._job_states[old]
        for client in self.clients:
            if client.view == "jobs":
                client.jobs_dirty.add(event.job_id)
                if event.item is not None:
                    client.job_items.append({"job": event.job_id, **event.item})
                    del client.job_items[:-MAX_JOB_ITEMS]
                client.wake.set()

    def _alarms(self, room: str | None = None) -> list[dict[str, Any]]:
        if self.alarms is None:
            return []
        return [alarm_document(a) for a in self.alarms.active(AlarmFilter(room_id=room, limit=MAX_ALARMS))]

    def _shelved(self) -> list[dict[str, Any]]:
        if self.alarms is None:
            return []
        return [alarm_document(a) for a in self.alarms.active(AlarmFilter(states=SHELVED, limit=MAX_ALARMS))]

    # -- connection ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = await _authenticate(request)
        if isinstance(auth, web.Response):
            return auth
        user, recheck = auth
        # writer_limit=0: every frame waits while the transport is paused (below)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False, writer_limit=0)
        refusal = self._refusal(user.name)
        if refusal is not None:
            await ws.prepare(request)
            log.warning("WebSocket refused", extra={"user": user.name, "reason": refusal})
            await ws.close(code=CLOSE_TOO_MANY, message=refusal.encode()[:120])
            return ws
        self._open[user.name] += 1
        try:
            await ws.prepare(request)
            client = _Client(ws, user)
            client.handler = asyncio.current_task()
            client.transport = request.transport
            if isinstance(request.transport, asyncio.WriteTransport):
                # the transport pauses as soon as the kernel leaves anything unsent, and a send
                # waits until it took it all: one push in flight, the next encoded from the newest
                # state (asyncio's default would let 64 KiB and aiohttp's 256 KiB of pushes queue)
                request.transport.set_write_buffer_limits(high=0)
            self.clients.add(client)
            loop = asyncio.get_running_loop()
            sender = loop.create_task(self._sender(client), name=f"hmi:ws-sender:{user.name}")
            receiver = loop.create_task(self._receiver(client, recheck), name=f"hmi:ws-receiver:{user.name}")
            try:
                # the connection ends with the peer (receiver) or with a stalled socket (sender):
                # an aborted socket does not always wake a pending receive
                await asyncio.wait((receiver, sender), return_when=asyncio.FIRST_COMPLETED)
            finally:
                receiver.cancel()
                sender.cancel()
                cancelled = await _until_done(client, receiver, sender)
                self.clients.discard(client)  # only now: Feed.close waits for the handlers it knows
                if client.stalled:
                    _abort(client)  # the sender may have been cancelled while it closed
                await ws.close()
                if cancelled:
                    raise asyncio.CancelledError
            if not sender.cancelled() and sender.exception() is not None:
                log.error("WebSocket sender failed", extra={"user": user.name}, exc_info=sender.exception())
            if not receiver.cancelled() and receiver.exception() is not None:
                raise receiver.exception()  # type: ignore[misc]
        finally:
            self._open[user.name] -= 1
            if self._open[user.name] <= 0:
                del self._open[user.name]
        return ws

    def _refusal(self, user: str) -> str | None:
        """Why one more connection of ``user`` is refused, or None."""
        if self._open[user] >= self.max_per_user:
            return f"too many live connections for {user[:40]} (limit {self.max_per_user} per user)"
        if self._open.total() >= self.max_total:
            return f"too many live connections (limit {self.max_total})"
        return None

    async def _receiver(self, client: _Client, recheck: Callable[[], Any]) -> None:
        ws = client.ws
        checked = time.monotonic()
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=self.recheck_s)
            except TimeoutError:
                msg = None
            if time.monotonic() - checked >= self.recheck_s:
                checked = time.monotonic()
                user = await recheck()
                if user is None or not user.can(Permission.VIEW):
                    await ws.close(code=4401, message=b"session ended")
                    return
                client.user = user
            if msg is None:
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type is not WSMsgType.TEXT:
                await self._error(client, "expected JSON text frames")
                continue
            try:
                await self._on_message(client, msg.data)
            except TimeoutError:  # an error answer the socket did not take
                await self._drop(client)
                return

    async def _error(self, client: _Client, message: str, field: str | None = None) -> None:
        body: dict[str, Any] = {"type": "error", "message": message}
        if field:
            body["field"] = field
        async with asyncio.timeout(self.stall_timeout_s):
            await _send(client.ws, json.dumps(body, ensure_ascii=False))

    async def _drop(self, client: _Client) -> None:
        """Close a client whose socket took nothing for the stall timeout, and free its buffers."""
        if client.stalled or client.ws.closed:
            return
        client.stalled = True
        self.dropped += 1
        log.warning(
            "WebSocket client took nothing for %.0f s; closing it", self.stall_timeout_s,
            extra={"user": client.user.name, "code": CLOSE_TOO_SLOW, "pushes": client.pushes},
        )
        # the close frame queues behind what the peer has not read: offer it briefly, then abort
        # (a plain close would wait for the unread bytes to flush, holding them for ever)
        with contextlib.suppress(TimeoutError, ConnectionError):
            await _close_within(client.ws, CLOSE_TOO_SLOW, b"too slow: reconnect to resync")
        _abort(client)

    async def _on_message(self, client: _Client, text: str) -> None:
        try:
            data = parse_json(text, max_depth=8)
        except JsonInputError as exc:
            await self._error(client, f"message is not valid JSON: {exc.message}" if exc.path is None else str(exc), exc.path)
            return
        if not isinstance(data, dict):
            await self._error(client, "message must be a JSON object")
            return
        try:
            sub = SubscribeIn.model_validate(data)
        except ValidationError as exc:
            err = validation_error(exc)
            await self._error(client, err.message, err.field)
            return
        f = RoomFilter(sub.filter.building or None, sub.filter.floor or None, sub.filter.state, sub.filter.q or None)
        if sub.view == "room":
            if not sub.room or sub.room not in self.live:
                await self._error(client, f"unknown room {sub.room!r}", "room")
                return
        elif sub.view == "alarms":
            if self.alarms is None:
                await self._error(client, "alarms are not running on this server", "view")
                return
        elif sub.view == "jobs":
            if self.jobs is None:
                await self._error(client, "jobs are not running on this server", "view")
                return
        else:
            try:
                self.live.check_filter(f)
            except FilterError as exc:
                await self._error(client, exc.message, f"filter.{exc.field}")
                return
        client.view = sub.view
        client.filter = f
        client.page = sub.page
        client.page_size = sub.page_size
        client.room = sub.room if sub.view == "room" else None
        client.alarms_dirty = False
        client.resync = True
        client.wake.set()

    # -- pushing ---------------------------------------------------------------------------
    async def _sender(self, client: _Client) -> None:
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                message = self._message(client)
                if message is None:
                    continue
                # the next push is encoded only once the socket took this one (newest state wins)
                async with asyncio.timeout(self.stall_timeout_s):
                    await _send(client.ws, message)
                client.pushes += 1
                self.pushes += 1
                # at most one push per interval: what changes meanwhile is coalesced
                await asyncio.sleep(self.interval_s)
        except TimeoutError:
            await self._drop(client)
        except ConnectionResetError:
            await client.ws.close()

    def _message(self, client: _Client) -> str | None:
        live = self.live
        if client.view == "room":
            return self._room_message(client)
        if client.view == "jobs":
            if client.resync:
                client.resync = False
                client.jobs_dirty.clear()
                client.job_items.clear()
                client.seq += 1
                return json.dumps({"type": "snapshot", "view": "jobs", "seq": client.seq, "jobs": list(self._job_states.values())})
            if not client.jobs_dirty and not client.job_items:
                return None
            jobs = [self._job_states[j] for j in sorted(client.jobs_dirty) if j in self._job_states]
            items, client.job_items = client.job_items, []
            client.jobs_dirty.clear()
            client.seq += 1
            return json.dumps({"type": "update", "seq": client.seq, "jobs": jobs, "items": items}, ensure_ascii=False)
        if client.view == "alarms":
            if not (client.resync or client.alarms_dirty):
                return None
            kind = "snapshot" if client.resync else "update"
            client.resync = client.alarms_dirty = False
            client.seq += 1
            body = {"type": kind, "view": "alarms", "seq": client.seq, "alarms": self._alarms(), "shelved": self._shelved()}
            return json.dumps(body, ensure_ascii=False)
        if client.resync or client.membership_dirty:
            page = live.page(client.filter, client.page, client.page_size)
            if client.resync or page.ids != client.ids:
                client.resync = client.membership_dirty = client.counts_dirty = False
                client.dirty_rooms.clear()
                client.ids = page.ids
                client.id_set = frozenset(page.ids)
                client.page = page.page
                client.seq += 1
                return json.dumps(
                    {
                        "type": "snapshot", "view": "overview", "seq": client.seq,
                        "filter": _filter_json(client.filter), "page": page.page, "pages": page.pages,
                        "page_size": page.page_size, "total": page.total, "counts": page.counts,
                        "rooms": page.rooms,
                    },
                    ensure_ascii=False,
                )
            client.membership_dirty = False
        parts: list[str] = []
        if client.dirty_rooms:
            # clients that show the same rooms and keep up get the same changes: the part is
            # built once per batch of changes and shared (a client that fell behind has a
            # larger set, coalesced per room, and gets its own)
            key = frozenset(client.dirty_rooms)
            client.dirty_rooms.clear()
            part = self._parts.get(key)
            if part is None:
                encoded = [live.encoded(r) for r in key]
                part = self._parts[key] = '"rooms":[' + ",".join(e for e in encoded if e) + "]"
            parts.append(part)
        if client.counts_dirty:
            client.counts_dirty = False
            scope = client.filter.scope()
            counts = self._counts.get(scope)
            if counts is None:
                counts = self._counts[scope] = '"counts":' + json.dumps(live.counts(*scope))
            parts.append(counts)
        if not parts:
            return None
        client.seq += 1
        return '{"type":"update","seq":' + str(client.seq) + "," + ",".join(parts) + "}"

    def _room_message(self, client: _Client) -> str | None:
        live = self.live
        room = client.room or ""
        if client.resync:
            client.resync = False
            client.dirty_rooms.clear()
            client.dirty_tags.clear()
            detail = live.room_detail(room)
            if detail is None:
                client.view = None
                return json.dumps({"type": "error", "message": f"room {room!r} no longer exists", "field": "room"})
            client.seq += 1
            client.alarms_dirty = False
            body = {"type": "snapshot", "view": "room", "seq": client.seq, **to_json(detail), "alarms": self._alarms(room)}
            return json.dumps(body, ensure_ascii=False)
        out: dict[str, Any] = {}
        if client.alarms_dirty:
            client.alarms_dirty = False
            out["alarms"] = self._alarms(room)
        if client.dirty_rooms:
            client.dirty_rooms.clear()
            out["room"] = live.summary(room)
        if client.dirty_tags:
            tags: dict[str, Any] = {}
            for name in client.dirty_tags:
                tv = live.tagdb.get(name)
                if tv is not None:
                    tags[name] = tag_json(tv, live.tagdb.meta(name).unit)
            client.dirty_tags.clear()
            out["tags"] = tags
        if not out:
            return None
        client.seq += 1
        return json.dumps({"type": "update", "seq": client.seq, **out}, ensure_ascii=False)


async def _until_done(client: _Client, *tasks: asyncio.Task[Any]) -> bool:
    """Wait until the connection's cancelled tasks have ended, even if this wait is cancelled
    (they must not outlive their handler; returns whether it was); one stuck on a socket that
    takes nothing is freed by aborting the connection."""
    cancelled = False
    rounds = 0
    while pending := [t for t in tasks if not t.done()]:
        if rounds:
            # again: Python 3.11's wait_for (which libraries under us still use) loses a
            # cancellation that arrives as its inner await completes, and the sender would then
            # wait for its next wake-up for ever
            for task in pending:
                task.cancel()
        if rounds == 1:
            _abort(client)
        if rounds == MAX_CLOSE_ROUNDS:
            log.error("WebSocket tasks ignore cancellation; leaving them", extra={"user": client.user.name,
                      "tasks": [t.get_name() for t in pending]})
            break
        rounds += 1
        try:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def _abort(client: _Client) -> None:
    # also when a cancelled close began a graceful close: that one would wait for the peer to read
    if isinstance(client.transport, asyncio.Transport):
        client.transport.abort()


async def _send(ws: web.WebSocketResponse, text: str) -> None:
    if not ws.closed:
        await ws.send_str(text)


async def _close_within(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    async with asyncio.timeout(CLOSE_TIMEOUT_S):
        await ws.close(code=code, message=message)


def _filter_json(f: RoomFilter) -> dict[str, Any]:
    return {"building": f.building, "floor": f.floor, "state": f.state, "q": f.q}


async def _authenticate(request: web.Request) -> tuple[UserInfo, Callable[[], Any]] | web.Response:
    """The caller of a feed connection, and how to check again later that it may stay."""
    ctx = request.app[CONTEXT]
    header = request.headers.get("Authorization")
    if header is not None:
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        users = ctx[USERS]
        user = await users.authenticate_token(token) if token else None

        async def recheck_token() -> UserInfo | None:
            return await users.authenticate_token(token)

        recheck: Callable[[], Any] = recheck_token
    else:
        session = request.get(SESSION)
        user = session.user if session is not None else None
        origin = request.headers.get("Origin")
        if session is not None and origin is not None and urlsplit(origin).netloc != request.host:
            # a page of another site must not ride on this browser's session cookie
            return json_response({"error": f"cross-site WebSocket from {origin} refused"}, status=403)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        sessions = request.app[SESSIONS]

        async def recheck_session() -> UserInfo | None:
            s = await sessions.resolve(cookie)
            return s.user if s is not None else None

        recheck = recheck_session
    if user is None:
        return json_response({"error": "authentication required: sign in, or send 'Authorization: Bearer <token>'"}, status=401)
    if not user.can(Permission.VIEW):
        return json_response({"error": f"role {user.role.value} may not view"}, status=403)
    return user, recheck


FEED: web.AppKey[Feed] = web.AppKey("feed", Feed)
