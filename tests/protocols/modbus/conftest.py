"""A simulator on free loopback ports, its HTTP control API, and pollers pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from protocols.modbus.config import LinkConfig, ModbusConfig
from protocols.modbus.poller import DeviceSpec, ModbusPoller
from protocols.modbus.profile import ProfileLibrary
from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.site import SimLink
from tags import TagDB

from ...simulation import Control, until

__all__ = ["Control", "START", "TZ", "link_config", "until"]

TZ = "Asia/Shanghai"
# 2026-01-15 07:00 local: an hour before the valley ends at 08:00
START = datetime(2026, 1, 15, 7, 0, tzinfo=ZoneInfo(TZ)).timestamp()


@pytest.fixture
def profiles() -> ProfileLibrary:
    return ProfileLibrary.load()


@pytest.fixture
async def sim(profiles: ProfileLibrary) -> AsyncIterator[Simulator]:
    """A frozen-clock simulator with a Modbus TCP gateway ``tcp`` and an RTU one ``rtu``."""
    simulator = Simulator(
        profiles, [SimLink("tcp", 0, "tcp"), SimLink("rtu", 0, "rtu")], control_port=0, speed=0,
        tou=TouSchedule(timezone=TZ), start_time=START,
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession() as session:
        assert sim.control_url is not None
        yield Control.of(session, sim)


def link_config(sim: Simulator, name: str, **kw: Any) -> LinkConfig:
    kind = "rtu_over_tcp" if sim.servers[name].framing == "rtu" else "tcp"
    values: dict[str, Any] = {"name": name, "kind": kind, "host": "127.0.0.1", "port": sim.ports[name], "timeout_s": 0.25, "retries": 0}
    values.update(kw)
    return LinkConfig(**values)


PollerFactory = Callable[..., "contextlib.AbstractAsyncContextManager[tuple[ModbusPoller, TagDB]]"]


@pytest.fixture
def running_poller(sim: Simulator, profiles: ProfileLibrary) -> Any:
    """``async with running_poller(devices, links=..., **modbus_options) as (poller, tagdb)``:
    the meters are added to the simulator, polled over real sockets, stopped at the end."""

    @contextlib.asynccontextmanager
    async def run(
        devices: list[DeviceSpec], *, links: list[LinkConfig] | None = None, library: ProfileLibrary | None = None,
        simulate: bool = True, **options: Any,
    ) -> AsyncIterator[tuple[ModbusPoller, TagDB]]:
        if simulate:
            for d in devices:
                sim.add_meter(MeterSpec(d.meter_id, d.profile, d.link, d.unit_id, d.circuit, 8.0))
        tagdb = TagDB()
        options.setdefault("poll_intervals", {"fast": 3600, "energy": 3600, "slow": 3600, "volume": 3600})
        options.setdefault("start_spread", 0.0)
        poller = ModbusPoller(
            tagdb, links or [link_config(sim, "tcp"), link_config(sim, "rtu")], library or profiles, ModbusConfig(**options),
        )
        poller.set_devices(devices)
        task = asyncio.create_task(poller.run(), name="test-poller")
        try:
            await until(lambda: all(link.is_up for link in poller.links.values()), 5)
            yield poller, tagdb
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run
