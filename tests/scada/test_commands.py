"""The command path against the simulator over real TCP, on SQLite and PostgreSQL: confirmed
writes, meters that do not follow, denial, supersession, audit, restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from protocols.modbus.config import LinkConfig, ModbusConfig
from protocols.modbus.poller import ModbusPoller
from protocols.modbus.profile import ProfileLibrary
from protocols.modbus.sim import Simulator
from protocols.modbus.sim.site import SimLink
from scada.commands.config import CommandsConfig
from scada.commands.models import CommandRow
from scada.commands.service import (
    CommandKind,
    CommandRequest,
    CommandResult,
    CommandService,
    CommandTimeout,
)
from scada.core.runtime import TaskOwner
from scada.db import Database
from scada.polling.component import device_specs
from scada.simulator.component import _meter_specs
from scada.site.assets import AssetRegistry
from scada.site.importer import import_site_file
from scada.users.audit import Actor, AuditLog
from scada.users.auth import Role, UserInfo
from tags import TagDB, utcnow

from ..simulation import Control

SITE = """
[site]
id = "s"
name = "S"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F1"
[[rooms]]
id = "R1"
floor = "F"
name = "R1"
[[rooms]]
id = "R2"
floor = "F"
name = "R2"
[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
[[meters]]
id = "W1"
kind = "water"
room = "R1"
profile = "water-valve"
link = "gw"
unit_id = 2
[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 3
"""

OPERATOR = UserInfo(1, "olga", Role.OPERATOR, True, "en", None)
CASHIER = UserInfo(2, "carl", Role.CASHIER, True, "en", None)
CONFIG = CommandsConfig(retries=1, confirm_timeout_s=0.3, confirm_interval_s=0.05, backoff_s=0.0)


@dataclass
class Rig:
    db: Database
    assets: AssetRegistry
    tagdb: TagDB
    poller: ModbusPoller
    sim: Simulator
    control: Control
    service: CommandService
    results: list[CommandResult]

    def new_service(self, owner: TaskOwner) -> CommandService:
        return CommandService(self.db, AuditLog(self.db), self.assets, self.tagdb, self.poller, CONFIG, owner)


@contextlib.asynccontextmanager
async def rig(db: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    (tmp_path / "site.toml").write_text(SITE)
    await import_site_file(db, tmp_path / "site.toml", Actor("test", "cli"), known_links={"gw"})
    assets = AssetRegistry(db)
    await assets.load()
    profiles = ProfileLibrary.load()
    sim = Simulator(profiles, [SimLink("gw")], control_port=0, speed=0)
    sim.set_meters(_meter_specs(assets.snapshot, {"gw"}))
    await sim.start()
    tagdb = TagDB()
    link = LinkConfig(name="gw", host="127.0.0.1", port=sim.ports["gw"], timeout_s=0.2, retries=0)
    poller = ModbusPoller(tagdb, [link], profiles, ModbusConfig(poll_intervals={"fast": 3600, "energy": 3600, "volume": 3600}, start_spread=1.0))
    poller.set_devices(device_specs(assets.snapshot))
    poll_task = asyncio.create_task(poller.run(), name="test-poller")
    owner = TaskOwner("commands")
    results: list[CommandResult] = []
    try:
        while not poller.links["gw"].is_up:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            assert sim.control_url is not None
            service = CommandService(db, AuditLog(db), assets, tagdb, poller, CONFIG, owner)
            await service.start()
            service.subscribe(results.append)
            try:
                yield Rig(db, assets, tagdb, poller, sim, Control.of(http, sim), service, results)
            finally:
                await service.stop()
                await owner.cancel_all()
    finally:
        poll_task.cancel()
        await asyncio.gather(poll_task, return_exceptions=True)
        await sim.stop()


def request(meter: str, kind: CommandKind, user: UserInfo | None = OPERATOR, reason: str = "tenant moved out") -> CommandRequest:
    actor = user.actor("api") if user is not None else Actor("anonymous", "api")
    return CommandRequest(meter, kind, actor, reason, user)


async def audit_of(db: Database, meter: str) -> list[tuple[str, str, str, str]]:
    entries = await AuditLog(db).query(target_type="meter", target_id=meter)
    return [(e.action, e.actor, e.reason, e.outcome) for e in reversed(entries) if e.action.startswith(("relay.", "valve."))]


async def test_confirmed_disconnect_stops_consumption_and_is_audited(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        await r.control.load("E1", kw=2.0)
        off = await r.service.execute(request("E1", CommandKind.DISCONNECT))
        assert (off.status, off.attempts, off.meter_id, off.kind) == ("confirmed", 1, "E1", CommandKind.DISCONNECT)
        assert off.detail == "relay open (confirmed by read-back)"
        assert r.tagdb.read("E1.relay_closed").value is False and r.tagdb.read("E1.relay_fault").value is False
        e0 = (await r.poller.poll_now("E1"))["energy_total"].value
        await r.control.advance(3600)
        assert (await r.poller.poll_now("E1"))["energy_total"].value == e0  # no growth while open
        on = await r.service.execute(request("E1", CommandKind.CONNECT, reason="recharged"))
        assert on.status == "confirmed" and (await r.control.meter("E1"))["relay_closed"] is True
        await r.control.advance(1800)
        assert (await r.poller.poll_now("E1"))["energy_total"].value == pytest.approx(e0 + 1.0, abs=0.011)
        assert await audit_of(db, "E1") == [
            ("relay.disconnect", "olga", "tenant moved out", "queued"),
            ("relay.disconnect", "olga", "tenant moved out", "confirmed"),
            ("relay.connect", "olga", "recharged", "queued"),
            ("relay.connect", "olga", "recharged", "confirmed"),
        ]
        assert [res.id for res in r.results] == [off.id, on.id]
        history = await r.service.history("E1")
        assert [(h.id, h.status) for h in history] == [(on.id, "confirmed"), (off.id, "confirmed")]


async def test_a_command_the_meter_does_not_follow_fails_and_sets_relay_fault(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        await r.control.relay("E1", stuck=True)  # takes the write, the relay does not move
        result = await r.service.execute(request("E1", CommandKind.DISCONNECT))
        assert result.status == "failed" and result.attempts == 2  # the first try and one retry
        assert result.detail == "not followed: the meter reports relay closed 0.3 s after the write (after 2 attempts)"
        assert r.tagdb.read("E1.relay_fault").value is True
        assert (await r.control.stats())["gw"]["by_unit_fc"]["1/6"] == 2
        assert (await audit_of(db, "E1"))[-1] == ("relay.disconnect", "olga", "tenant moved out", "failed")

        # the condition survives a restart of the service
        owner = TaskOwner("commands-2")
        r.tagdb.unregister("E1.relay_fault")
        again = r.new_service(owner)
        await again.start()
        assert r.tagdb.read("E1.relay_fault").value is True
        await again.stop()

        await r.control.relay("E1", stuck=False)
        fixed = await r.service.execute(request("E1", CommandKind.DISCONNECT, reason="retry after repair"))
        assert fixed.status == "confirmed" and r.tagdb.read("E1.relay_fault").value is False


async def test_denied_without_relay_control(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        denied = await r.service.execute(request("E1", CommandKind.DISCONNECT, user=CASHIER))
        assert denied.status == "denied" and "lacks the relay_control permission" in denied.detail
        nobody = await r.service.execute(request("E1", CommandKind.DISCONNECT, user=None))
        assert nobody.status == "denied" and "no user" in nobody.detail
        assert "1/6" not in (await r.control.stats())["gw"]["by_unit_fc"]  # nothing reached the meter
        assert (await r.control.meter("E1"))["relay_closed"] is True
        assert await audit_of(db, "E1") == [
            ("relay.disconnect", "carl", "tenant moved out", "denied"),
            ("relay.disconnect", "anonymous", "tenant moved out", "denied"),
        ]
        # the prepaid engine acts on its own authority
        engine = CommandRequest("E1", CommandKind.DISCONNECT, Actor.system("prepaid"), "credit exhausted")
        assert (await r.service.execute(engine)).status == "confirmed"
        assert [h.status for h in await r.service.history("E1")] == ["confirmed", "denied", "denied"]


async def test_unreachable_meter_fails_without_claiming_a_relay_fault(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        await r.control.fault("E2", kind="timeout")
        result = await r.service.execute(request("E2", CommandKind.DISCONNECT))
        assert result.status == "failed"
        assert result.detail == "write failed: no answer within 0.2 s (after 2 attempts)"
        assert r.tagdb.read("E2.relay_fault").value is False


async def test_newer_command_supersedes_a_queued_one(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        await r.control.fault("E1", kind="slow", delay_ms=100)
        first = asyncio.create_task(r.service.execute(request("E1", CommandKind.DISCONNECT, reason="one")))
        await asyncio.sleep(0.05)  # the first is on the wire now
        second = asyncio.create_task(r.service.execute(request("E1", CommandKind.CONNECT, reason="two")))
        await asyncio.sleep(0.01)
        third = asyncio.create_task(r.service.execute(request("E1", CommandKind.DISCONNECT, reason="three")))
        one, two, three = await asyncio.gather(first, second, third)
        assert (one.status, two.status, three.status) == ("confirmed", "superseded", "confirmed")
        assert two.detail == f"superseded by command {three.id} (disconnect)"
        assert (await r.control.meter("E1"))["relay_closed"] is False
        assert (await r.control.stats())["gw"]["by_unit_fc"]["1/6"] == 2  # the superseded one never ran
        statuses = {o for (_a, _u, reason, o) in await audit_of(db, "E1") if reason == "two"}
        assert statuses == {"queued", "superseded"}


async def test_valve_commands_and_bad_requests(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        close = await r.service.execute(request("W1", CommandKind.DISCONNECT, reason="leak reported"))
        assert close.status == "confirmed" and close.detail == "valve closed (confirmed by read-back)"
        assert r.tagdb.read("W1.valve_open").value is False
        assert (await audit_of(db, "W1"))[-1] == ("valve.disconnect", "olga", "leak reported", "confirmed")
        unknown = await r.service.execute(request("NOPE", CommandKind.CONNECT))
        assert (unknown.status, unknown.detail) == ("failed", "no meter 'NOPE'")
        with pytest.raises(ValueError, match="reason: a supply command needs a reason"):
            await r.service.execute(request("E1", CommandKind.CONNECT, reason=" "))
        await r.control.fault("E1", kind="slow", delay_ms=150)
        with pytest.raises(CommandTimeout, match="still running"):
            await r.service.execute(request("E1", CommandKind.DISCONNECT), timeout=0.05)
        # the command went on and finished without the caller
        await asyncio.sleep(0.5)
        assert (await r.service.history("E1", limit=1))[0].status == "confirmed"


async def test_commands_left_running_by_a_crash_end_failed(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        async with db.transaction() as s:
            s.add(CommandRow(
                meter_id="E2", kind="connect", status="running", detail="", attempts=1, actor="olga",
                source="api", reason="before the crash", requested_at=utcnow(),
            ))
        owner = TaskOwner("commands-2")
        again = r.new_service(owner)
        await again.start()
        await again.stop()
        async with db.sessions() as s:
            row = (await s.scalars(select(CommandRow).where(CommandRow.reason == "before the crash"))).one()
        assert row.status == "failed" and row.detail.startswith("interrupted")
        assert (await audit_of(db, "E2"))[-1] == ("relay.connect", "system:commands", "before the crash", "failed")


async def test_stopping_ends_running_and_waiting_commands_as_failed(db: Database, tmp_path: Path) -> None:
    async with rig(db, tmp_path) as r:
        await r.control.relay("E1", stuck=True)  # the first command waits for a confirmation that never comes
        running = asyncio.create_task(r.service.execute(request("E1", CommandKind.DISCONNECT, reason="one")))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(r.service.execute(request("E1", CommandKind.CONNECT, reason="two")))
        await asyncio.sleep(0.05)
        await r.service.stop()
        one, two = await asyncio.gather(running, waiting)
        assert (one.status, two.status) == ("failed", "failed")
        assert one.detail == two.detail == "the server stopped before the command completed"
        refused = await r.service.execute(request("E1", CommandKind.CONNECT, reason="three"))
        assert (refused.status, refused.detail) == ("failed", "the server is stopping")
        outcomes = [(reason, outcome) for (_a, _u, reason, outcome) in await audit_of(db, "E1")]
        # the two commands the stop ended fail together: their rows may land in either order
        assert outcomes[:2] == [("one", "queued"), ("two", "queued")]
        assert sorted(outcomes[2:4]) == [("one", "failed"), ("two", "failed")]
        assert outcomes[4:] == [("three", "failed")]
