"""DL/T 645 over a serial port: the link's ``transport = "serial"`` opens a real pseudo-terminal
(the client's own termios set-up and pipe transports), with the simulator's DL/T 645 bus served on
the pty's other end. Energy read, a relay trip confirmed by read-back, and a slow meter (answers
after the link's timeout) marked Bad with its reason while the poller goes on with its neighbour."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from protocols.dlt645.config import Dlt645LinkConfig
from protocols.dlt645.driver import Dlt645Driver
from protocols.library import load_library
from protocols.modbus.config import ModbusConfig
from protocols.modbus.poller import DeviceSpec, ModbusPoller
from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.site import SimLink
from tags import Quality, QualityReason, TagDB
from tests.protocols.modbus.conftest import START, TZ
from tests.simulation import Control, until

PASSWORD, OPERATOR = "02123456", "12345678"
TIMEOUT_S = 0.5
SLOW, STEADY = "S-1", "S-2"


class _Meter:
    def __init__(self, meter_id: str) -> None:
        self.id = meter_id


@pytest.fixture
async def serial_site() -> AsyncIterator[tuple[Control, TagDB, ModbusPoller, Dlt645LinkConfig]]:
    library = load_library()
    sim = Simulator(library, [SimLink("rs485", 0, "dlt645")], control_port=0, speed=0, tou=TouSchedule(timezone=TZ),
                    start_time=START, dlt645_password=PASSWORD)
    sim.add_meter(MeterSpec(SLOW, "dlt645-single-phase", "rs485", 1, address="000000000011", initial_reading=321.5))
    sim.add_meter(MeterSpec(STEADY, "dlt645-single-phase", "rs485", 1, address="000000000012", initial_reading=40))
    await sim.start()
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    detach = sim.servers["rs485"].serve_fd(master)  # the meters' bus behind the serial port
    link = Dlt645LinkConfig(name="rs485", kind="dlt645", transport="serial", serial_port=os.ttyname(slave), baudrate=9600,
                            timeout_s=TIMEOUT_S, retries=0, inter_frame_gap_ms=0, offline_after_failures=100)
    tagdb = TagDB()
    poller = ModbusPoller(
        tagdb, [link], library,
        ModbusConfig(start_spread=0, poll_intervals={"fast": 0.5, "energy": 0.5, "slow": 0.5, "clock": 5}),
        driver=Dlt645Driver({"rs485": (PASSWORD, OPERATOR)}),
    )
    poller.set_devices([DeviceSpec(m, "dlt645-single-phase", "rs485", 1, address=a)
                        for m, a in ((SLOW, "000000000011"), (STEADY, "000000000012"))])
    task = asyncio.create_task(poller.run(), name="dlt645-serial-poller")
    try:
        async with aiohttp.ClientSession() as session:
            yield Control.of(session, sim), tagdb, poller, link
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        detach()
        os.close(master)
        os.close(slave)
        await sim.stop()


async def test_energy_and_relay_over_a_serial_port(serial_site: Any) -> None:
    control, tagdb, poller, link = serial_site
    assert link.transport == "serial" and link.serial_port.startswith("/dev/pts/")
    await until(lambda: all(tagdb.read(f"{m}.{p}").quality is Quality.GOOD for m in (SLOW, STEADY)
                            for p in ("energy_total", "voltage", "relay_closed")), 15, "both meters read over the pty")
    assert [s.kind for s in poller.link_stats()] == ["dlt645"]
    assert poller.link_stats()[0].endpoint == link.serial_port
    # the value read through the serial port is the simulator's (frozen clock: speed 0)
    values = await poller.poll_now(SLOW)
    truth = await control.meter(SLOW)
    assert values["energy_total"].value == truth["points"]["energy_total"]
    assert 321.5 <= values["energy_total"].value < 322  # type: ignore[operator]
    assert values["relay_closed"].value is True

    # trip (C = 0x1C with password and operator code) and read the status word back
    await poller.set_supply(_Meter(SLOW), False)
    assert await poller.read_supply(_Meter(SLOW)) is False
    assert (await control.meter(SLOW))["relay_closed"] is False
    assert (await control.meter(STEADY))["relay_closed"] is True  # only the addressed meter
    await poller.set_supply(_Meter(SLOW), True)
    assert await poller.read_supply(_Meter(SLOW)) is True


async def test_slow_answer_after_the_timeout_is_bad_and_the_poller_goes_on(serial_site: Any) -> None:
    control, tagdb, poller, _ = serial_site
    await until(lambda: all(tagdb.read(f"{m}.voltage").quality is Quality.GOOD for m in (SLOW, STEADY)), 15, "first reads")
    # answers 1.2 timeouts late: the link has given up on them by then, and waits a timeout more
    # (the bus's silence after a timeout) before its next request, so they disturb nothing
    await control.fault(SLOW, "slow", delay_ms=int(TIMEOUT_S * 1200))
    await until(lambda: tagdb.read(f"{SLOW}.voltage").reason is QualityReason.TIMEOUT, 10, "the slow meter timed out")
    bad = tagdb.read(f"{SLOW}.voltage")
    assert bad.quality is Quality.BAD and bad.detail == f"no answer within {TIMEOUT_S:g} s"
    assert tagdb.read(f"{SLOW}.energy_total").reason is QualityReason.TIMEOUT
    # its neighbour on the same bus keeps being read, Good, while the slow one keeps failing
    before = poller.device_stats(STEADY)[0].polls
    await until(lambda: poller.device_stats(STEADY)[0].polls >= before + 3, 15, "the steady meter polled on")
    assert all(tagdb.read(f"{STEADY}.{p}").quality is Quality.GOOD for p in ("voltage", "energy_total", "relay_closed"))
    assert tagdb.read(f"{SLOW}.voltage").reason is QualityReason.TIMEOUT
    # answers so late that they arrive while the link waits for its next request's answer: taken
    # for no other request's answer (their identifier or address differs), so still timeouts
    await control.fault(SLOW, "slow", delay_ms=int(TIMEOUT_S * 2500))
    slow_before, steady_before = poller.device_stats(SLOW)[0], poller.device_stats(STEADY)[0].polls
    await until(lambda: poller.device_stats(SLOW)[0].timeouts >= slow_before.timeouts + 4, 30, "the slow meter polled on")
    await until(lambda: poller.device_stats(STEADY)[0].polls >= steady_before + 2, 30, "the steady meter polled on")
    assert poller.device_stats(SLOW)[0].bad_frames == slow_before.bad_frames
    assert tagdb.read(f"{SLOW}.voltage").reason is QualityReason.TIMEOUT
    await control.fault(SLOW, "none")
    await until(lambda: tagdb.read(f"{SLOW}.voltage").quality is Quality.GOOD, 10, "the slow meter recovered")
