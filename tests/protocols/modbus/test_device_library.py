"""The device library against a Modbus server that is not ours: pymodbus's plain TCP server,
its datastore filled by hand (``struct``, not our codec) with a reading of each meter, polled
by the poller through real sockets. Every decoded value is checked.

One server for the module (a thread of its own), one unit id per profile.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import ModbusTcpServer

from protocols.modbus.config import LinkConfig, ModbusConfig
from protocols.modbus.poller import DeviceSpec, ModbusPoller
from protocols.modbus.profile import ProfileLibrary
from tags import Quality, TagDB
from tests.services import free_port
from tests.simulation import until


def f32(value: float, word_order: str = "big") -> list[int]:
    """IEEE 754 float32 as two registers, high word first (or low word first)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo] if word_order == "big" else [lo, hi]


def u32(value: int) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">I", value)))


def i32(value: int) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">i", value)))


def i16(value: int) -> list[int]:
    return list(struct.unpack(">H", struct.pack(">h", value)))


# unit id -> (profile, function code -> {address: registers}, expected decoded values)
DEVICES: dict[int, tuple[str, dict[int, dict[int, list[int]]], dict[str, Any]]] = {
    # Eastron SDM120: input registers, float32; power in W (the profile gives kW)
    1: ("eastron-sdm120", {4: {
        0x0000: f32(230.1), 0x0006: f32(5.25), 0x000C: f32(1150.5), 0x001E: f32(0.95), 0x0046: f32(50.0),
        0x0048: f32(1234.56), 0x004A: f32(0.12), 0x0156: f32(1234.68),
    }}, {
        "voltage": 230.1, "current": 5.25, "power": 1.1505, "power_factor": 0.95, "frequency": 50.0,
        "energy_total": 1234.56, "energy_reverse": 0.12, "energy_absolute": 1234.68,
    }),
    # Eastron SDM630: three phases, total system power at 0x0034
    2: ("eastron-sdm630", {4: {
        0x0000: f32(229.8), 0x0002: f32(231.2), 0x0004: f32(230.4), 0x0006: f32(10.5), 0x0008: f32(9.75),
        0x000A: f32(11.25), 0x0034: f32(7210.0), 0x003E: f32(0.98), 0x0046: f32(49.98),
        0x0048: f32(56789.5), 0x004A: f32(3.25), 0x0156: f32(56792.75),
    }}, {
        "voltage": 229.8, "voltage_l2": 231.2, "voltage_l3": 230.4, "current": 10.5, "current_l2": 9.75,
        "current_l3": 11.25, "power": 7.21, "power_factor": 0.98, "frequency": 49.98,
        "energy_total": 56789.5, "energy_reverse": 3.25, "energy_absolute": 56792.75,
    }),
    # Chint DTSU666: holding registers, scaled floats (0.1 V, 0.001 A, 0.1 W, 0.001)
    3: ("chint-dtsu666", {3: {
        0x2000: f32(2301.0), 0x200C: f32(5120.0), 0x2012: f32(11780.0), 0x202A: f32(985.0),
        0x101E: f32(4321.5), 0x1028: f32(1.5),
    }}, {
        "voltage": 230.1, "current": 5.12, "power": 1.178, "power_factor": 0.985,
        "energy_total": 4321.5, "energy_reverse": 1.5,
    }),
    # Acrel ADL400 on a 10 kV/100 V PT (ratio 100) and a 200/5 A CT (ratio 40): secondary
    # registers times the meter's ratios
    4: ("acrel-adl400", {3: {
        0x0000: u32(12346), 0x000A: u32(12345), 0x0014: u32(1), 0x0061: [1002], 0x0062: [998], 0x0063: [1001],
        0x0064: [412], 0x0065: [398], 0x0066: [405], 0x008D: [100], 0x008E: [40],
        0x016A: i32(1215), 0x017F: i16(-912),
    }}, {
        "energy_combined": 493840.0, "energy_total": 493800.0, "energy_reverse": 40.0,
        "voltage": 10020.0, "voltage_l2": 9980.0, "voltage_l3": 10010.0,
        "current": 164.8, "current_l2": 159.2, "current_l3": 162.0, "pt_ratio": 100, "ct_ratio": 40,
        "power": 4860.0, "power_factor": -0.912,
    }),
    # Acrel ADW300: decimal addresses
    5: ("acrel-adw300", {3: {
        20: [2205], 21: [2211], 22: [2198], 26: [1050], 27: [987], 28: [1012],
        30: i32(2310), 32: i32(2180), 34: i32(2250), 36: i32(6740), 62: i32(987654),
    }}, {
        "voltage": 220.5, "voltage_l2": 221.1, "voltage_l3": 219.8, "current": 10.5, "current_l2": 9.87,
        "current_l3": 10.12, "power_l1": 2.31, "power_l2": 2.18, "power_l3": 2.25, "power": 6.74,
        "energy_total": 9876.54,
    }),
}


def _block(values: dict[int, list[int]]) -> ModbusSparseDataBlock:
    cells: dict[int, int] = {}
    for address, words in values.items():
        for i, w in enumerate(words):
            cells[address + i] = w
    if not cells:
        cells = {0: 0}
    # every register between the first and the last exists (zero where the map has nothing), as
    # on a real meter, so reads that bridge small gaps are answered
    return ModbusSparseDataBlock({a: cells.get(a, 0) for a in range(min(cells), max(cells) + 1)})


@pytest.fixture(scope="module")
def plain_server() -> Iterator[int]:
    """pymodbus's own TCP server in a thread with its own event loop."""
    devices = {}
    for unit, (_profile, tables, _expected) in DEVICES.items():
        devices[unit] = ModbusDeviceContext(hr=_block(tables.get(3, {})), ir=_block(tables.get(4, {})))
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def start() -> None:
            server = ModbusTcpServer(ModbusServerContext(devices=devices, single=False), address=("127.0.0.1", port))
            box["server"] = server
            await server.serve_forever(background=True)

        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "pymodbus server did not start"
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(box["server"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("unit", sorted(DEVICES), ids=[DEVICES[u][0] for u in sorted(DEVICES)])
async def test_profile_reads_a_plain_modbus_server(plain_server: int, unit: int) -> None:
    profile, _tables, expected = DEVICES[unit]
    library = ProfileLibrary.load()
    assert set(expected) == set(library[profile].points), "every point of the profile is checked"
    tagdb = TagDB()
    link = LinkConfig(name="plain", host="127.0.0.1", port=plain_server, timeout_s=1.0)
    poller = ModbusPoller(tagdb, [link], library, ModbusConfig(start_spread=0))
    poller.set_devices([DeviceSpec("M-1", profile, "plain", unit)])
    names = [f"M-1.{p}" for p in expected]
    async with asyncio.TaskGroup() as group:
        task = group.create_task(poller.run())
        try:
            await until(lambda: all(tagdb.read(n).quality is Quality.GOOD for n in names), 10, f"{profile} read")
        finally:
            task.cancel()
    got = {p: tagdb.read(f"M-1.{p}").value for p in expected}
    assert got == expected
