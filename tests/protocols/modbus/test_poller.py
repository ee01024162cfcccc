"""The poller over real TCP against the simulator: decoding, coalescing, faults, RTU, health."""

from __future__ import annotations

import asyncio
import os
import struct
import tty
from pathlib import Path
from typing import Any

import pytest

from protocols.modbus.config import LinkConfig
from protocols.modbus.poller import DeviceSpec
from protocols.modbus.profile import ProfileLibrary, shipped_profiles_dir
from protocols.modbus.sim import MeterSpec, Simulator
from protocols.modbus.sim.server import ModbusSimServer
from tags import Quality, QualityReason, TagChange

from .conftest import Control, link_config, until

# every data type in every word and byte order, with scale and offset: (point, spec, value)
TYPE_POINTS: list[tuple[str, dict[str, Any], Any]] = [
    ("u16_plain", {"type": "u16"}, 65535.0),
    ("i16_scaled", {"type": "i16", "scale": 0.1}, -3276.8),
    ("u16_offset", {"type": "u16", "scale": 0.5, "offset": -40}, 20.5),
    ("u32_abcd", {"type": "u32", "scale": 0.01}, 42949672.95),
    ("u32_cdab", {"type": "u32", "word_order": "little", "scale": 0.01}, 123456.78),
    ("u32_badc", {"type": "u32", "byte_order": "little"}, 305419896.0),
    ("u32_dcba", {"type": "u32", "word_order": "little", "byte_order": "little"}, 305419896.0),
    ("i32_abcd", {"type": "i32", "scale": 0.001}, -2147483.648),
    ("i32_cdab", {"type": "i32", "word_order": "little"}, -19088744.0),
    ("f32_abcd", {"type": "f32"}, 1234.5677),
    ("f32_cdab", {"type": "f32", "word_order": "little"}, -0.1),
    ("f32_badc", {"type": "f32", "byte_order": "little"}, 3.14159),
    ("f32_dcba", {"type": "f32", "word_order": "little", "byte_order": "little"}, 2.5e-05),
    ("f64_abcd", {"type": "f64"}, 12345678.901234567),
    ("f64_dcba", {"type": "f64", "word_order": "little", "byte_order": "little"}, -9.87654321e-10),
    ("bcd_1", {"type": "bcd"}, 9876.0),
    ("bcd_2", {"type": "bcd", "words": 2, "scale": 0.01}, 123456.78),
    ("flag_bit", {"type": "u16", "bit": 3}, True),
    ("flag_value", {"type": "u16", "true_value": 7}, True),
]
FORMATS = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f", "f64": ">d"}


def _expected_words(spec: dict[str, Any], value: Any) -> list[int]:
    """The registers a device holding ``value`` sends, built without the project's codec."""
    if "bit" in spec:
        data = struct.pack(">H", (1 << spec["bit"]) if value else 0)
    elif "true_value" in spec:
        data = struct.pack(">H", spec["true_value"] if value else 0)
    elif spec["type"] == "bcd":
        digits = f"{round((value - spec.get('offset', 0)) / spec.get('scale', 1)):0{4 * spec.get('words', 1)}d}"
        data = bytes.fromhex(digits)
    else:
        raw = (value - spec.get("offset", 0)) / spec.get("scale", 1)
        if spec["type"] not in ("f32", "f64"):
            raw = round(raw)
        data = struct.pack(FORMATS[spec["type"]], raw)
    pairs = [data[i:i + 2] for i in range(0, len(data), 2)]
    if spec.get("word_order") == "little":
        pairs.reverse()
    if spec.get("byte_order") == "little":
        pairs = [p[::-1] for p in pairs]
    return [int.from_bytes(p, "big") for p in pairs]


