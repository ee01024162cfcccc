"""The Modbus poller: feeds every meter's tags from its device profile, over its link.

For each meter (a :class:`DeviceSpec`) the poller registers one tag per profile point
(``<meter>.<point>``) and ``<meter>.comm_ok``, plans the block reads of each poll class, and
schedules them on the meter's link. Per link it publishes ``link:<link>.comm_ok``.

Quality and health:

- a block that times out, answers with an exception or cannot be decoded marks its points
  BAD with reason ``TIMEOUT``, ``DEVICE_EXCEPTION`` or ``BAD_FRAME`` (last value kept);
- timeouts and undecodable answers count as communication failures: after
  ``offline_after_failures`` polls in a row that had one, the device is *offline*:
  ``comm_ok`` False, every point BAD ``COMM_FAILURE``, its polls stop and one small read
  probes it with backoff (``probe_initial_s`` doubling to ``probe_max_s``); the first answer
  brings it back online and its polls resume. An exception response is an answer: the device
  is reachable, only the refused block is bad;
- a link that loses all its connections marks all its devices offline at once; each is
  probed as soon as the link is back.

Scheduling: one queue per link (see :mod:`.link`). The first poll of each class is spread over
``start_spread`` of its interval, so a thousand meters do not fire at once; later polls keep
their phase, and a poll served late (a burst after a link came back) takes the moment it was
served as its new phase, so bursts spread out by themselves.

All points of one poll class of a meter are written to the TagDB in one ``write_many``; the
points of one block share the block's timestamp. Cumulative registers (``energy_*``,
``volume_total``) are one group in every profile, so they come from one request and carry the
same ``source_ts``.

Registry changes are followed with :meth:`ModbusPoller.set_devices` (meters added, replaced,
removed: tags registered or unregistered, polls started or stopped) without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tags import (
    DataType,
    Quality,
    QualityReason,
    TagDB,
    TagMeta,
    TagValue,
    TagWrite,
    utcnow,
)
from tags.names import link_tag, meter_tag

from .client import ModbusConnection, ModbusFailure
from .codec import CodecError
from .config import LinkConfig, ModbusConfig
from .link import Link
from .pace import LATE_FRACTION
from .params import BlockError, BlockSpec
from .plan import Block, plan_device
from .profile import PointSpec, Profile, ProfileLibrary
from .stats import DeviceStats, LinkStats

__all__ = ["DeviceSpec", "Driver", "MODBUS_DRIVER", "MeterRef", "ModbusPoller"]

log = logging.getLogger(__name__)

ONLINE, OFFLINE, UNKNOWN, CONFIG_ERROR = "online", "offline", "unknown", "config_error"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A meter to poll: which profile, on which link, at which unit id (and circuit)."""

    meter_id: str
    profile: str
    link: str
    unit_id: int
    circuit: int | None = None
    room_id: str | None = None
    kind: str | None = None  # electricity | water; checked against the profile's kind
    address: str | None = None  # where a unit id does not do (a DL/T 645 meter's 12 digits)


class Driver:
    """What the poller needs of a wire protocol: its profile type, how a device's points are
    planned into reads, the connection of a link, how a command is sent.

    The poller's scheduling, health, offline probing and tag writes are the same for every
    request/response protocol; a driver supplies the rest. A planned read ("block") has
    ``points`` (point, index into the answer) and ``count`` (its size: the smallest is the probe);
    ``conn.read_block(address, block)`` returns what ``point.decode(answer, index, ratio)`` takes.
    """

    name = "modbus"
    profile_type: type = Profile

    def plan(self, profile: Any, circuit: int | None, link: Any) -> dict[str, list[Any]]:
        return plan_device(profile, circuit, link.max_block_registers, link.max_gap_registers)

    def point_block(self, profile: Any, point: Any, circuit: int | None) -> Any:
        """A read of one point (the supply status read back after a command)."""
        return Block(point.fc, profile.address(point, circuit), point.words, ((point, 0),))

    def connection(self, link: Any) -> Any:
        return ModbusConnection(link)

    def device_address(self, spec: DeviceSpec) -> Any:
        return spec.unit_id

    async def command(self, conn: Any, address: Any, profile: Any, command: Any, circuit: int | None) -> None:
        await conn.write(address, command.fc, profile.address(command, circuit), command.values)

    def check(self, spec: DeviceSpec, profile: Any) -> str | None:
        """A problem of this device's addressing, or None."""
        return None


