"""DL/T 645 end to end on real sockets: the simulator's DL/T 645 buses, the poller with the
DL/T 645 driver, faults, relay control confirmed by read-back, the broadcast address read and the
control API. One simulator for the module (100 meters on two simulated gateways)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocols.dlt645.client import Dlt645Connection
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
PER_BUS = 50


def address(i: int) -> str:
    return f"{100000000000 + i:012d}"


@pytest.fixture
async def site() -> AsyncIterator[tuple[Simulator, Control, TagDB, ModbusPoller]]:
    library = load_library()
    sim = Simulator(
        library, [SimLink("bus-a", 0, "dlt645"), SimLink("bus-b", 0, "dlt645"), SimLink("bus-1", 0, "dlt645")],
        control_port=0, speed=0, tou=TouSchedule(timezone=TZ), start_time=START, dlt645_password=PASSWORD,
    )
    specs = []
    for i in range(2 * PER_BUS):
        bus = "bus-a" if i < PER_BUS else "bus-b"
        sim.add_meter(MeterSpec(f"D-{i:03d}", "dlt645-single-phase", bus, 1, address=address(i), initial_reading=100 + i))
        specs.append(DeviceSpec(f"D-{i:03d}", "dlt645-single-phase", bus, 1, address=address(i)))
    sim.add_meter(MeterSpec("ALONE", "dlt645-single-phase", "bus-1", 1, address="201600000001"))
    await sim.start()
    links = [
        Dlt645LinkConfig(name=name, kind="dlt645", host="127.0.0.1", port=sim.ports[name], timeout_s=0.3, retries=0,
                         inter_frame_gap_ms=0, offline_after_failures=100)
        for name in ("bus-a", "bus-b")
    ]
    tagdb = TagDB()
    poller = ModbusPoller(
        tagdb, links, library,
        ModbusConfig(start_spread=0, poll_intervals={"fast": 0.5, "energy": 0.5, "slow": 0.5, "clock": 5}),
        driver=Dlt645Driver({"bus-a": (PASSWORD, OPERATOR), "bus-b": ("02999999", OPERATOR)}),
    )
    poller.set_devices(specs)
    task = asyncio.create_task(poller.run(), name="dlt645-poller")
    try:
        async with aiohttp.ClientSession() as session:
            assert sim.control_url is not None
            yield sim, Control.of(session, sim), tagdb, poller
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


@pytest.mark.slow
async def test_hundred_meters_relay_faults_and_control_api(site: Any) -> None:
    sim, control, tagdb, poller = site
    points = ["energy_total", "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "voltage", "current",
              "power", "power_factor", "remaining_amount", "meter_date", "meter_time", "relay_closed", "comm_ok"]
    names = [f"D-{i:03d}.{p}" for i in range(2 * PER_BUS) for p in points]
    await until(lambda: all(tagdb.read(n).quality is Quality.GOOD for n in names), 30, "100 DL/T 645 meters read")
    # every value is the simulator's true value
    for meter in ("D-000", "D-077"):
        truth = await control.meter(meter)
        assert truth["address"] == address(int(meter[2:])) and truth["protocol"] == "dlt645"
        assert tagdb.read(f"{meter}.energy_total").value == truth["points"]["energy_total"]
        assert tagdb.read(f"{meter}.meter_date").value == "2026-01-15"
        assert tagdb.read(f"{meter}.relay_closed").value is True
    listed = {m["id"]: m for m in await control.call("GET", "/meters")}
    assert listed["D-042"]["address"] == address(42) and "address" not in listed.get("nothing", {"x": 1})

    # relay trip through the driver (C = 0x1C, 1A), confirmed by reading the status word back
    meter = type("M", (), {"id": "D-010"})()
    assert poller.supports_supply(meter)
    await poller.set_supply(meter, False)
    assert await poller.read_supply(meter) is False
    assert (await control.meter("D-010"))["relay_closed"] is False
    await poller.set_supply(meter, True)
    assert await poller.read_supply(meter) is True
    # a wrong password (bus-b's): the meter refuses, exception answer naming it
    with pytest.raises(Exception, match="password wrong or not authorised"):
        await poller.set_supply(type("M", (), {"id": "D-060"})(), False)
    assert (await control.meter("D-060"))["relay_closed"] is True

    # faults give the right quality
    await control.fault("D-001", "exception", exception_code=2)
    await control.fault("D-002", "garbage")
    await control.fault("D-003", "timeout")
    await until(lambda: tagdb.read("D-001.voltage").reason is QualityReason.DEVICE_EXCEPTION, 10, "exception")
    assert "no data requested" in tagdb.read("D-001.voltage").detail
    await until(lambda: tagdb.read("D-002.voltage").reason is QualityReason.BAD_FRAME, 10, "bad frame")
    assert "checksum" in tagdb.read("D-002.voltage").detail
    await until(lambda: tagdb.read("D-003.voltage").reason is QualityReason.TIMEOUT, 10, "timeout")
    for m in ("D-001", "D-002", "D-003"):
        await control.fault(m, "none")
    await until(lambda: all(tagdb.read(f"D-00{i}.voltage").quality is Quality.GOOD for i in (1, 2, 3)), 10, "recovered")


async def test_broadcast_address_read_finds_a_meter_alone_on_its_port(site: Any) -> None:
    sim = site[0]
    conn = Dlt645Connection(Dlt645LinkConfig(name="probe", kind="dlt645", host="127.0.0.1", port=sim.ports["bus-1"], timeout_s=0.5))
    await conn.connect()
    try:
        assert await conn.read_address() == "201600000001"
    finally:
        conn.close()
    # with fifty meters on a bus nobody answers the wildcard (their answers would collide)
    crowded = Dlt645Connection(Dlt645LinkConfig(name="probe", kind="dlt645", host="127.0.0.1", port=sim.ports["bus-a"], timeout_s=0.3))
    await crowded.connect()
    try:
        with pytest.raises(Exception, match="no answer"):
            await crowded.read_address()
    finally:
        crowded.close()


async def test_scada_simulate_serves_dlt645_meters(tmp_path: Path) -> None:
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scada", "simulate", "--protocol", "dlt645", "--meters", "3", "--per-port", "2",
        "--port", "0", "--control-port", "0", "--data-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(3)]
        assert lines[0].startswith("dlt645 port0 ") and lines[0].rstrip().endswith("addresses 000000000001-000000000002")
        port = int(lines[1].split()[2].rsplit(":", 1)[1])
        conn = Dlt645Connection(Dlt645LinkConfig(name="p", kind="dlt645", host="127.0.0.1", port=port, timeout_s=1.0))
        await conn.connect()
        try:
            assert await conn.read_address() == "000000000003"  # alone on the second port
            energy = load_library()["dlt645-single-phase"].points["energy_total"]
            from protocols.dlt645.profile import DltBlock

            assert energy.decode(await conn.read_block("000000000003", DltBlock(energy.di, ((energy, 0),)))) >= 0
        finally:
            conn.close()
        async with aiohttp.ClientSession() as http:
            meters = await Control.from_line(http, lines[2], tmp_path).call("GET", "/meters")
            assert [m["address"] for m in meters] == ["000000000001", "000000000002", "000000000003"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