@pytest.fixture
def type_library(tmp_path: Path) -> ProfileLibrary:
    lines = ['[profile]\nname = "typetest"\nkind = "electricity"\n', "[poll_classes]\nall = 60\n"]
    address = 0x0100
    for name, spec, _value in TYPE_POINTS:
        fields = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in spec.items())
        lines.append(f"[points.{name}]\naddress = {address}\npoll = \"all\"\n{fields}")
        address += 5  # leave gaps: coalescing must still pick each value out of its block
    (tmp_path / "typetest.toml").write_text("\n".join(lines))
    return ProfileLibrary.load(shipped_profiles_dir(), tmp_path)


@pytest.mark.parametrize("link", ["tcp", "rtu"])
async def test_every_data_type_and_word_order_decodes_right(
    link: str, sim: Simulator, control: Control, running_poller: Any, type_library: ProfileLibrary
) -> None:
    sim.profiles = type_library
    sim.add_meter(MeterSpec("T1", "typetest", link, 7))
    for name, _spec, value in TYPE_POINTS:
        await control.register("T1", name, value)
    async with running_poller([DeviceSpec("T1", "typetest", link, 7)], library=type_library, simulate=False) as (poller, db):
        values = await poller.poll_now("T1")
    truth = await control.meter("T1")
    for name, spec, value in TYPE_POINTS:
        assert truth["registers"][name] == _expected_words(spec, value), name  # the wire is right
        tag = values[name]
        assert tag.quality is Quality.GOOD, (name, tag)
        assert tag.value == value and type(tag.value) is type(value), (name, tag.value, value)  # decoded right


async def test_coalescing_measured_at_the_simulator(sim: Simulator, control: Control, running_poller: Any) -> None:
    meters = [DeviceSpec(f"E{i}", "acrel-ddsy1352", "tcp", i) for i in (1, 2)]
    meters.append(DeviceSpec("X1", "acrel-dtsy1352", "tcp", 3))
    async with running_poller(meters) as (poller, db):
        await until(lambda: all(db.read(f"{m.meter_id}.comm_ok").value for m in meters), what="first polls")
        await asyncio.sleep(0.05)
        await control.reset_stats()
        for m in meters:
            await poller.poll_now(m.meter_id)
        stats = (await control.stats())["tcp"]
    # DDSY1352: 10 points in 3 requests (energy block, measurement block, relay status);
    # DTSY1352: 11 points in 6 (energy, reverse energy, U+I, power, power factor, relay)
    assert stats["by_unit_fc"] == {"1/3": 3, "2/3": 3, "3/3": 6}
    assert stats["requests"] == 12


async def test_coalescing_follows_the_link_limits(sim: Simulator, control: Control, running_poller: Any) -> None:
    link = link_config(sim, "tcp", max_gap_registers=0)
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)], links=[link]) as (poller, db):
        await until(lambda: db.read("E1.comm_ok").value is True)
        await asyncio.sleep(0.05)
        await control.reset_stats()
        await poller.poll_now("E1")
        assert (await control.stats())["tcp"]["by_unit_fc"] == {"1/3": 4}


def _state(db: Any, meter: str, points: tuple[str, ...]) -> set[tuple[Quality, QualityReason]]:
    return {(db.read(f"{meter}.{p}").quality, db.read(f"{meter}.{p}").reason) for p in points}