MODBUS_DRIVER = Driver()


class MeterRef(Protocol):
    """Anything naming a meter (``scada.site.assets.MeterInfo`` is one)."""

    @property
    def id(self) -> str: ...


class _Device:
    def __init__(self, spec: DeviceSpec, profile: Any, link: Link | None, address: Any = None) -> None:
        self.spec = spec
        self.address = address
        self.profile = profile
        self.link = link
        self.blocks: dict[str, list[Block]] = {}
        self.intervals: dict[str, float] = {}
        self.tags: dict[str, str] = {}  # point -> tag name
        # points other points are multiplied by (PT, CT) and their last good values
        self.ratio_points: frozenset[str] = frozenset(
            n for p in (profile.points.values() if profile is not None else ()) for n in p.ratio
        )
        self.ratios: dict[str, float] = {}
        self.comm_tag = meter_tag(spec.meter_id, "comm_ok")
        self.state = UNKNOWN
        self.generation = 0
        self.removed = False
        self.probe_backoff = 0.0
        self.stats = DeviceStats(
            meter_id=spec.meter_id, link=spec.link, unit_id=spec.unit_id, address=spec.address, circuit=spec.circuit,
            profile=spec.profile,
        )

    @property
    def probe_block(self) -> tuple[str, Block]:
        """The smallest read of the most frequent class: what an offline device is asked."""
        cls = min(self.blocks, key=lambda c: self.intervals[c])
        return cls, min(self.blocks[cls], key=lambda b: b.count)


class _PollJob:
    def __init__(self, poller: ModbusPoller, device: _Device, cls: str, due: float) -> None:
        self.poller = poller
        self.device = device
        self.cls = cls
        self.due = due
        self.generation = device.generation

    @property
    def stale(self) -> bool:
        return self.device.removed or self.device.generation != self.generation

    async def run(self, conn: ModbusConnection) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        interval = self.device.intervals[self.cls]
        if self.device.link is not None:
            self.device.link.pace.started(started - self.due, interval, started)
        done = await self.poller._poll(self.device, self.cls, conn)
        if self.stale:
            return  # the device went offline (probing now) or was removed
        if not done:  # the connection broke: poll again once the link is back
            self.poller._schedule(self.device, self.cls, loop.time())
            return
        # keep the phase; but a poll that waited long for its turn (a burst after a link came
        # back) takes the moment it was served as its new phase, so bursts spread out
        base = self.due if started - self.due < LATE_FRACTION * interval else started
        self.poller._schedule(self.device, self.cls, max(base + interval, loop.time()))


class _ProbeJob:
    def __init__(self, poller: ModbusPoller, device: _Device) -> None:
        self.poller = poller
        self.device = device
        self.generation = device.generation

    @property
    def stale(self) -> bool:
        return self.device.removed or self.device.generation != self.generation

    async def run(self, conn: ModbusConnection) -> None:
        await self.poller._probe(self.device, conn)


