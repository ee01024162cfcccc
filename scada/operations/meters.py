"""Meter-side settings: the time-of-use table check, clock drift, and what was last read back.

:class:`MeterSettings` checks that every meter carrying a time-of-use tariff keeps that
tariff's switch table: when the meter (re)connects (its ``comm_ok`` turns True) and every
``tou_check_every_s``, it reads the meter's table and compares it with the schedule of the
tariff of the room's open account (today's version and season). The daily round and "today" are
the operations' clock's (the one jobs, reminders and summaries run on), so a simulation or a test
that drives that clock brings the check due. A meter whose table differs
gets the condition tag ``<meter>.tou_mismatch`` True — the alarm engine raises a
``tou_mismatch`` alarm from it — since billing from the meter's own period registers would
otherwise bill by the wrong periods; a matching table (or a ``tou_download`` confirmed by
read-back) sets it False. The reads are paced like a job's items (one at a time per link,
after the link's due polls).

It also keeps, per meter, the TOU table and the clock drift as last read, for the HMI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from protocols.modbus.params import ClockBlock, TouTableBlock, ValueBlock, normalise_tou
from scada.alarms.clock import Clock, SystemClock
from scada.commands.service import ParameterDriver
from scada.core.runtime import database_locked
from scada.site.assets import AssetRegistry, AssetSnapshot, MeterInfo, RegistryDiff
from tags import DataType, TagChange, TagDB, TagMeta, names
from tags.names import meter_tag
from tags.subscription import by_points

__all__ = ["MeterSettings", "TouCheck"]

log = logging.getLogger(__name__)
LOCKED_RETRY_S = 1.0


@dataclass(frozen=True)
class TouCheck:
    meter_id: str
    mismatch: bool | None  # None: nothing to compare with (no TOU tariff), or not readable
    detail: str
    table: dict[str, Any] | None = None
    expected: dict[str, Any] | None = None


class MeterSettings:
    def __init__(
        self,
        assets: AssetRegistry,
        tagdb: TagDB,
        driver: ParameterDriver,
        *,
        tz: dt.tzinfo,
        expected_table: Callable[[MeterInfo, TouTableBlock, dt.date], Awaitable[dict[str, list[tuple[str, str]]] | None]],
        link_backlog: Callable[[str], int] = lambda _link: 0,
        link_of: Callable[[str], str | None] = lambda _meter: None,
        max_defer_s: float = 2.0,
        every_s: float = 86400.0,
        clock: Clock | None = None,
    ) -> None:
        self.assets = assets
        self.tagdb = tagdb
        self.driver = driver
        self.tz = tz
        self.expected_table = expected_table
        self.link_backlog = link_backlog
        self.link_of = link_of
        self.max_defer_s = max_defer_s
        self.every_s = every_s
        self.clock: Clock = clock or SystemClock()
        self.tables: dict[str, tuple[dict[str, Any], dt.datetime]] = {}  # meter -> table as read, when
        self.drifts: dict[str, tuple[float, dt.datetime]] = {}  # meter -> clock drift (s), when
        self.checks: dict[str, TouCheck] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.checked = 0

    # -- blocks of a meter -----------------------------------------------------------------------
    def tou_block(self, meter: MeterInfo) -> TouTableBlock | None:
        return next((b for b in self._blocks(meter) if isinstance(b, TouTableBlock)), None)

    def clock_block(self, meter: MeterInfo) -> ClockBlock | None:
        return next((b for b in self._blocks(meter) if isinstance(b, ClockBlock)), None)

    def value_block(self, meter: MeterInfo, name: str) -> ValueBlock | None:
        spec = self.driver.block_spec(meter, name)
        return spec if isinstance(spec, ValueBlock) else None

    def _blocks(self, meter: MeterInfo) -> list[Any]:
        out = []
        for name in ("tou_table", "clock"):
            spec = self.driver.block_spec(meter, name)
            if spec is not None:
                out.append(spec)
        return out

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._register(self.assets.snapshot)
        self._unsubscribe = self.assets.subscribe(self._registry_changed)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _register(self, snapshot: AssetSnapshot) -> None:
        for meter in snapshot.active_meters:
            name = meter_tag(meter.id, "tou_mismatch")
            if name in self.tagdb or self.tou_block(meter) is None:
                continue
            self.tagdb.register(TagMeta(name, DataType.BOOL, description="the meter's time-of-use table differs from its tariff",
                                        meter_id=meter.id, room_id=meter.room_id, point="tou_mismatch"))

    def _registry_changed(self, snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
        for meter_id in diff.meters_removed:
            self.tagdb.unregister(meter_tag(meter_id, "tou_mismatch"))
        self._register(snapshot)

    # -- checks ------------------------------------------------------------------------------------
    def schedule_check(self, meter_id: str) -> None:
        if meter_id not in self._queued:
            self._queued.add(meter_id)
            self._queue.put_nowait(meter_id)

    def pending(self) -> int:
        """Meters queued for a check and not taken yet."""
        return self._queue.qsize()

    def candidates(self) -> list[str]:
        return [m.id for m in self.assets.snapshot.active_meters if m.kind == "electricity" and self.tou_block(m) is not None]

    async def run(self) -> None:
        """Check the meters queued (on connect, after a failed download) and all of them daily."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_connects(), name="operations:tou-connects")
            group.create_task(self._daily(), name="operations:tou-daily")
            while True:
                meter_id = await self._queue.get()
                self._queued.discard(meter_id)
                meter = self.assets.snapshot.meters.get(meter_id)
                if meter is None or not meter.active:
                    continue
                await self._paced()
                try:
                    await self.check(meter)
                except Exception as exc:
                    if not database_locked(exc):
                        log.exception("time-of-use check failed", extra={"meter": meter_id})
                        continue
                    # an overloaded SQLite server (another writer held the lock past the busy
                    # timeout): the meter waits behind the others for another try, not a day
                    log.warning("time-of-use check met a locked database; the meter is checked again", extra={"meter": meter_id})
                    self.schedule_check(meter_id)
                    await asyncio.sleep(LOCKED_RETRY_S)  # never a hot loop, whatever the lock answers

    async def _paced(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_defer_s
        if loop.time() >= deadline:
            return
        links = self._links()  # once: it walks every meter of the site
        while loop.time() < deadline and any(self.link_backlog(link) > 0 for link in links):
            await asyncio.sleep(0.01)

    def _links(self) -> set[str]:
        return {m.link for m in self.assets.snapshot.active_meters}

    async def _daily(self) -> None:
        """Queue every TOU meter at the start, then every ``every_s`` of the clock."""
        due = self.clock.now()
        while True:
            timer = self.clock.timer(due)
            try:
                await timer
            finally:
                timer.cancel()
            for meter_id in self.candidates():
                self.schedule_check(meter_id)
            # from now, not from when it was due: a clock that jumped days runs one round, not one a day
            due = max(due, self.clock.now()) + dt.timedelta(seconds=self.every_s)

    def _today(self) -> dt.date:
        return self.clock.now().astimezone(self.tz).date()

    async def _watch_connects(self) -> None:
        sub = self.tagdb.subscribe(by_points(("comm_ok",)), maxsize=10_000, name="operations:tou")
        try:
            while True:
                batch: list[TagChange] = await sub.get_batch(1000)
                for change in batch:
                    new = change.new
                    was = change.old.value if change.old is not None else None
                    if new.value is True and was is not True:
                        try:
                            tag = names.parse(change.name)
                        except ValueError:
                            continue
                        if tag.kind != "meter":  # a link's comm_ok: its meters report their own
                            continue
                        meter_id = tag.owner
                        meter = self.assets.snapshot.meters.get(meter_id)
                        if meter is not None and meter.kind == "electricity" and self.tou_block(meter) is not None:
                            self.schedule_check(meter_id)
        except StopAsyncIteration:
            return
        finally:
            sub.close()

    async def check(self, meter: MeterInfo) -> TouCheck:
        """Read the meter's table and compare it with its tariff's; sets ``tou_mismatch``."""
        block = self.tou_block(meter)
        if block is None:
            return TouCheck(meter.id, None, "the meter keeps no time-of-use table")
        expected = await self.expected_table(meter, block, self._today())
        try:
            table = await self.driver.read_block(meter, block.name, bulk=True)
        except Exception as exc:
            result = TouCheck(meter.id, None, f"not readable: {exc}")
            self.checks[meter.id] = result
            return result
        assert isinstance(table, dict)
        self.tables[meter.id] = (block.as_json(table), dt.datetime.now(dt.UTC))
        self.checked += 1
        if expected is None:
            result = TouCheck(meter.id, None, "no time-of-use tariff to compare with", block.as_json(table))
            self._set(meter, False)
        else:
            mismatch = not block.same(expected, table)
            differing = [d for d in block.day_types if normalise_tou(expected.get(d, [])) != normalise_tou(table.get(d, []))]
            detail = f"differs from the tariff on {', '.join(differing)}" if mismatch else "matches the tariff"
            result = TouCheck(meter.id, mismatch, detail, block.as_json(table), block.as_json(expected))
            self._set(meter, mismatch)
            if mismatch:
                log.warning("time-of-use table differs from the tariff", extra={"meter": meter.id, "error": detail})
        self.checks[meter.id] = result
        return result

    def _set(self, meter: MeterInfo, mismatch: bool) -> None:
        name = meter_tag(meter.id, "tou_mismatch")
        if name in self.tagdb:
            self.tagdb.write(name, mismatch)

    async def tou_written(self, meter: MeterInfo, table: dict[str, list[tuple[str, str]]]) -> None:
        """A download confirmed by read-back: the meter holds ``table``."""
        block = self.tou_block(meter)
        if block is None:
            return
        self.tables[meter.id] = (block.as_json(table), dt.datetime.now(dt.UTC))
        expected = await self.expected_table(meter, block, self._today())
        mismatch = expected is not None and not block.same(expected, table)
        self._set(meter, mismatch)
        self.checks[meter.id] = TouCheck(meter.id, mismatch, "written (confirmed by read-back)", block.as_json(table),
                                         block.as_json(expected) if expected is not None else None)

    # -- clocks --------------------------------------------------------------------------------------
    async def read_drift(self, meter: MeterInfo) -> float:
        """Seconds the meter's clock is ahead of the site's time (negative: behind)."""
        block = self.clock_block(meter)
        if block is None:
            raise LookupError(f"meter {meter.id} has no clock")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        value = await self.driver.read_block(meter, block.name, bulk=True)
        assert isinstance(value, dt.datetime)
        now = dt.datetime.now(self.tz).replace(tzinfo=None)
        # the answer left the meter about half-way through the request
        drift = round((value - now).total_seconds() + (loop.time() - t0) / 2)
        self.drifts[meter.id] = (float(drift), dt.datetime.now(dt.UTC))
        return float(drift)

    def clock_set(self, meter: MeterInfo) -> None:
        self.drifts[meter.id] = (0.0, dt.datetime.now(dt.UTC))

    # -- what the HMI shows ----------------------------------------------------------------------------
    async def settings(self, meter: MeterInfo, *, read: bool = False) -> dict[str, Any]:
        """The meter's settings as last read back (``read``: read them now)."""
        out: dict[str, Any] = {"meter": meter.id, "tou_table": None, "tou": None, "clock": None, "parameters": {}}
        block = self.tou_block(meter)
        if block is not None:
            if read:
                check = await self.check(meter)
            else:
                check = self.checks.get(meter.id) or TouCheck(meter.id, None, "not read yet")
            table = self.tables.get(meter.id)
            out["tou_table"] = table[0] if table else None
            out["tou"] = {"mismatch": check.mismatch, "detail": check.detail, "expected": check.expected,
                          "read_at": table[1].isoformat() if table else None, "day_types": list(block.day_types)}
        if self.clock_block(meter) is not None:
            if read:
                try:
                    await self.read_drift(meter)
                except Exception as exc:
                    out["clock"] = {"error": str(exc)}
            drift = self.drifts.get(meter.id)
            if out["clock"] is None:
                out["clock"] = {"drift_s": drift[0], "read_at": drift[1].isoformat()} if drift else {"drift_s": None, "read_at": None}
        for name in ("load_limit", "price", "balance"):
            spec = self.value_block(meter, name)
            if spec is None:
                continue
            value = None
            if read:
                try:
                    value = spec.as_json(await self.driver.read_block(meter, name))  # type: ignore[arg-type]
                except Exception as exc:
                    value = {"error": str(exc)}
            out["parameters"][name] = {"value": value, "unit": spec.unit}
        return out