@pytest.mark.parametrize("link", ["tcp", "rtu"])
async def test_faults_give_the_right_quality_and_recover(link: str, sim: Simulator, control: Control, running_poller: Any) -> None:
    points = ("energy_total", "voltage", "power", "relay_closed")
    links = [link_config(sim, link, offline_after_failures=10)]
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", link, 1)], links=links) as (poller, db):
        await poller.poll_now("E1")
        assert _state(db, "E1", points) == {(Quality.GOOD, QualityReason.NONE)}
        good_energy = db.read("E1.energy_total").value
        cases = [
            ({"kind": "timeout"}, QualityReason.TIMEOUT, "no answer within 0.25 s"),
            ({"kind": "exception", "exception_code": 2}, QualityReason.DEVICE_EXCEPTION, "exception 2 (illegal data address)"),
            ({"kind": "exception", "exception_code": 4}, QualityReason.DEVICE_EXCEPTION, "exception 4 (server device failure)"),
            ({"kind": "garbage"}, QualityReason.BAD_FRAME, "CRC error" if link == "rtu" else "undecodable answer"),
            ({"kind": "slow", "delay_ms": 400}, QualityReason.TIMEOUT, "no answer within 0.25 s"),  # RTU: the late answer falls in the quiet time after a timeout
        ]
        for fault, reason, detail in cases:
            await control.fault("E1", **fault)
            await poller.poll_now("E1")
            assert _state(db, "E1", points) == {(Quality.BAD, reason)}, fault
            assert detail in db.read("E1.voltage").detail
            assert db.read("E1.energy_total").value == good_energy  # the last value is kept, marked bad
            assert db.read("E1.comm_ok").value is True  # fewer failures than offline_after_failures
            await control.fault("E1", kind="none")
            await asyncio.sleep(0.7 if fault["kind"] == "slow" else 0)  # let a late answer arrive first
            await poller.poll_now("E1")
            assert _state(db, "E1", points) == {(Quality.GOOD, QualityReason.NONE)}, f"no recovery after {fault}"
        # slow but within the timeout: good values, and the latency shows it
        await control.fault("E1", kind="slow", delay_ms=100)
        await poller.poll_now("E1")
        assert _state(db, "E1", points) == {(Quality.GOOD, QualityReason.NONE)}
        assert poller.device_stats("E1")[0].max_latency_ms >= 100
        # a timeout or a bad frame ends its class's poll (2 classes: 2 requests per poll), an
        # exception does not (the device answers: all 3 blocks are asked)
        stats = poller.device_stats("E1")[0]
        assert (stats.timeouts, stats.exceptions, stats.bad_frames) == (4, 6, 2)


async def test_offline_after_failures_then_probed_back(sim: Simulator, control: Control, running_poller: Any) -> None:
    links = [link_config(sim, "tcp", offline_after_failures=2)]
    devices = [DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1), DeviceSpec("E2", "acrel-ddsy1352", "tcp", 2)]
    async with running_poller(devices, links=links, poll_intervals={"fast": 0.1, "energy": 0.2}, probe_initial_s=0.2) as (poller, db):
        await until(lambda: db.read("E1.comm_ok").value is True and db.read("E1.energy_total").good)
        await control.fault("E1", kind="timeout")
        await until(lambda: db.read("E1.comm_ok").value is False, what="offline")
        assert db.read("E1.comm_ok").quality is Quality.GOOD
        assert _state(db, "E1", ("voltage", "power", "relay_closed")) == {(Quality.BAD, QualityReason.COMM_FAILURE)}
        stats = poller.device_stats("E1")[0]
        assert stats.state == "offline" and stats.next_probe_s == pytest.approx(0.2)
        # offline: probed with backoff, not polled every 0.1 s
        await control.reset_stats()
        await asyncio.sleep(1.0)
        probes = (await control.stats())["tcp"]["by_unit"].get("1", 0)
        assert 1 <= probes <= 4
        assert db.read("E2.comm_ok").value is True  # the neighbour is polled all along
        await control.fault("E1", kind="none")
        await until(lambda: db.read("E1.comm_ok").value is True, timeout=5, what="back online")
        await until(lambda: _state(db, "E1", ("voltage", "energy_total", "relay_closed")) == {(Quality.GOOD, QualityReason.NONE)})
        assert poller.device_stats("E1")[0].state == "online"