class ModbusPoller:
    """Polls the meters given by :meth:`set_devices` on the configured links."""

    def __init__(
        self,
        tagdb: TagDB,
        links: Sequence[LinkConfig],
        profiles: ProfileLibrary,
        options: ModbusConfig | None = None,
        *,
        rng: random.Random | None = None,
        driver: Driver = MODBUS_DRIVER,
    ) -> None:
        self.tagdb = tagdb
        self.profiles = profiles
        self.options = options or ModbusConfig()
        self.rng = rng or random.Random()
        self.driver = driver
        self.links: dict[str, Link] = {
            cfg.name: Link(cfg, self.options, self, connection_factory=driver.connection) for cfg in links
        }
        self.devices: dict[str, _Device] = {}
        # plans depend only on (profile, circuit, link limits): 10,000 meters share a handful
        self._plans: dict[tuple[str, int | None, str], dict[str, list[Any]]] = {}
        # profile name -> (the profile, its points' tag metadata): see _point_tags
        self._tag_templates: dict[str, tuple[Any, list[tuple[str, DataType, str, str, float | None]]]] = {}
        for name in self.links:
            tagdb.register(TagMeta(link_tag(name, "comm_ok"), DataType.BOOL, description=f"link {name} connected"))

    async def run(self) -> None:
        """Run every link's scheduler until cancelled."""
        async with asyncio.TaskGroup() as group:
            for link in self.links.values():
                group.create_task(link.run(), name=f"modbus:{link.name}")

    # -- devices ------------------------------------------------------------------------------------
    def set_devices(self, specs: Iterable[DeviceSpec]) -> None:
        """Poll exactly ``specs``: new meters start, removed ones stop, changed ones restart."""
        wanted = {s.meter_id: s for s in specs}
        for meter_id in list(self.devices):
            if meter_id not in wanted or self.devices[meter_id].spec != wanted[meter_id]:
                self._remove(meter_id)
        for spec in wanted.values():
            if spec.meter_id not in self.devices:
                self._add(spec)

    def _add(self, spec: DeviceSpec) -> None:
        found = self.profiles.get(spec.profile)
        profile = found if isinstance(found, self.driver.profile_type) else None
        link = self.links.get(spec.link)
        dev = _Device(spec, profile, link, self.driver.device_address(spec))
        self.devices[spec.meter_id] = dev
        problem = self._config_problem(spec, profile, link)
        if problem is not None:
            dev.state = dev.stats.state = CONFIG_ERROR
            dev.stats.last_error = problem
            self.tagdb.register(TagMeta(dev.comm_tag, DataType.BOOL, meter_id=spec.meter_id, room_id=spec.room_id, point="comm_ok"))
            self.tagdb.write(dev.comm_tag, None, Quality.BAD, QualityReason.CONFIG_ERROR, detail=problem)
            log.error("meter not polled", extra={"meter": spec.meter_id, "error": problem})
            return
        assert profile is not None and link is not None
        key = (profile.name, spec.circuit, link.name)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self.driver.plan(profile, spec.circuit, link.config)
        dev.blocks = plan
        dev.intervals = {cls: self.options.poll_intervals.get(cls, profile.poll_classes[cls]) for cls in dev.blocks}
        meter_id, room_id = spec.meter_id, spec.room_id
        metas = []
        for point_name, data_type, unit, description, deadband in self._point_tags(profile):
            name = meter_tag(meter_id, point_name)
            dev.tags[point_name] = name
            metas.append(TagMeta(name, data_type, unit, description, meter_id, room_id, point_name, deadband))
        metas.append(TagMeta(dev.comm_tag, DataType.BOOL, "", "meter answers", meter_id, room_id, "comm_ok"))
        self.tagdb.register_many(metas)
        link.stats.devices += 1
        now = asyncio.get_running_loop().time()
        if link.stats.state == "down":
            self._go_offline(dev, f"link {link.name} is down: {link.stats.last_error}", probe_in=0.0, writes=[])
            return
        first = {p.poll for p in profile.points.values() if p.name in dev.ratio_points}
        for cls in sorted(dev.intervals, key=lambda c: c not in first):
            # the class holding ratio points (PT, CT) first: the points they scale need them
            delay = 0.0 if cls in first else self.rng.uniform(0, dev.intervals[cls] * self.options.start_spread)
            self._schedule(dev, cls, now + delay)

    def _point_tags(self, profile: Any) -> list[tuple[str, DataType, str, str, float | None]]:
        """Per point of ``profile``: what its tags' metadata take from it (name, type, unit,
        description, deadband), worked out once per profile rather than once per meter."""
        found = self._tag_templates.get(profile.name)
        if found is not None and found[0] is profile:
            return found[1]
        template = [
            (
                point.name,
                DataType.BOOL if point.is_bool else DataType.STRING if getattr(point, "text", False) else DataType.FLOAT,
                point.unit, point.description, point.deadband,
            )
            for point in profile.points.values()
        ]
        self._tag_templates[profile.name] = (profile, template)
        return template

    def _config_problem(self, spec: DeviceSpec, profile: Any, link: Link | None) -> str | None:
        if profile is None:
            other = self.profiles.get(spec.profile)
            if other is not None:
                protocol = getattr(other, "protocol", "modbus")
                return f"device profile {spec.profile!r} is a {protocol} profile; link {spec.link!r} speaks {self.driver.name}"
            return f"unknown device profile {spec.profile!r} (known: {', '.join(self.profiles.names())})"
        if link is None:
            return f"unknown link {spec.link!r} (configured: {', '.join(self.links) or 'none'})"
        if spec.kind is not None and spec.kind != profile.kind:
            return f"a {spec.kind} meter with the {profile.kind} profile {profile.name!r}"
        try:
            profile.check_circuit(spec.circuit)
        except ValueError as exc:
            return str(exc)
        return self.driver.check(spec, profile)

    def _remove(self, meter_id: str) -> None:
        dev = self.devices.pop(meter_id)
        dev.removed = True
        for name in [*dev.tags.values(), dev.comm_tag]:
            self.tagdb.unregister(name)
        if dev.link is not None and dev.state != CONFIG_ERROR:
            dev.link.stats.devices -= 1

    def _schedule(self, dev: _Device, cls: str, due: float) -> None:
        assert dev.link is not None
        dev.link.schedule(_PollJob(self, dev, cls, due), due)

    # -- polling --------------------------------------------------------------------------------------------
    async def _poll(self, dev: _Device, cls: str, conn: ModbusConnection) -> bool:
        """Read every block of ``cls`` and publish. False when the connection broke (the link's
        problem, not the device's: nothing is published)."""
        assert dev.link is not None
        link = dev.link
        unit = dev.address
        blocks = dev.blocks[cls]
        generation = dev.generation
        writes: list[TagWrite] = []
        failure: ModbusFailure | None = None
        answers: list[tuple[Block, list[int]]] = []
        for i, block in enumerate(blocks):
            try:
                registers = await link.call(
                    conn, dev.stats, lambda c, b=block: c.read_block(unit, b)  # type: ignore[misc]
                )
            except ModbusFailure as exc:
                if not conn.connected and exc.reason is QualityReason.COMM_FAILURE:
                    return False
                if exc.device_answered:
                    writes += self._bad(dev, block.points, exc.reason, exc.detail)
                    continue
                failure = exc
                for rest in blocks[i:]:
                    writes += self._bad(dev, rest.points, exc.reason, exc.detail)
                break
            answers.append((block, registers))
        if dev.ratio_points:  # ratios first: the points they multiply may come in an earlier block
            for block, registers in answers:
                self._take_ratios(dev, block, registers)
        for block, registers in answers:
            writes += self._decode(dev, block, registers)
        dev.stats.polls += 1
        dev.stats.last_poll_at = utcnow()
        if failure is not None and dev.generation != generation:
            # the device went offline while this poll was on the wire (another connection
            # saw it first): its tags already say so
            return True
        self._account(dev, failure, writes)
        return True

    async def _probe(self, dev: _Device, conn: ModbusConnection) -> None:
        assert dev.link is not None
        _cls, block = dev.probe_block
        writes: list[TagWrite] = []
        failure: ModbusFailure | None = None
        try:
            registers = await dev.link.call(
                conn, dev.stats, lambda c: c.read_block(dev.address, block)
            )
            self._take_ratios(dev, block, registers)
            writes = self._decode(dev, block, registers)
        except ModbusFailure as exc:
            if not conn.connected and exc.reason is QualityReason.COMM_FAILURE:
                dev.link.schedule(_ProbeJob(self, dev), asyncio.get_running_loop().time())
                return
            if exc.device_answered:
                writes = self._bad(dev, block.points, exc.reason, exc.detail)
            else:
                failure = exc
        if failure is None:
            self._account(dev, None, writes)
            return
        dev.probe_backoff = min(max(dev.probe_backoff * 2, self.options.probe_initial_s), self.options.probe_max_s)
        dev.stats.next_probe_s = dev.probe_backoff
        dev.stats.consecutive_failures += 1
        dev.link.schedule(_ProbeJob(self, dev), asyncio.get_running_loop().time() + dev.probe_backoff)

    def _take_ratios(self, dev: _Device, block: Any, registers: Any) -> None:
        for point, index in block.points:
            if point.name in dev.ratio_points:
                try:
                    value = point.decode(registers, index)
                except CodecError:
                    dev.ratios.pop(point.name, None)
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    dev.ratios[point.name] = float(value)
                else:
                    dev.ratios.pop(point.name, None)

    def _decode(self, dev: _Device, block: Any, registers: Any) -> list[TagWrite]:
        ts = utcnow()
        writes = []
        for point, index in block.points:
            name = dev.tags[point.name]
            ratio = 1.0
            if point.ratio:
                missing = [r for r in point.ratio if r not in dev.ratios]
                if missing:
                    detail = f"{point.name}: ratio {', '.join(missing)} not known (unreadable or not positive)"
                    writes.append(TagWrite(name, None, Quality.BAD, QualityReason.CONFIG_ERROR, detail, ts))
                    continue
                for r in point.ratio:
                    ratio *= dev.ratios[r]
            try:
                value = point.decode(registers, index, ratio)
            except CodecError as exc:
                writes.append(TagWrite(name, None, Quality.BAD, QualityReason.BAD_FRAME, str(exc), ts))
                continue
            writes.append(TagWrite(name, value, Quality.GOOD, QualityReason.NONE, "", ts))
        return writes

    def _bad(self, dev: _Device, points: Iterable[tuple[PointSpec, int]], reason: QualityReason, detail: str) -> list[TagWrite]:
        ts = utcnow()
        return [TagWrite(dev.tags[p.name], None, Quality.BAD, reason, detail, ts) for p, _ in points]

    def _account(self, dev: _Device, failure: ModbusFailure | None, writes: list[TagWrite]) -> None:
        """Update the device's health from one poll's outcome and publish, in one batch."""
        if dev.removed:  # removed from the registry while its poll was on the wire
            return
        stats = dev.stats
        if failure is None:
            stats.consecutive_failures = 0
            if dev.state != ONLINE:
                self._go_online(dev, writes)
        else:
            stats.consecutive_failures += 1
            assert dev.link is not None
            if dev.state == OFFLINE:
                # its points already say comm_failure; only what did arrive is news
                writes = [w for w in writes if w.quality is Quality.GOOD]
            elif stats.consecutive_failures >= dev.link.config.offline_after_failures:
                self._go_offline(dev, failure.detail, probe_in=self.options.probe_initial_s, writes=writes)
                return
        self.tagdb.write_many(writes)

    def _go_online(self, dev: _Device, writes: list[TagWrite]) -> None:
        was = dev.state
        dev.state = dev.stats.state = ONLINE
        dev.stats.next_probe_s = None
        dev.probe_backoff = 0.0
        writes.append(TagWrite(dev.comm_tag, True))
        if was == OFFLINE:
            log.info("device back online", extra={"meter": dev.spec.meter_id, "link": dev.spec.link})
            dev.generation += 1  # drop the probe; poll every class again, soon
            now = asyncio.get_running_loop().time()
            for cls, interval in dev.intervals.items():
                self._schedule(dev, cls, now + self.rng.uniform(0, min(interval, 1.0) * self.options.start_spread))

    def _go_offline(self, dev: _Device, detail: str, *, probe_in: float, writes: list[TagWrite]) -> None:
        assert dev.link is not None
        was = dev.state
        dev.state = dev.stats.state = OFFLINE
        dev.generation += 1  # its polls stop
        dev.probe_backoff = probe_in
        dev.stats.next_probe_s = probe_in
        if was != OFFLINE:
            log.warning("device offline", extra={"meter": dev.spec.meter_id, "link": dev.spec.link, "error": detail})
        ts = utcnow()
        batch = [w for w in writes if w.quality is Quality.GOOD]  # what did arrive still counts
        failed = {w.name for w in batch}
        batch += [
            TagWrite(name, None, Quality.BAD, QualityReason.COMM_FAILURE, detail, ts)
            for name in dev.tags.values() if name not in failed
        ]
        batch.append(TagWrite(dev.comm_tag, False, source_ts=ts))
        self.tagdb.write_many(batch)
        dev.link.schedule(_ProbeJob(self, dev), asyncio.get_running_loop().time() + probe_in)

    # -- link events (LinkObserver) -----------------------------------------------------------------------
    def link_up(self, link: Link) -> None:
        self.tagdb.write(link_tag(link.name, "comm_ok"), True)

    def link_down(self, link: Link, detail: str) -> None:
        self.tagdb.write(link_tag(link.name, "comm_ok"), False)
        for dev in self.devices.values():
            if dev.link is link and dev.state != CONFIG_ERROR:
                self._go_offline(dev, f"link {link.name} down: {detail}", probe_in=0.0, writes=[])

    # -- on demand: reads and supply commands ------------------------------------------------------------
    def _device(self, meter_id: str) -> _Device:
        dev = self.devices.get(meter_id)
        if dev is None:
            raise LookupError(f"meter {meter_id!r} is not polled (not active, or not on a Modbus link)")
        if dev.state == CONFIG_ERROR:
            raise LookupError(f"meter {meter_id!r} is not polled: {dev.stats.last_error}")
        return dev

    async def poll_now(self, meter_id: str, *, bulk: bool = False) -> dict[str, TagValue]:
        """Poll every class of one meter now (before any due poll; ``bulk``: after them, as
        batch work does); its tags afterwards."""
        dev = self._device(meter_id)
        assert dev.link is not None

        async def op(conn: ModbusConnection) -> None:
            for cls in dev.blocks:
                if not await self._poll(dev, cls, conn):
                    raise ModbusFailure(QualityReason.COMM_FAILURE, f"connection to {dev.link.stats.endpoint} lost")  # type: ignore[union-attr]

        await dev.link.urgent(op, bulk=bulk)
        return {point: self.tagdb.read(name) for point, name in dev.tags.items()} | {"comm_ok": self.tagdb.read(dev.comm_tag)}

    def supports_supply(self, meter: MeterRef) -> bool:
        dev = self.devices.get(meter.id)
        return dev is not None and dev.profile is not None and bool(dev.profile.commands) and dev.state != CONFIG_ERROR

    async def set_supply(self, meter: MeterRef, on: bool, *, bulk: bool = False) -> None:
        """Write the profile's connect (``on``) or disconnect command. Raises
        :class:`ModbusFailure` when the meter does not take it, LookupError when it has none.
        ``bulk``: a batch job's command, sent when no poll is due on the link."""
        dev = self._device(meter.id)
        assert dev.profile is not None and dev.link is not None
        command = dev.profile.commands.get("connect" if on else "disconnect")
        if command is None:
            raise LookupError(f"meter {meter.id}: profile {dev.profile.name} has no supply control")
        link, unit, profile, circuit, driver = dev.link, dev.address, dev.profile, dev.spec.circuit, self.driver

        async def op(conn: ModbusConnection) -> None:
            await link.call(conn, dev.stats, lambda c: driver.command(c, unit, profile, command, circuit))

        await link.urgent(op, bulk=bulk)

    async def read_supply(self, meter: MeterRef, *, bulk: bool = False) -> bool:
        """Read the status point confirming supply commands now; publishes it too."""
        dev = self._device(meter.id)
        assert dev.profile is not None and dev.link is not None
        name = dev.profile.supply_point
        if name is None:
            raise LookupError(f"meter {meter.id}: profile {dev.profile.name} has no supply control")
        point = dev.profile.points[name]
        block = self.driver.point_block(dev.profile, point, dev.spec.circuit)
        link, unit = dev.link, dev.address

        async def op(conn: ModbusConnection) -> Any:
            return await link.call(conn, dev.stats, lambda c: c.read_block(unit, block))

        registers = await link.urgent(op, bulk=bulk)
        try:
            value = point.decode(registers, 0)
        except CodecError as exc:
            raise ModbusFailure(QualityReason.BAD_FRAME, str(exc)) from None
        if not dev.removed:
            self.tagdb.write(dev.tags[name], value)
        return bool(value)

    # -- parameter blocks (see .params) ----------------------------------------------------------------
    def block_spec(self, meter: MeterRef, block: str) -> BlockSpec | None:
        """The meter's parameter block ``block`` from its profile, or None."""
        dev = self.devices.get(meter.id)
        if dev is None or dev.profile is None or dev.state == CONFIG_ERROR:
            return None
        return dev.profile.parameters.get(block)

    def _block(self, meter: MeterRef, block: str) -> tuple[_Device, BlockSpec]:
        dev = self._device(meter.id)
        assert dev.profile is not None
        spec = dev.profile.parameters.get(block)
        if spec is None:
            raise LookupError(f"meter {meter.id}: profile {dev.profile.name} has no {block} block")
        return dev, spec

    async def write_block(self, meter: MeterRef, block: str, value: object, *, bulk: bool = False) -> None:
        """Write a parameter block (fc 16; fc 6 for a one-register value). Raises
        :class:`BlockError` for a value the block cannot hold, :class:`ModbusFailure` when the
        meter does not take it."""
        dev, spec = self._block(meter, block)
        registers = spec.encode(value)  # type: ignore[arg-type]
        link, unit = dev.link, dev.spec.unit_id
        assert link is not None
        fc = 6 if len(registers) == 1 else 16
        values = registers

        async def op(conn: ModbusConnection) -> None:
            await link.call(conn, dev.stats, lambda c: c.write(unit, fc, spec.address, values))

        await link.urgent(op, bulk=bulk)

    async def read_block(self, meter: MeterRef, block: str, *, bulk: bool = False) -> object:
        """Read a parameter block back (fc 3) and decode it."""
        dev, spec = self._block(meter, block)
        link, unit = dev.link, dev.spec.unit_id
        assert link is not None

        async def op(conn: ModbusConnection) -> list[int]:
            return await link.call(conn, dev.stats, lambda c: c.read(unit, 3, spec.address, spec.words))

        registers = await link.urgent(op, bulk=bulk)
        try:
            return spec.decode(registers)
        except BlockError as exc:
            raise ModbusFailure(QualityReason.BAD_FRAME, str(exc)) from None

    def link_of(self, meter_id: str) -> str | None:
        """The link a polled meter is on."""
        dev = self.devices.get(meter_id)
        return dev.spec.link if dev is not None else None

    def link_backlog(self, link: str) -> int:
        """Polls and operations due on ``link`` and waiting for a connection now."""
        lk = self.links.get(link)
        return lk.queued() if lk is not None else 0

    # -- statistics ---------------------------------------------------------------------------------------
    def link_stats(self) -> list[LinkStats]:
        """A snapshot per link: state, requests, errors by kind, latency, last error."""
        out = []
        for link in self.links.values():
            snap = link.stats.snapshot()
            snap.queued = link.queued()
            snap.devices_offline = sum(1 for d in self.devices.values() if d.link is link and d.state == OFFLINE)
            out.append(snap)
        return out

    def device_stats(self, meter_id: str | None = None) -> list[DeviceStats]:
        """A snapshot per device (or of one): state, requests, errors, latency, last error."""
        if meter_id is not None:
            dev = self.devices.get(meter_id)
            return [dev.stats.snapshot()] if dev is not None else []
        return [d.stats.snapshot() for d in self.devices.values()]
