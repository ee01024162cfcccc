"""The prepaid engine at runtime: billing from the tag stream, room tags, supply, periodic work.

:class:`PrepaidEngine` is the one object the rest of the server talks to (HMI API, OPC UA
methods, the alarm engine's ``room_contact``); :class:`scada.prepaid.component.PrepaidComponent`
runs it.

Billing: the engine subscribes to the meters' cumulative registers (``energy_total`` with the
TOU registers, ``volume_total``) including unchanged reports, groups a meter's values by
(meter, source timestamp) — the poller writes a meter's registers in one batch with one
timestamp — and bills whatever is pending in one transaction per batch (up to
``batch_limit`` readings). Bad or uncertain values are ignored. If the database fails, the
newest reading of each meter is kept and retried: consumption is cumulative, nothing is lost.
Late readings (a gateway's replay after an outage, older than the tag's current value) are
taken too: one newer than the meter's last billed reading is billed in time order (a fairer
split across tariff periods); one older is history only, never billed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from itertools import islice
from typing import Any, Literal, cast

from sqlalchemy import Table, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from scada.config import ScadaConfig
from scada.core.context import Key
from scada.core.sideloop import SideLoop
from scada.db import Database
from scada.prepaid.accounts import (
    AccountService,
    AccountSettings,
    OpenRequest,
    PostResult,
)
from scada.prepaid.billing_process import BillingProcess, BillingSettings, BillingUnavailable
from scada.prepaid.charges import post_due_charges
from scada.prepaid.config import PrepaidConfig, hhmm_minutes
from scada.prepaid.deduction import ENGINE, Biller, BillOutcome, columns_as_text
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import AccountView, Contact, EntryView, account_view
from scada.prepaid.levels import parse_thresholds
from scada.prepaid.models import Account, LedgerEntry, MeterState
from scada.prepaid.money import Rounding, parse_money
from scada.prepaid.policy import FriendlyCalendar, FriendlyWindow
from scada.prepaid.publisher import RoomPublisher
from scada.prepaid.readings import ENERGY_REGISTERS, Reading, parse_reading
from scada.prepaid.retention import erase_personal_data
from scada.prepaid.review import HoldView, MeterReview
from scada.prepaid.supply import SupplyController, SupplySwitch
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo, RegistryDiff
from scada.users.audit import Actor, AuditLog
from tags import Quality, TagChange, TagDB, names, utcnow
from tags.names import meter_tag
from tags.slices import Slicer
from tags.subscription import Subscription, by_points
from tags.timers import run_every

__all__ = ["PREPAID", "HoldView", "PrepaidEngine", "RetentionEraser", "TOTAL_POINTS"]

log = logging.getLogger(__name__)

RetentionEraser = Callable[[int, dt.datetime], Awaitable[int]]
"""``eraser(retention_days, now)``: erases what a feature keeps of accounts closed that long ago;
returns how many records."""

TOTAL_POINTS = {"energy_total": "electricity", "volume_total": "water"}
# every account at start, as rows with the thresholds as text (see load)
ACCOUNT_ROWS = select(*columns_as_text(cast(Table, Account.__table__), ("thresholds",))).order_by(Account.id)
_PUBLISH_SLICE = 1_000  # rooms or meters published in one tag write at start
REGISTER_POINTS = {f"energy_{p}": p for p in ENERGY_REGISTERS}
BILLING_POINTS = frozenset(TOTAL_POINTS) | frozenset(REGISTER_POINTS)
# ``billing_in = "auto"``: from this many meters billing's transactions run in a process of their
# own (a small site's server has the interpreter to spare, and starts no second process)
PROCESS_FROM_METERS = 1000
# a part batch's earliest time after the previous part batch (a billing process; see _StreamReadings)
PART_BATCH_GAP_S = 0.25

BillBatch = Callable[[list[Reading]], Awaitable[BillOutcome]]


class _Directory:
    """Meter lookups for the biller from the registry's current snapshot."""

    def __init__(self, assets: AssetRegistry) -> None:
        self.assets = assets

    def meter(self, meter_id: str) -> MeterInfo | None:
        return self.assets.snapshot.meters.get(meter_id)

    def predecessor(self, meter_id: str) -> str | None:
        return next((m.id for m in self.assets.snapshot.meters.values() if m.replaced_by == meter_id), None)


def _last_line(exc: Exception) -> str:
    """The error's own line (a worker's error comes as its traceback, the error last)."""
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:200]