async def test_rtu_link_never_has_two_requests_in_flight(sim: Simulator, control: Control, running_poller: Any) -> None:
    devices = [DeviceSpec(f"R{i}", "acrel-ddsy1352", "rtu", i) for i in range(1, 6)]
    devices += [DeviceSpec(f"T{i}", "acrel-ddsy1352", "tcp", i) for i in range(1, 6)]
    async with running_poller(devices, poll_intervals={"fast": 0.05, "energy": 0.05}) as (poller, db):
        for d in devices:
            await control.fault(d.meter_id, kind="slow", delay_ms=20)  # answers take a while
        await control.reset_stats()
        await asyncio.sleep(1.5)
        stats = await control.stats()
        rtu_link = next(s for s in poller.link_stats() if s.name == "rtu")
    assert stats["rtu"]["requests"] >= 20
    assert stats["rtu"]["max_pending_port"] == 1 and stats["rtu"]["open_connections"] == 1
    assert rtu_link.max_in_flight == 1
    # the same load on the TCP link does overlap requests (so the measure can see it)
    assert stats["tcp"]["max_pending_port"] > 1


async def test_a_dead_link_does_not_delay_another(sim: Simulator, control: Control, running_poller: Any) -> None:
    dead = [DeviceSpec(f"D{i}", "acrel-ddsy1352", "tcp", i) for i in range(1, 9)]
    live = [DeviceSpec("R1", "acrel-ddsy1352", "rtu", 1)]
    links = [link_config(sim, "tcp", timeout_s=1.0, offline_after_failures=100), link_config(sim, "rtu")]
    for d in [*dead, *live]:
        sim.add_meter(MeterSpec(d.meter_id, d.profile, d.link, d.unit_id))
    for d in dead:
        await control.fault(d.meter_id, kind="timeout")  # every request on "tcp" waits 1 s for nothing
    async with running_poller([*dead, *live], links=links, simulate=False, poll_intervals={"fast": 0.1, "energy": 0.1}) as (poller, db):
        await asyncio.sleep(0.3)
        before = poller.device_stats("R1")[0].polls
        await asyncio.sleep(1.0)
        polls = poller.device_stats("R1")[0].polls - before
        busy = next(s for s in poller.link_stats() if s.name == "tcp")
    assert busy.timeouts >= 4  # the dead link is saturated with requests that time out
    assert polls >= 12  # two classes every 0.1 s on the live link: about 20, whatever the dead one does
    assert db.read("R1.power").good


async def test_link_down_marks_devices_and_recovers(sim: Simulator, control: Control, running_poller: Any) -> None:
    async with running_poller(
        [DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)], poll_intervals={"fast": 0.1, "energy": 0.1},
        reconnect_initial_s=0.1, reconnect_max_s=0.2,
    ) as (poller, db):
        await until(lambda: db.read("E1.comm_ok").value is True)
        assert db.read("link:tcp.comm_ok").value is True
        server = sim.servers["tcp"]
        port = server.port
        await server.stop()
        await until(lambda: db.read("link:tcp.comm_ok").value is False, what="link down")
        await until(lambda: db.read("E1.comm_ok").value is False, what="device offline with its link")
        assert db.read("E1.power").reason is QualityReason.COMM_FAILURE
        assert "link tcp down" in db.read("E1.power").detail
        sim.servers["tcp"] = fresh = ModbusSimServer("tcp", sim.clock, port=port)
        fresh.units = server.units
        await fresh.start()
        await until(lambda: db.read("link:tcp.comm_ok").value is True, what="link up")
        await until(lambda: db.read("E1.comm_ok").value is True and db.read("E1.power").good, what="device back")
        stats = next(s for s in poller.link_stats() if s.name == "tcp")
        assert stats.state == "up" and stats.reconnects >= 1


async def test_energy_registers_share_one_read_and_timestamp(sim: Simulator, control: Control, running_poller: Any) -> None:
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)]) as (poller, db):
        await until(lambda: db.read("E1.energy_total").good)
        await control.load("E1", kw=3.0)
        await control.advance(3 * 3600)  # 07:00 -> 10:00: valley until 08:00, then peak
        sub = db.subscribe(lambda n: n.startswith("E1.energy_"), name="test")
        try:
            await poller.poll_now("E1")
            changes: list[TagChange] = sub.drain()
        finally:
            sub.close()
    energy = {c.name.split(".")[1]: c.new for c in changes}
    assert set(energy) >= {"energy_total", "energy_valley", "energy_peak"}
    assert len({v.source_ts for v in db.snapshot(lambda n: n.startswith("E1.energy_")).values()}) == 1
    values = {n.split(".")[1]: v.value for n, v in db.snapshot(lambda n: n.startswith("E1.energy_")).items()}
    assert values["energy_valley"] >= 3.0 and values["energy_peak"] == pytest.approx(6.0, abs=0.02)
    assert values["energy_total"] == pytest.approx(values["energy_valley"] + values["energy_peak"], abs=0.011)


