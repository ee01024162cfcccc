"""The demo site end to end in-process: simulator, poller and command path wired by the runtime,
every demo meter live, registry changes followed without a restart."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from protocols.modbus.sim import Simulator
from scada.commands.service import COMMANDS, CommandKind, CommandRequest
from scada.config import load_demo_config
from scada.core.tags import TAGDB
from scada.polling.component import MODBUS
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.audit import Actor
from tags import Quality

from ..harness import running_server
from ..procs import isolated_demo_overrides
from ..simulation import until


def demo_config(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_demo_config([
        *isolated_demo_overrides(tmp_path),
        "modbus.poll_intervals={ fast = 0.5, energy = 1.0, slow = 1.0, volume = 1.0 }",
        "modbus.start_spread=1.0",
        *extra,
    ])


async def test_demo_polls_every_meter_and_follows_the_registry(tmp_path: Path) -> None:
    async with running_server(demo_config(tmp_path), demo=True) as rt:
        tagdb = rt.ctx[TAGDB]
        poller = rt.ctx[MODBUS]
        assets = rt.ctx[ASSETS]
        sim: Simulator = rt.ctx[SIMULATOR]
        # every meter but the utility meter (read by hand) and the virtual one
        meters = [m.id for m in assets.snapshot.active_meters if m.polled]
        assert len(meters) == 81 and len(poller.devices) == 81 and len(sim.meters) == 81
        assert {m.id for m in assets.snapshot.active_meters if not m.polled} == {"U-B1", "V-B1-F1"}

        def live() -> bool:
            return all(tagdb.read(f"{m}.comm_ok").value is True for m in meters) and all(
                tagdb.read(f"{m}.{p}").good for m in meters for p in ("energy_total", "volume_total") if f"{m}.{p}" in tagdb
            )

        await until(live, timeout=15, what="every demo meter polled")
        assert tagdb.read("link:gw-1.comm_ok").value is True and tagdb.read("link:gw-2.comm_ok").value is True
        assert tagdb.read("C-B1-01.energy_total").good  # the multi-circuit meter, circuit 1
        assert {s.name: s.devices for s in poller.link_stats()} == {"gw-1": 41, "gw-2": 40}
        assert all(s.state == "online" for s in poller.device_stats())

        # a relay command through the runtime's command path
        commands = rt.ctx[COMMANDS]
        cut = await commands.execute(CommandRequest("E-B1-102", CommandKind.DISCONNECT, Actor.system("prepaid"), "credit exhausted"))
        assert cut.status == "confirmed" and sim.meter("E-B1-102").supply_on is False

        # replace a meter at runtime: the old one's tags go, the new one is polled and simulated
        await assets.replace_meter("E-B1-101", "E-B1-101-R", Actor("eng", "cli"), reason="meter swap", initial_reading=Decimal(0))
        assert "E-B1-101.energy_total" not in tagdb and "E-B1-101.relay_fault" not in tagdb
        assert "E-B1-101-R" in sim.meters and "E-B1-101" not in sim.meters
        await until(lambda: tagdb.read("E-B1-101-R.comm_ok").value is True and tagdb.read("E-B1-101-R.energy_total").good, what="new meter live")
        assert tagdb.read("E-B1-101-R.relay_fault").value is False
        await assets.set_active("W-B1-103", False, Actor("eng", "cli"), reason="removed")
        assert "W-B1-103.volume_total" not in tagdb and "W-B1-103" not in poller.devices
    # the simulator saved its state on stop
    assert (tmp_path / "sim.json").exists()


async def test_without_the_simulator_the_links_are_down_and_the_meters_bad(tmp_path: Path) -> None:
    config = demo_config(tmp_path, "simulator.enabled=false")
    async with running_server(config) as rt:
        tagdb = rt.ctx[TAGDB]
        await until(lambda: tagdb.read("E-B1-101.comm_ok").value is False, timeout=5, what="link down reported")
        assert tagdb.read("E-B1-101.energy_total").quality is Quality.BAD
        assert "link gw-1 down" in tagdb.read("E-B1-101.energy_total").detail
        assert tagdb.read("link:gw-1.comm_ok").value is False