class _StreamReadings:
    """The billing subscription's next readings, for :meth:`PrepaidEngine._bill_chunks`: a full
    batch as soon as it is collected, a part batch no sooner than :data:`PART_BATCH_GAP_S` after
    the previous part batch. A site's polls come as a trickle (50,000 meters a minute are ~800
    readings a second, a poll response at a time): sent as they came, a billing process that
    answers in milliseconds made a transaction of a few readings each time, and on SQLite each
    one took the write lock and synced the file, leaving the server's other writers waiting."""

    def __init__(self, engine: PrepaidEngine, sub: Subscription[TagChange]) -> None:
        self.engine, self.sub = engine, sub
        self.limit = engine.cfg.batch_limit
        self._due = 0.0  # loop time from which a part batch may go

    def take(self) -> list[Reading]:
        """The next batch's readings, or none while only a part batch is collected before its time."""
        self.engine.ingest(self.sub.drain())
        if not self._ready():
            return []
        readings = self.engine.take_readings(self.limit)
        if len(readings) < self.limit:
            self._due = asyncio.get_running_loop().time() + PART_BATCH_GAP_S
        return readings

    def waiting(self) -> bool:
        """Readings are collected that :meth:`take` holds back (a part batch before its time)."""
        return bool(self.engine._pending)

    def _ready(self) -> bool:
        collected = len(self.engine._pending) + len(self.engine._retry)
        return collected >= self.limit or (collected > 0 and asyncio.get_running_loop().time() >= self._due)

    async def arrival(self) -> None:
        """Until :meth:`take` has readings to give."""
        while True:
            self.engine.ingest(self.sub.drain())
            if self._ready():
                return
            if self.sub.closed:  # nothing more comes: only the batch's end is waited for
                await asyncio.Event().wait()
            if not self.engine._pending:
                await self.sub.wait()
                continue
            # not ``wait_for``: on 3.11 it returns the wait's result when a cancel comes in the
            # turn the wait ends, and the cancel is lost (a stopped billing went on, owned by nobody)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self._due):
                    await self.sub.wait()


def _billing(answer: Awaitable[BillOutcome]) -> asyncio.Future[BillOutcome]:
    """A batch's answer as a future: the process's is one already; the thread's coroutine
    becomes a task with a name (a leak report or a task dump says whose it is)."""
    if asyncio.isfuture(answer):
        return answer
    return asyncio.get_running_loop().create_task(answer, name="prepaid:billing batch")  # type: ignore[arg-type]


