"""Interoperability: Debian's ``mbpoll`` (libmodbus, a stack we did not write) reads the
simulator started as ``scada simulate``, and its readings match what the poller decoded."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocols.modbus.config import LinkConfig, ModbusConfig
from protocols.modbus.poller import DeviceSpec, ModbusPoller
from protocols.modbus.profile import ProfileLibrary
from tags import TagDB

from ...procs import ScadaProcess
from ...services import require_services
from ...simulation import Control
from .conftest import until

_LINE = re.compile(r"^\[(\d+)\]:\s+(-?[\d.eE+-]+)")


async def mbpoll(port: int, unit: int, ref: int, count: int, kind: str, *extra: str) -> dict[int, float]:
    """Registers read by mbpoll, by (0-based) address; ``kind`` is mbpoll's -t argument."""
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-r", str(ref), "-c", str(count),
        "-t", kind, "-1", "-o", "2", *extra, "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode() + out.decode()
    values = {}
    for line in out.decode().splitlines():
        m = _LINE.match(line.strip())
        if m:
            values[int(m.group(1))] = float(m.group(2))
    assert values, out.decode()
    return values


@pytest.fixture
def mbpoll_available() -> None:
    if shutil.which("mbpoll") is None:
        if require_services():
            pytest.fail("mbpoll is not installed (apt-get install mbpoll)")
        pytest.skip("mbpoll is not installed")


async def test_mbpoll_reads_what_the_poller_decodes(tmp_path: Path, mbpoll_available: None) -> None:
    args = [
        "simulate", "--meters", "3", "--port", "0", "--control-port", "0", "--speed", "0",
        "--profile", "acrel-ddsy1352", "--profile", "water-valve", "--profile", "acrel-dtsy1352",
    ]
    with ScadaProcess(args, cwd=tmp_path) as proc:
        line = await asyncio.to_thread(proc.wait_for, r"^modbus port0 ")
        port = int(re.search(r":(\d+) \(tcp\) units 1-3", line).group(1))  # type: ignore[union-attr]
        control_line = await asyncio.to_thread(proc.wait_for, r"^control ")
        await asyncio.to_thread(proc.wait_for, r"^simulating 3 meters")
        # give the registers distinctive values (the clock is frozen: they stay put)
        settings: list[tuple[str, str, Any]] = [
            ("SIM-00001", "energy_total", 1234.56), ("SIM-00001", "energy_peak", 1000.25),
            ("SIM-00001", "energy_valley", 234.31), ("SIM-00001", "voltage", 231.4), ("SIM-00001", "power", -1.25),
            ("SIM-00002", "volume_total", 12.345), ("SIM-00002", "flow", 0.75),
            ("SIM-00003", "energy_total", 98765.4), ("SIM-00003", "power", -12.345),
        ]
        async with aiohttp.ClientSession() as http:
            control = Control.from_line(http, control_line, tmp_path)
            for meter, point, value in settings:
                await control.register(meter, point, value)

        theirs_energy = await mbpoll(port, 1, 0x0000, 5, "4:int", "-B")  # u32, high word first
        theirs_meas = await mbpoll(port, 1, 0x000B, 6, "4")
        theirs_water = await mbpoll(port, 2, 0x0001, 3, "4:float")  # mbpoll's default: low word first
        theirs_3ph = await mbpoll(port, 3, 0x0842, 5, "4:int", "-B")
        theirs_3ph_power = await mbpoll(port, 3, 0x016A, 1, "4:int", "-B")

        db = TagDB()
        link = LinkConfig(name="port0", host="127.0.0.1", port=port, timeout_s=1.0)
        poller = ModbusPoller(db, [link], ProfileLibrary.load(), ModbusConfig(poll_intervals={"fast": 3600, "energy": 3600, "slow": 3600, "volume": 3600}))
        poller.set_devices([
            DeviceSpec("SIM-00001", "acrel-ddsy1352", "port0", 1),
            DeviceSpec("SIM-00002", "water-valve", "port0", 2),
            DeviceSpec("SIM-00003", "acrel-dtsy1352", "port0", 3),
        ])
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.links["port0"].is_up)
            e1 = await poller.poll_now("SIM-00001")
            w2 = await poller.poll_now("SIM-00002")
            e3 = await poller.poll_now("SIM-00003")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert proc.stop() == 0

    ours = {k: v.value for k, v in e1.items()}
    assert ours["energy_total"] == 1234.56
    assert [theirs_energy[a] * 0.01 for a in (0, 2, 4, 6, 8)] == pytest.approx(
        [ours["energy_total"], ours["energy_sharp"], ours["energy_peak"], ours["energy_flat"], ours["energy_valley"]], abs=1e-9
    )
    assert theirs_meas[0x0B] * 0.1 == pytest.approx(ours["voltage"]) == 231.4
    assert theirs_meas[0x0C] * 0.01 == pytest.approx(ours["current"])
    # mbpoll prints 16-bit registers unsigned: a negative INT16 power shows as 65536 - n
    raw_power = theirs_meas[0x0D] - 65536 if theirs_meas[0x0D] >= 32768 else theirs_meas[0x0D]
    assert raw_power * 0.001 == pytest.approx(ours["power"]) == -1.25
    assert theirs_meas[0x10] * 0.001 == pytest.approx(ours["power_factor"])
    assert theirs_water[1] == pytest.approx(w2["volume_total"].value) and w2["volume_total"].value == 12.345
    assert theirs_water[5] == pytest.approx(w2["flow"].value) and w2["flow"].value == 0.75
    assert theirs_3ph[0x0842] * 0.1 == pytest.approx(e3["energy_total"].value) and e3["energy_total"].value == 98765.4
    assert theirs_3ph_power[0x016A] * 0.001 == pytest.approx(e3["power"].value) and e3["power"].value == -12.345