async def test_registry_changes_add_and_remove_tags(sim: Simulator, running_poller: Any) -> None:
    sim.add_meter(MeterSpec("W9", "water-valve", "tcp", 9))
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)]) as (poller, db):
        assert "E1.energy_total" in db and "W9.volume_total" not in db
        poller.set_devices([DeviceSpec("W9", "water-valve", "tcp", 9, room_id="R9", kind="water")])
        assert "E1.energy_total" not in db and "E1.comm_ok" not in db
        assert db.meta("W9.volume_total").room_id == "R9"
        await until(lambda: db.read("W9.comm_ok").value is True, what="new meter polled")
        # a meter whose profile does not fit is reported, not polled
        poller.set_devices([DeviceSpec("W9", "water-valve", "tcp", 9, kind="electricity"), DeviceSpec("Z1", "nope", "tcp", 3)])
        assert db.read("W9.comm_ok").reason is QualityReason.CONFIG_ERROR
        assert "a electricity meter with the water profile" in db.read("W9.comm_ok").detail
        assert db.read("Z1.comm_ok").detail.startswith("unknown device profile 'nope'")
        with pytest.raises(LookupError, match="not polled"):
            await poller.poll_now("Z1")
        assert [s.state for s in poller.device_stats()] == ["config_error", "config_error"]


async def test_serial_rtu_link_over_a_pseudo_terminal(sim: Simulator, control: Control, running_poller: Any) -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    detach = sim.servers["rtu"].serve_fd(master)  # the simulated bus behind the serial port
    try:
        link = LinkConfig(name="rtu", kind="rtu", serial_port=os.ttyname(slave), baudrate=115200, timeout_s=0.25, retries=0)
        async with running_poller([DeviceSpec("S1", "acrel-ddsy1352", "rtu", 5)], links=[link]) as (poller, db):
            values = await poller.poll_now("S1")
            assert values["voltage"].good and 210 < values["voltage"].value < 230  # type: ignore[operator]
            await control.fault("S1", kind="garbage")
            await poller.poll_now("S1")
            assert db.read("S1.voltage").reason is QualityReason.BAD_FRAME and db.read("S1.voltage").detail == "CRC error"
            assert next(s for s in poller.link_stats()).kind == "rtu"
    finally:
        detach()
        os.close(master)
        os.close(slave)


async def test_a_gateway_reporting_a_silent_meter_takes_it_offline(sim: Simulator, running_poller: Any) -> None:
    # unit 9 is not on the simulated gateway: it answers exception 11 for it, as a real one does
    links = [link_config(sim, "tcp", offline_after_failures=5)]
    async with running_poller([DeviceSpec("G9", "acrel-ddsy1352", "tcp", 9)], links=links, simulate=False) as (poller, db):
        await until(lambda: poller.device_stats("G9")[0].polls >= 2, timeout=20, what="the first polls")  # 2 failures (a loaded CI worker can be slow to start them)
        await poller.poll_now("G9")  # 4
        assert db.read("G9.voltage").reason is QualityReason.TIMEOUT
        assert db.read("G9.voltage").detail == "gateway: exception 11 (gateway target device failed to respond)"
        assert db.read("G9.comm_ok").value is not False
        await poller.poll_now("G9")  # 6: offline
        assert db.read("G9.comm_ok").value is False
        assert db.read("G9.voltage").reason is QualityReason.COMM_FAILURE
