"""The simulator: physics (load, relay, TOU, valve), pipelining, control API, saved state."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from protocols.modbus.frames import decode_mbap, encode_mbap, read_registers_pdu
from protocols.modbus.poller import DeviceSpec
from protocols.modbus.profile import ProfileLibrary
from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.site import SimLink

from .conftest import START, TZ, Control


async def test_opening_the_relay_stops_energy_growth(sim: Simulator, control: Control, running_poller: Any) -> None:
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)]) as (poller, db):
        await control.load("E1", kw=2.0)
        e0 = (await poller.poll_now("E1"))["energy_total"].value
        await control.advance(1800)
        after_half_hour = await poller.poll_now("E1")
        assert after_half_hour["energy_total"].value == pytest.approx(e0 + 1.0, abs=0.011)
        assert after_half_hour["power"].value == 2.0 and after_half_hour["relay_closed"].value is True

        meter = type("M", (), {"id": "E1"})()
        await poller.set_supply(meter, False)  # trip the relay over Modbus
        assert await poller.read_supply(meter) is False
        e1 = (await poller.poll_now("E1"))["energy_total"].value
        await control.advance(3600)
        tripped = await poller.poll_now("E1")
        assert tripped["energy_total"].value == e1  # not a hundredth more while open
        assert tripped["power"].value == 0.0 and tripped["relay_closed"].value is False
        truth = await control.meter("E1")
        assert truth["relay_closed"] is False and truth["points"]["energy_total"] == e1

        await poller.set_supply(meter, True)
        await control.advance(900)
        assert (await poller.poll_now("E1"))["energy_total"].value == pytest.approx(e1 + 0.5, abs=0.011)


async def test_tou_registers_split_by_the_schedule(sim: Simulator, control: Control) -> None:
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    await control.load("E1", kw=1.0)
    # from 07:00 to 22:00 at 1 kW: valley 1 h, peak 3+2 h, flat 6+1 h, sharp 2 h
    await control.advance(15 * 3600)
    points = (await control.meter("E1"))["points"]
    assert {k: points[f"energy_{k}"] for k in ("valley", "peak", "flat", "sharp")} == {
        "valley": 1.0, "peak": 5.0, "flat": 7.0, "sharp": 2.0,
    }
    assert points["energy_total"] == 15.0


def test_tou_schedule_boundaries() -> None:
    tou = TouSchedule(timezone=TZ)
    period, end = tou.period_at(START)  # 07:00 local
    assert period == "valley" and end - START == 3600
    assert tou.period_at(START + 12 * 3600 + 60)[0] == "sharp"  # 19:01
    with pytest.raises(ValueError, match="first period must start at 00:00"):
        TouSchedule([("01:00", "flat")])
    with pytest.raises(ValueError, match=r"tou\[1\].period: expected one of sharp, peak, flat, valley, found 'deep'"):
        TouSchedule([("00:00", "flat"), ("06:00", "deep")])


async def test_water_grows_only_while_the_valve_is_open(sim: Simulator, control: Control, running_poller: Any) -> None:
    async with running_poller([DeviceSpec("W1", "water-valve", "rtu", 4)]) as (poller, db):
        await control.load("W1", m3_per_h=0.4)
        v0 = (await poller.poll_now("W1"))["volume_total"].value
        await control.advance(3600)
        values = await poller.poll_now("W1")
        assert values["volume_total"].value == pytest.approx(v0 + 0.4, abs=0.0011)
        assert values["flow"].value == 0.4
        meter = type("M", (), {"id": "W1"})()
        await poller.set_supply(meter, False)
        assert await poller.read_supply(meter) is False
        v1 = (await poller.poll_now("W1"))["volume_total"].value
        await control.advance(3600)
        closed = await poller.poll_now("W1")
        assert closed["volume_total"].value == v1 and closed["flow"].value == 0.0
        assert closed["valve_open"].value is False


async def test_daily_curve_uses_little_energy_at_night_and_more_in_the_evening(profiles: ProfileLibrary) -> None:
    sim = Simulator(profiles, [SimLink("tcp")], control_port=None, speed=0, tou=TouSchedule(timezone=TZ), start_time=START - 5 * 3600)
    meter = sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1, max_power_kw=8.0))
    night = [meter.rate_at(START - 4 * 3600 + i * 60) for i in range(60)]  # 03:00-04:00
    evening = [meter.rate_at(START + 12.5 * 3600 + i * 60) for i in range(60)]  # 19:30-20:30
    assert max(night) < min(evening)
    assert len(set(evening)) > 10  # noisy, not flat
    sim.clock.advance(24 * 3600)
    meter.advance(sim.clock())
    daily = meter.acc["total"] / 1e6
    assert 5 < daily < 40  # a plausible day for an 8 kW flat


async def test_pipelined_requests_are_all_answered(sim: Simulator) -> None:
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.ports["tcp"])
    try:
        # ten requests in one write, before any answer
        writer.write(b"".join(encode_mbap(tid, 1, read_registers_pdu(3, 0x000B, 3)) for tid in range(100, 110)))
        await writer.drain()
        buffer = b""
        frames: list[Any] = []
        while len(frames) < 10:
            buffer += await asyncio.wait_for(reader.read(4096), 2)
            got, used = decode_mbap(buffer)
            frames += got
            buffer = buffer[used:]
    finally:
        writer.close()
        await writer.wait_closed()
    assert [f.tid for f in frames] == list(range(100, 110))
    assert all(f.pdu[:2] == b"\x03\x06" for f in frames)
    voltage = struct.unpack(">H", frames[0].pdu[2:4])[0] / 10
    assert 210 < voltage < 230


async def test_control_api_names_what_is_wrong(sim: Simulator, control: Control) -> None:
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    sim.add_meter(MeterSpec("W1", "water-valve", "tcp", 2))
    assert (await control.call("GET", "/meters/NOPE", expect=404)) == {"error": "no simulated meter 'NOPE'"}
    bad = await control.call("PUT", "/meters/E1/fault", {"kind": "explode"}, expect=422)
    assert bad["error"].startswith("kind: Input should be 'none', 'timeout', 'exception', 'garbage' or 'slow'")
    assert (await control.call("PUT", "/meters/W1/load", {"kw": 1}, expect=422))["error"] == "meter W1 is a water meter: give m3_per_h"
    assert "point: 'volume_total' is not a point of E1" in (await control.call("POST", "/meters/E1/registers", {"point": "volume_total", "value": 1}, expect=422))["error"]
    index = await control.call("GET", "/")
    assert index["links"]["tcp"]["port"] == sim.ports["tcp"] and index["meters"] == 2
    listing = await control.call("GET", "/meters")
    assert {m["id"] for m in listing} == {"E1", "W1"}
    await control.call("PUT", "/meters/E1/relay", {"closed": False})
    assert (await control.meter("E1"))["relay_closed"] is False


async def test_reset_and_rollover_through_the_control_api(sim: Simulator, control: Control, running_poller: Any) -> None:
    async with running_poller([DeviceSpec("E1", "acrel-ddsy1352", "tcp", 1)]) as (poller, db):
        await control.register("E1", "energy_total", 42949672.9)  # 0.05 kWh below the u32 x 0.01 limit
        await control.load("E1", kw=1.0)
        assert (await poller.poll_now("E1"))["energy_total"].value == 42949672.9
        await control.advance(360)  # +0.1 kWh: the register rolls over
        assert (await poller.poll_now("E1"))["energy_total"].value == 0.04
        await control.register("E1", "energy_total", 0)
        assert (await poller.poll_now("E1"))["energy_total"].value == 0.0


async def test_state_survives_a_restart(profiles: ProfileLibrary, tmp_path: Path) -> None:
    def build() -> Simulator:
        s = Simulator(profiles, [SimLink("tcp")], control_port=None, speed=0, tou=TouSchedule(timezone=TZ), start_time=START)
        s.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
        return s

    first = build()
    first.set_load("E1", 2.0)
    first.clock.advance(3600)
    first.set_relay("E1", closed=False)
    first.save_state(tmp_path / "state.json")
    second = build()
    second.set_load("E1", 2.0)
    assert second.load_state(tmp_path / "state.json") == 1
    meter = second.meter("E1")
    assert meter.acc["total"] == 2_000_000 and meter.supply_on is False


async def test_control_api_answers_only_its_owner(sim: Simulator, control: Control) -> None:
    """No token, a wrong one, another Host (DNS rebinding), another Origin (a web page), a body
    that is not JSON: each refused, and nothing changes."""
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    url = control.url + "/meters/E1/fault"
    body = b'{"kind": "timeout"}'
    port = sim.control_url.rsplit(":", 1)[1]  # type: ignore[union-attr]
    good = {**control.headers, "Content-Type": "application/json"}
    http = control.session
    for headers, status, message in (
        ({"Content-Type": "application/json"}, 401, "token"),
        ({"Content-Type": "application/json", "Authorization": "Bearer not-the-token-at-all"}, 401, "token"),
        ({**good, "Host": f"attacker.example:{port}"}, 403, "Host"),
        ({**good, "Host": "127.0.0.1:1"}, 403, "Host"),
        ({**good, "Origin": "http://evil.example"}, 403, "Origin"),
        ({**good, "Origin": "http://127.0.0.1:8080"}, 403, "Origin"),  # the HMI is another origin
        ({**control.headers, "Content-Type": "text/plain"}, 415, "application/json"),
        ({**control.headers, "Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ):
        async with http.put(url, data=body, headers=headers) as r:
            assert r.status == status, (headers, await r.text())
            assert message in (await r.json())["error"]
    async with http.get(control.url + "/meters") as r:
        assert r.status == 401  # reads too
    assert sim.unit_of("E1").fault.kind == "none"
    async with http.put(url, data=body, headers={**good, "Origin": control.url}) as r:
        assert r.status == 200  # its own origin, and no origin, are fine
    assert sim.unit_of("E1").fault.kind == "timeout"


async def test_clock_and_loads_are_bounded(sim: Simulator, control: Control) -> None:
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    before = sim.clock()
    headers = {**control.headers, "Content-Type": "application/json"}
    for raw in (b'{"advance_s": Infinity}', b'{"advance_s": NaN}', b'{"advance_s": 1e400}', b'{"advance_s": -1}',
                b'{"advance_s": 0}', b'{"advance_s": 31622401}', b'{"speed": Infinity}', b'{"speed": 1e400}',
                b'{"speed": -1}', b'{"speed": 100001}', b'{"advance_s": "3600"}'):
        async with control.session.post(control.url + "/clock", data=raw, headers=headers) as r:
            assert r.status == 422, (raw, await r.text())
    for raw in (b'{"kw": Infinity}', b'{"kw": 1e400}', b'{"kw": 100001}'):
        async with control.session.put(control.url + "/meters/E1/load", data=raw, headers=headers) as r:
            assert r.status == 422, (raw, await r.text())
    async with control.session.post(control.url + "/meters/E1/registers", data=b'{"point": "energy_total", "value": 1e400}', headers=headers) as r:
        assert r.status == 422
    assert sim.clock() == before and sim.clock.speed == 0 and sim.meter("E1").override is None
    with pytest.raises(ValueError, match="advance_s"):
        await sim.advance_clock(float("inf"))


async def test_a_year_long_clock_jump_yields_to_the_loop(sim: Simulator, control: Control) -> None:
    """One simulated year at once: the meters catch up in steps, and meanwhile the loop runs
    other work (another request is answered before the jump's own answer)."""
    for unit in (1, 2):
        sim.add_meter(MeterSpec(f"E{unit}", "acrel-ddsy1352", "tcp", unit))
    start = sim.clock()
    jump = asyncio.create_task(control.call("POST", "/clock", {"advance_s": 366 * 86400}))
    answered_meanwhile = None
    while not jump.done():
        clock = await control.call("GET", "/clock")
        if not jump.done():
            answered_meanwhile = clock["now"]
            break
    result = await jump
    assert result["now"] == pytest.approx(start + 366 * 86400)
    # another request was served while the jump ran, from a clock part of the way on
    assert answered_meanwhile is not None and start <= answered_meanwhile < start + 366 * 86400
    # every meter has caught up: the next poll finds nothing left to integrate
    assert all(m.t == pytest.approx(sim.clock()) for m in sim.meters.values())


async def test_control_api_is_on_loopback_only_and_off_unless_enabled(profiles: ProfileLibrary, tmp_path: Path) -> None:
    from protocols.modbus.config import SimulatorConfig
    from protocols.modbus.sim.control import control_token, start_control_api

    assert SimulatorConfig().control_port is None  # off unless the demo or a test sets a port
    with pytest.raises(ValueError, match="loopback"):
        SimulatorConfig(host="0.0.0.0")
    s = Simulator(profiles, [SimLink("tcp")], control_port=None, speed=0)
    await s.start()
    try:
        assert s.control_url is None
    finally:
        await s.stop()
    with pytest.raises(ValueError, match="loopback"):
        await start_control_api(s, "0.0.0.0", 0, "x" * 32)
    # the token file: created for its owner only, the same token after a restart
    token = control_token(tmp_path / "data" / "simulator-control.token")
    assert len(token) >= 32 and (tmp_path / "data" / "simulator-control.token").stat().st_mode & 0o077 == 0
    assert control_token(tmp_path / "data" / "simulator-control.token") == token