class _CountedLock(asyncio.Lock):
    """An ``asyncio.Lock`` that knows how many wait for it (billing's batches let them in)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    async def acquire(self) -> Literal[True]:
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


def friendly_calendar(cfg: PrepaidConfig, tz: Any) -> FriendlyCalendar:
    fc = cfg.friendly_credit
    windows = tuple(FriendlyWindow(w.iso_days, hhmm_minutes(w.start), hhmm_minutes(w.end)) for w in fc.windows)
    return FriendlyCalendar(tz, windows, fc.weekends, frozenset({6, 7}), frozenset(fc.holidays))


class PrepaidEngine:
    def __init__(
        self,
        config: ScadaConfig,
        db: Database,
        assets: AssetRegistry,
        tagdb: TagDB,
        *,
        switch: SupplySwitch | None = None,
        spawn: Any = None,
        switchable: Any = None,
    ) -> None:
        self.config = config
        self.cfg: PrepaidConfig = config.prepaid
        self.db = db
        self.assets = assets
        self.tagdb = tagdb
        site = config.site
        self.minor_units = site.currency_minor_units
        self.currency = site.currency
        self.tz = site.tz
        self.rounding = Rounding(self.minor_units, self.cfg.rounding)
        self.tariffs = TariffStore(db)
        self._daily_cost: dict[int, Decimal] = {}
        self._daily_cost_version = 0  # moved by each refresh: the billing process gets the new costs
        self.biller = Biller(self.tariffs, self.rounding, self.tz, _Directory(assets), margin=self.cfg.jump_margin,
                             daily_cost=self._daily_cost.get)
        self.accounts = AccountService(db, self.tariffs, self.biller, lambda: assets.snapshot, self.current_reading,
                                       minor_units=self.minor_units)

        self.publisher = RoomPublisher(tagdb, self.minor_units, self.currency)
        self._spawn = spawn or _own_tasks()
        self._switchable = switchable or (lambda meter: True)  # which meters have remote supply control
        self.clock = utcnow  # the time of friendly-credit windows and periodic charges (tests drive it)
        self.supply = SupplyController(
            switch=switch, friendly=friendly_calendar(self.cfg, self.tz), record=self._record_supply,
            meters_of_room=self._switchable_meters, spawn=self._spawn, retry_s=self.cfg.command_retry_s,
            clock=lambda: self.clock(),
        )
        self.views: dict[str, AccountView] = {}  # room → its open (or last closed) account
        self._lock = _CountedLock()  # billing batches and operations that move billing cursors
        self.review = MeterReview(db, self.tariffs, self.biller, assets, lock=self._lock,
                                  hold_cleared=lambda meter_id: self.publisher.publish_hold(meter_id, None, ""),
                                  account_changed=self._account_changed)
        self._pending: dict[tuple[str, dt.datetime], dict[str, TagChange]] = {}
        self._retry: dict[str, Reading] = {}
        self._failing = False
        # while run_billing runs: where its batches are billed (a side loop or a process)
        self._bill_batch: BillBatch | None = None
        self._bill_batch_in_order = False  # batches may be sent before the previous one is done
        self._billing_db: Database | None = None
        self._unsubscribe: Any = None
        self.stats = {"readings": 0, "processed": 0, "billed": 0, "batches": 0, "failures": 0}
        self._payment_listeners: list[Callable[[str, PostResult], None]] = []
        self._retention_erasers: list[RetentionEraser] = []

    def add_retention_eraser(self, eraser: RetentionEraser) -> Callable[[], None]:
        """Let ``eraser(retention_days, now)`` erase the personal data a higher feature keeps of
        closed accounts (the back office's customers, prepared accounts) each time this engine's
        retention runs; it returns how many records it erased and audits them itself. Returns the
        function that removes it."""
        self._retention_erasers.append(eraser)

        def remove() -> None:
            if eraser in self._retention_erasers:
                self._retention_erasers.remove(eraser)

        return remove

    def add_payment_listener(self, listener: Callable[[str, PostResult], None]) -> Callable[[], None]:
        """Call ``listener(room, result)`` after every recharge or payment that was posted (not a
        replay); it must not block. Returns the function that removes it."""
        self._payment_listeners.append(listener)

        def remove() -> None:
            if listener in self._payment_listeners:
                self._payment_listeners.remove(listener)

        return remove

    # -- start / stop ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Register and publish the room and meter tags from the database."""
        snap = self.assets.snapshot
        self._register(snap, snap.rooms, snap.meters)
        # a read: the read-only connection, which never takes (nor waits for) the write lock
        async with self.db.reads() as s:
            # rows, not ORM objects (nothing here is changed), the thresholds as text (decoded
            # once per distinct text): at 50,000 accounts the ORM's loading took seconds
            accounts = (await s.execute(ACCOUNT_ROWS)).all()
            holds = (await s.scalars(select(MeterState).where(MeterState.hold_kind.is_not(None)))).all()
        # at 20,000 rooms these loops take seconds: in slices, so that the tasks already running
        # (and a transaction one of them holds) do not wait for all of it
        slicer = Slicer()
        for a in accounts:  # later accounts of a room win; an open one wins over closed ones
            v = account_view(a)  # type: ignore[arg-type]  # a row has the account's columns
            if v.open or self.views.get(a.room_id) is None or not self.views[a.room_id].open:
                self.views[a.room_id] = v
            await slicer.pause()
        rooms = list(snap.rooms)
        for i in range(0, len(rooms), _PUBLISH_SLICE):
            self.publisher.publish_rooms((room, self.views.get(room)) for room in rooms[i:i + _PUBLISH_SLICE])
            await slicer.pause()
        tenants = [m.id for m in snap.meters.values() if m.role == "tenant"]
        for i in range(0, len(tenants), _PUBLISH_SLICE):
            self.publisher.clear_holds(tenants[i:i + _PUBLISH_SLICE])
            await slicer.pause()
        for st in holds:
            if st.meter_id in snap.meters:
                self.publisher.publish_hold(st.meter_id, st.hold_kind, st.hold_detail)
        await self.refresh_daily_costs()
        self._unsubscribe = self.assets.subscribe(self._registry_changed)

    def _register(self, snap: AssetSnapshot, rooms: Iterable[str], meters: Iterable[str]) -> None:
        self.publisher.rooms(rooms)
        found = (snap.meters.get(meter_id) for meter_id in meters)
        self.publisher.meters((m.id, m.room_id) for m in found if m is not None and m.role == "tenant")

    def _registry_changed(self, snap: AssetSnapshot, diff: RegistryDiff) -> None:
        self._register(snap, diff.rooms_added, diff.meters_added)
        for room in diff.rooms_added:
            self.publisher.publish_account(self.views.get(room), room)
        for meter_id in diff.meters_added:
            if meter_id in snap.meters and snap.meters[meter_id].role == "tenant":
                self.publisher.publish_hold(meter_id, None, "")

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- readings from the tag database ---------------------------------------------------------
    def current_reading(self, meter_id: str) -> Reading | None:
        """The meter's newest good reading in the tag database, with its TOU registers if good."""
        for point in TOTAL_POINTS:
            tv = self.tagdb.get(meter_tag(meter_id, point))
            if tv is None or tv.quality is not Quality.GOOD:
                continue
            value = parse_reading(tv.value)
            if value is None:
                return None
            registers: dict[str, Decimal] = {}
            for reg_point, period in REGISTER_POINTS.items():
                rv = self.tagdb.get(meter_tag(meter_id, reg_point))
                if rv is None:
                    break
                v = parse_reading(rv.value) if rv.quality is Quality.GOOD and rv.source_ts == tv.source_ts else None
                if v is None:
                    registers = {}
                    break
                registers[period] = v
            return Reading(meter_id, value, tv.source_ts, registers if len(registers) == len(REGISTER_POINTS) else None)
        return None

    def ingest(self, changes: Iterable[TagChange]) -> None:
        """Collect register values by (meter, source timestamp)."""
        for change in changes:
            meter_id, point = names.split(change.name)
            if point not in BILLING_POINTS or ":" in meter_id:
                continue
            self._pending.setdefault((meter_id, change.new.source_ts), {})[point] = change

    def take_readings(self, limit: int | None = None) -> list[Reading]:
        """The complete readings collected so far (groups with a good total); with ``limit``,
        the readings of the first ``limit`` groups collected (the rest stay collected)."""
        out = list(self._retry.values())
        self._retry.clear()
        if limit is None or limit >= len(self._pending):
            pending, self._pending = self._pending, {}
        else:
            pending = {key: self._pending.pop(key) for key in list(islice(self._pending, limit))}
        for (meter_id, ts), group in pending.items():
            total = next((group[p] for p in TOTAL_POINTS if p in group), None)
            if total is None or total.new.quality is not Quality.GOOD:
                continue
            value = parse_reading(total.new.value)
            if value is None:
                continue
            registers: dict[str, Decimal] | None = {}
            for reg_point, period in REGISTER_POINTS.items():
                c = group.get(reg_point)
                v = parse_reading(c.new.value) if c is not None and c.new.quality is Quality.GOOD else None
                if v is None:
                    registers = None
                    break
                registers[period] = v  # type: ignore[index]
            out.append(Reading(meter_id, value, ts, registers or None))
        self.stats["readings"] += len(out)
        return out

    async def run_billing(self) -> None:
        """The billing loop (a supervised task). Its transactions run away from the server's loop
        (see :meth:`_billing_place`): on a server whose loop is never idle, a batch that awaited
        each statement on that loop held the database's write lock for a turn of it per
        statement (seconds at 50,000 meters)."""
        sub = self.tagdb.subscribe(
            by_points(BILLING_POINTS), maxsize=200_000, include_reported=True, include_late=True, name="prepaid"
        )
        try:
            async with self._billing_place() as bill_batch:
                self._bill_batch, self._bill_batch_in_order = bill_batch, self.billing_in_process
                try:
                    seed = [TagChange(n, None, v, True) for n, v in self.tagdb.snapshot(by_points(BILLING_POINTS)).items()]
                    self.ingest(seed)
                    await self.bill_pending()
                    more = _StreamReadings(self, sub)
                    while True:
                        if not self._pending:  # else readings left for another's turn (see _bill_chunks)
                            batch = await sub.get_batch(self.cfg.batch_limit * 5)
                            batch.extend(sub.drain())
                            self.ingest(batch)
                        await self.bill_pending(more)
                finally:
                    self._bill_batch, self._bill_batch_in_order = None, False
        except StopAsyncIteration:
            return
        finally:
            sub.close()

    @property
    def billing_in_process(self) -> bool:
        """Whether :meth:`run_billing` bills in a process of its own (``prepaid.billing_in``)."""
        if self.cfg.billing_in != "auto":
            return self.cfg.billing_in == "process"
        return len(self.assets.snapshot.meters) >= PROCESS_FROM_METERS

    @asynccontextmanager
    async def _billing_place(self) -> AsyncIterator[BillBatch]:
        """Where :meth:`run_billing`'s batches are billed: a worker process with a database engine
        of its own (:mod:`scada.prepaid.billing_process`: billing gets a core, not what the rest of
        the server leaves of one), or a loop on a thread of this process
        (:class:`scada.core.sideloop.SideLoop`, with :attr:`billing_db`)."""
        if self.billing_in_process:
            settings = BillingSettings(self.db.url, self.minor_units, self.cfg.rounding, self.tz, self.cfg.jump_margin,
                                       logging.getLogger().getEffectiveLevel())
            daily = lambda: (self._daily_cost_version, self._daily_cost)  # noqa: E731
            async with BillingProcess(settings, lambda: self.assets.snapshot.meters, daily) as process:
                log.info("billing in a process of its own", extra={"meters": len(self.assets.snapshot.meters)})
                yield lambda readings: process.bill(readings, utcnow())
            return
        side_db = self.billing_db
        async with SideLoop("prepaid-billing", closing=side_db.dispose) as side:
            yield lambda readings: side.run(self._bill_in(side_db, readings), name="prepaid:billing")

    @property
    def billing_db(self) -> Database:
        """The database engine of :meth:`run_billing`'s transactions (the same database as
        :attr:`db`; its connections belong to the billing loop, and on SQLite its driver's calls
        run on that loop's thread: the loop has nothing else to do while a statement runs)."""
        if self._billing_db is None:
            self._billing_db = Database(self.db.url, pool_size=1, driver_in_place=True)
        return self._billing_db

    async def bill_pending(self, more: _StreamReadings | None = None) -> None:
        """Bill the readings collected so far, ``batch_limit`` a transaction. In a billing process
        (:attr:`billing_in_process`) ``more``, if given, gives further readings from the stream
        whenever there is room for another batch: the process is not left idle while this side
        waits for a batch's answer."""
        if self._pipelined and more is not None:
            await self._bill_chunks([], more)
            return
        chunks = self._chunked(self.take_readings())
        if self._pipelined and len(chunks) > 1:
            await self._bill_chunks(chunks)
            return
        for chunk in chunks:
            await self.bill(chunk)

    def _chunked(self, readings: list[Reading]) -> list[list[Reading]]:
        limit = self.cfg.batch_limit
        return [readings[i:i + limit] for i in range(0, len(readings), limit)]

    async def bill(self, readings: list[Reading]) -> BillOutcome | None:
        """Bill ``readings`` in one transaction; on failure keep each meter's newest for a retry."""
        if not readings:
            return None
        try:
            async with self._lock:
                if self._bill_batch is None:
                    outcome = await self._bill_in(self.db, readings)
                else:
                    outcome = await self._bill_batch(readings)
        except Exception as exc:
            await self._bill_failed(readings, exc)
            return None
        self._billed(readings, outcome)
        return outcome

    async def _bill_chunks(self, chunks: list[list[Reading]], more: _StreamReadings | None = None) -> None:
        """Bill ``chunks`` in order, each in one transaction of the billing process, the next one
        sent while one is billed (the process takes them one after another, in the order sent):
        the process does not wait for this side's work between two batches; with room for
        another batch and none left, ``more`` gives the next readings as they come. Someone else waiting
        for the engine's lock (an operation on an account) or a batch that failed stops the
        sending; the lock is let go once the batches sent are done, the failed ones are dealt
        with (retried or their meters isolated), and the lock is taken again for the rest.
        ``more`` gives one batch at a time: the readings collected beyond it are grouped once
        there is room for them, not before the first one goes (at 5,000 readings a take, the
        grouping kept an idle process waiting for tens of milliseconds); those left when the
        sending stops stay collected for the billing loop's next call. A part batch waits for
        its time (:class:`_StreamReadings`), with the lock held: an operation that comes
        meanwhile waits up to :data:`PART_BATCH_GAP_S` more."""
        assert self._bill_batch is not None
        bill_batch = self._bill_batch
        todo = deque(chunks)
        while True:
            failed: list[tuple[list[Reading], Exception]] = []
            async with self._lock:
                flight: deque[tuple[list[Reading], asyncio.Future[Any]]] = deque()

                def room(flight: deque[Any] = flight, failed: list[Any] = failed) -> bool:  # for one more batch sent
                    return len(flight) < 2 and not failed and not self._lock.waiting

                try:
                    while True:
                        if not todo and more is not None and room():
                            todo.extend(self._chunked(more.take()))
                        while todo and room():
                            chunk = todo.popleft()
                            flight.append((chunk, _billing(bill_batch(chunk))))
                        if not flight:
                            if more is not None and more.waiting() and room():
                                await more.arrival()  # a part batch's time, or a full batch
                                continue
                            break  # another's turn, or the failed batches' handling
                        chunk, future = flight[0]
                        if more is not None and room():
                            arrival = asyncio.get_running_loop().create_task(
                                more.arrival(), name="prepaid:billing stream arrival"
                            )
                            try:
                                await asyncio.wait([future, arrival], return_when=asyncio.FIRST_COMPLETED)
                            finally:
                                # its wait has ended before the stream is read again (not waited
                                # for when done: a wait costs two loop turns even then, and a busy
                                # loop's turns are long)
                                if not arrival.done():
                                    arrival.cancel()
                                    await asyncio.wait([arrival])
                            error = None if arrival.cancelled() else arrival.exception()
                            if error is not None:
                                raise error  # the stream's error, not left unretrieved
                            if not future.done():
                                continue  # the stream's next changes: taken at the top
                        flight.popleft()
                        try:
                            outcome = await future
                        except Exception as exc:
                            failed.append((chunk, exc))
                            continue
                        self._billed(chunk, outcome)
                finally:
                    # cancelled (a stop): each batch sent ends (its transaction in the process
                    # commits or rolls back) before the lock is let go
                    for _chunk, future in flight:
                        future.cancel()
                    if flight:
                        await asyncio.gather(*(f for _c, f in flight), return_exceptions=True)
            for chunk, error in failed:
                await self._bill_failed(chunk, error)
            if not todo:
                return

    @property
    def _pipelined(self) -> bool:
        return self._bill_batch is not None and self._bill_batch_in_order

    def _billed(self, readings: list[Reading], outcome: BillOutcome) -> None:
        if self._failing:
            self._failing = False
            log.info("billing recovered")
        self.stats["batches"] += 1
        self.stats["processed"] += len(readings)
        self.stats["billed"] += outcome.billed
        self._after(outcome)

    async def _bill_failed(self, readings: list[Reading], exc: Exception) -> None:
        if isinstance(exc, (DBAPIError, OSError, BillingUnavailable)):
            self._keep_for_retry(readings)
            self.stats["failures"] += 1
            if not self._failing:
                self._failing = True
                log.error("billing failed; retrying", extra={"error": str(exc).splitlines()[0][:200], "readings": len(readings)})
            await asyncio.sleep(1.0)
            return
        if len({r.meter_id for r in readings}) == 1:
            log.error("billing a reading failed; it is retried with the meter's next reading", extra={"meter": readings[0].meter_id},
                      exc_info=exc)
            return
        # isolate the meter whose reading breaks the batch: the others must still be billed
        by_meter: dict[str, list[Reading]] = {}
        for r in readings:
            by_meter.setdefault(r.meter_id, []).append(r)
        log.warning("billing a batch failed; its meters are billed one by one",
                    extra={"readings": len(readings), "meters": len(by_meter), "error": _last_line(exc)})
        for group in by_meter.values():
            await self.bill(group)

    async def _bill_in(self, db: Database, readings: list[Reading]) -> BillOutcome:
        async with db.transaction() as s:
            return await self.biller.bill(s, readings, utcnow())

    def _keep_for_retry(self, readings: list[Reading]) -> None:
        for r in readings:
            kept = self._retry.get(r.meter_id)
            if kept is None or r.ts > kept.ts:
                self._retry[r.meter_id] = r

    def _after(self, outcome: BillOutcome) -> None:
        views = [view for view in outcome.accounts.values() if self._current(view)]
        self.publisher.publish_accounts(views)  # a batch's rooms as one tag write
        for view in views:
            self.supply.evaluate(view)
        for hold in outcome.holds:
            self.publisher.publish_hold(hold.meter_id, hold.kind, hold.detail)

    def _current(self, view: AccountView) -> bool:
        """Take ``view`` as its room's current view, unless it is an old closed account of a room
        that has a new one."""
        current = self.views.get(view.room_id)
        if current is not None and current.open and current.id != view.id and not view.open:
            return False
        self.views[view.room_id] = view
        return True

    def _account_changed(self, view: AccountView) -> None:
        if self._current(view):
            self.publisher.publish_account(view, view.room_id)
            self.supply.evaluate(view)

    async def post_with(self, work: Callable[[AsyncSession], Awaitable[Iterable[Account]]]) -> list[AccountView]:
        """Postings made by other parts (apportioned shares): ``work`` runs in one transaction
        under the billing lock and returns the accounts it posted to (with
        :func:`scada.prepaid.ledger.post`); their balance levels are judged again in the same
        transaction, and after the commit their views are published and their supply evaluated."""
        async with self._lock:
            async with self.db.transaction() as s:
                accounts = list(await work(s))
                for a in accounts:
                    self.biller.update_level(a, credited=False)
                views = [account_view(a) for a in accounts]
        for view in views:
            self._account_changed(view)
        return views

    # -- supply ------------------------------------------------------------------------------------
    def _switchable_meters(self, room_id: str) -> list[str]:
        return [m.id for m in self.assets.snapshot.meters_of_room(room_id) if m.role == "tenant" and self._switchable(m)]

    async def _record_supply(self, account_id: int, state: str, pending: bool, reason: str) -> AccountView | None:
        view = await self.accounts.set_supply(account_id, state, reconnect_pending=pending, actor=ENGINE, reason=reason)
        if view is not None:
            current = self.views.get(view.room_id)
            if current is None or current.id == view.id:
                self.views[view.room_id] = view
                self.publisher.publish_account(view, view.room_id)
        return view

    async def release_reconnect(self, room_id: str, actor: Actor, reason: str) -> AccountView:
        view = await self.account(room_id)
        if view is None or not view.open:
            raise PrepaidError(f"room {room_id} has no open account", status=404)
        if view.supply_state == "on":
            raise PrepaidError("the supply is on")
        if view.postpaid and view.dunning_cut:
            raise PrepaidError("the account's overdue bills are still unpaid: pay them first")
        if not view.postpaid and view.balance_minor <= -(view.credit_limit_minor + view.emergency_active_minor):
            raise PrepaidError("the credit is still exhausted: recharge first")
        await AuditLog(self.db).write(actor, "account.reconnect", "account", str(view.id), reason=reason)
        self.supply.release(room_id)
        self.supply.evaluate(view, force=True)
        return view

    async def tick(self, now: dt.datetime | None = None) -> None:
        """Periodic work: waiting cuts and retries, two-part charges."""
        now = now or self.clock()
        if self._retry:  # readings kept after a database failure, in case no new ones come
            await self.bill_pending()
        for view in list(self.views.values()):
            if view.open or view.supply_state != "off":
                self.supply.evaluate(view)
        await self.run_periodic_charges(now)

    async def run_ticks(self) -> None:
        last_costs = 0.0
        loop = asyncio.get_running_loop()

        last_retention = -1e9

        async def step() -> None:
            nonlocal last_costs, last_retention
            if loop.time() - last_costs > 900:
                last_costs = loop.time()
                await self.refresh_daily_costs()
            if self.cfg.personal_data_retention_days is not None and loop.time() - last_retention > 3600:
                last_retention = loop.time()
                await self.erase_personal_data()
            await self.tick()

        await run_every(self.cfg.tick_s, step, name="prepaid-ticks", log_failures=False)

    async def erase_personal_data(self, now: dt.datetime | None = None) -> int:
        """Erase the contact details of accounts closed longer than the retention setting
        (``prepaid.personal_data_retention_days``; unset: nothing), then what each registered
        eraser (:meth:`add_retention_eraser`) keeps of them; returns how many records (accounts,
        customers, prepared accounts) were erased."""
        days = self.cfg.personal_data_retention_days
        if days is None:
            return 0
        now = now or self.clock()
        erased = await erase_personal_data(self.db, retention_days=days, now=now)
        for e in erased:
            view = self.views.get(e.room_id)
            if view is not None and view.id == e.account_id:
                self.views[e.room_id] = replace(view, contact=Contact("", None, None, view.contact.language))
        count = len(erased)
        for eraser in list(self._retention_erasers):
            count += await eraser(days, now)
        return count

    async def refresh_daily_costs(self, now: dt.datetime | None = None) -> None:
        """Average daily cost per account over the configured window (for days-based levels)."""
        now = now or utcnow()
        days = self.cfg.daily_cost_window_days
        since = now - dt.timedelta(days=days)
        # a scan of the window's ledger: on the read-only connection, not holding the write lock
        async with self.db.reads() as s:
            rows = (await s.execute(
                select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_minor))
                .where(LedgerEntry.kind.in_(("deduction", "charge")), LedgerEntry.ts >= since)
                .group_by(LedgerEntry.account_id)
            )).all()
            opened = dict((await s.execute(select(Account.id, Account.opened_at).where(Account.state == "open"))).all())
        self._daily_cost.clear()
        self._daily_cost_version += 1
        for account_id, total in rows:
            if account_id not in opened:
                continue
            age_days = max(Decimal(1), Decimal((now - max(opened[account_id], since)).total_seconds()) / Decimal(86400))
            self._daily_cost[account_id] = Decimal(-int(total or 0)) / age_days

    # -- periodic charges (two-part tariffs) -------------------------------------------------------
    async def run_periodic_charges(self, now: dt.datetime) -> int:
        """Post due capacity/demand charges of two-part tariffs; returns the number posted."""
        today = now.astimezone(self.tz).date()
        posted = 0
        # which tariffs have two-part versions, read without the write lock: every tick (at 50,000
        # accounts, most sites with no two-part tariff) the write transaction below held SQLite's
        # lock while it walked every account (2.7 s on a busy loop); it is only for those on one
        async with self.db.reads() as s:
            two_part = {t for t, p in (await self.tariffs.timelines(s)).items() if any(x.definition.two_part for x in p.versions)}
        if not two_part:
            return 0
        candidates = [v for v in self.views.values() if v.open and (v.electricity_tariff_id in two_part or v.water_tariff_id in two_part)]
        if not candidates:
            return 0
        changed: list[AccountView] = []
        async with self._lock:
            async with self.db.transaction() as s:
                timelines = await self.tariffs.timelines(s)
                for v in candidates:
                    plans = [timelines[t] for t in (v.electricity_tariff_id, v.water_tariff_id) if t in timelines]
                    if not any(p.at(now).definition.two_part or any(x.definition.two_part for x in p.versions) for p in plans):
                        continue
                    a = await s.scalar(select(Account).where(Account.id == v.id, Account.state == "open").with_for_update())
                    if a is None:
                        continue
                    n = await post_due_charges(s, a, plans, today, self.tz, self.rounding)
                    if n:
                        posted += n
                        self.biller.update_level(a, credited=False)
                        changed.append(account_view(a))
        for view in changed:
            self._account_changed(view)
        return posted

    # -- operations (API) --------------------------------------------------------------------------
    async def account(self, room_id: str) -> AccountView | None:
        return await self.accounts.account_of_room(room_id)

    async def room_contact(self, room_id: str) -> Contact | None:
        """The contact of the room's open account (for balance notifications); None without an
        open account or when the account names no phone and no e-mail."""
        view = self.views.get(room_id)
        if view is None or not view.open:
            view = await self.accounts.account_of_room(room_id)
        if view is None or not view.open or (not view.contact.phone and not view.contact.email):
            return None
        return view.contact

    def defaults(self) -> AccountSettings:
        d = self.cfg.defaults
        m = self.minor_units
        return AccountSettings(
            credit_limit_minor=parse_money(d.credit_limit, "prepaid.defaults.credit_limit", m, allow_zero=True),
            thresholds=tuple(parse_thresholds([t.as_input() for t in d.thresholds], m, "prepaid.defaults.thresholds")),
            protected=False, friendly_credit=d.friendly_credit, auto_reconnect=d.auto_reconnect,
            emergency_credit_minor=parse_money(d.emergency_credit, "prepaid.defaults.emergency_credit", m, allow_zero=True),
        )

    async def open_account(self, req: OpenRequest, actor: Actor) -> AccountView:
        async with self._lock:
            view = await self.accounts.open(req, actor)
        self._account_changed(view)
        return view

    async def recharge(self, room_id: str, amount_minor: int, *, channel: str, reference: str, actor: Actor, reason: str = "") -> PostResult:
        result = await self.accounts.recharge(room_id, amount_minor, channel=channel, reference=reference, actor=actor, reason=reason)
        if not result.replayed:
            self._account_changed(result.account)
            self.payment_posted(room_id, result)
        return result

    def payment_posted(self, room_id: str, result: PostResult) -> None:
        """Tell the payment listeners of money a tenant paid in: a recharge here, or a payment
        another part posted (the back office's bill payments)."""
        for listener in list(self._payment_listeners):
            try:
                listener(room_id, result)
            except Exception:
                log.exception("payment listener failed", extra={"room": room_id})

    async def refund(self, room_id: str, amount_minor: int, *, actor: Actor, reason: str, channel: str = "cash", reference: str | None = None) -> PostResult:
        result = await self.accounts.refund(room_id, amount_minor, actor=actor, reason=reason, channel=channel, reference=reference)
        if not result.replayed:
            self._account_changed(result.account)
        return result

    async def reverse(self, entry_id: int, *, actor: Actor, reason: str, reference: str | None = None) -> PostResult:
        result = await self.accounts.reverse(entry_id, actor=actor, reason=reason, reference=reference)
        if not result.replayed:
            self._account_changed(result.account)
        return result

    async def update_settings(self, room_id: str, settings: AccountSettings, *, actor: Actor, reason: str = "") -> AccountView:
        view = await self.accounts.update_settings(room_id, settings, actor=actor, reason=reason)
        self._account_changed(view)
        return view

    async def take_emergency_credit(self, room_id: str, *, actor: Actor, reason: str = "") -> AccountView:
        view = await self.accounts.take_emergency_credit(room_id, actor=actor, reason=reason)
        self._account_changed(view)
        return view

    async def set_dunning(self, account_id: int, level: int, cut: bool, *, actor: Actor, reason: str) -> AccountView | None:
        """A postpaid account's dunning level and cut request (from the back office's overdue bills)."""
        view = await self.accounts.set_dunning(account_id, level, cut, actor=actor, reason=reason)
        if view is not None:
            self._account_changed(view)
        return view

    def account_changed(self, view: AccountView) -> None:
        """Another part moved an account's balance (payments, charges, adjustments): republish
        its room tags and re-evaluate its supply."""
        self._account_changed(view)

    async def assign_tariff(self, tariff_id: str, room_ids: list[str], *, actor: Actor, reason: str = "") -> list[AccountView]:
        views = await self.accounts.assign_tariff(tariff_id, room_ids, actor=actor, reason=reason)
        for v in views:
            self._account_changed(v)
        return views

    async def close_account(
        self, room_id: str, *, actor: Actor, reason: str, final_readings: dict[str, Decimal] | None = None, channel: str = "cash"
    ) -> tuple[AccountView, EntryView | None]:
        async with self._lock:
            view, entry = await self.accounts.close(
                room_id, actor=actor, reason=reason, final_readings=final_readings, channel=channel
            )
        self._account_changed(view)
        return view, entry

    async def ledger(
        self, room_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> tuple[AccountView, list[EntryView]]:
        view = await self.account(room_id)
        if view is None:
            raise PrepaidError(f"room {room_id} has no account", status=404)
        return view, await self.accounts.ledger(view.id, limit=limit, before_id=before_id)

    # -- review holds and meter replacement (see .review) ----------------------------------------------
    async def holds(self) -> list[HoldView]:
        return await self.review.holds()

    async def resolve_hold(
        self,
        meter_id: str,
        action: str,
        *,
        actor: Actor,
        reason: str,
        final_reading: Decimal | None = None,
        new_baseline: Decimal | None = None,
    ) -> AccountView | None:
        return await self.review.resolve_hold(
            meter_id, action, actor=actor, reason=reason, final_reading=final_reading, new_baseline=new_baseline
        )

    async def replace_meter(
        self,
        old_id: str,
        new_id: str,
        *,
        actor: Actor,
        reason: str,
        final_reading: Decimal,
        initial_reading: Decimal = Decimal(0),
        unit_id: int | None = None,
    ) -> AccountView | None:
        return await self.review.replace_meter(
            old_id,
            new_id,
            actor=actor,
            reason=reason,
            final_reading=final_reading,
            initial_reading=initial_reading,
            unit_id=unit_id,
        )


def _own_tasks() -> Any:
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(factory: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(factory(), name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    return spawn


PREPAID: Key[PrepaidEngine] = Key("prepaid", PrepaidEngine)
