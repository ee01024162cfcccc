"""The site simulator: a runtime component for ``scada demo`` and the ``scada simulate`` command.

The component serves the active meters of the asset registry that sit on simulated links
(``[simulator] links``, or every loopback TCP link) on those links' ports, follows registry
changes, and keeps the meters' state in ``[simulator] state_file`` so a restarted demo goes on
where it stopped instead of showing every meter reset to zero.

``scada simulate --meters N --port P`` runs a stand-alone simulator of N synthetic meters:
meter ``i`` (0-based) is ``SIM-<i+1:05d>``, on port ``P + i // per_port`` (all on free ports
with ``--port 0``), unit id ``1 + i % per_port``, profiles taken in turn from ``--profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Literal

from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.site import SimLink

from .assets import AssetSnapshot, RegistryDiff
from .config import ScadaConfig
from .context import Context, Key
from .foundation import ASSETS, CONFIG
from .runtime import Component, Restart

__all__ = ["SIMULATOR", "SimulatorComponent", "register"]

log = logging.getLogger(__name__)

SIMULATOR: Key[Simulator] = Key("simulator", Simulator)


def _meter_specs(snapshot: AssetSnapshot, links: set[str]) -> list[MeterSpec]:
    return [
        MeterSpec(
            m.id, m.profile, m.link, m.unit_id, m.circuit,
            float(m.max_power_kw) if m.max_power_kw is not None else None, float(m.initial_reading),
        )
        for m in snapshot.active_meters
        if m.link in links
    ]


def build_simulator(config: ScadaConfig) -> Simulator:
    from .polling import load_profiles

    sim_cfg = config.simulator
    links = [SimLink(link.name, link.port or 0, "rtu" if link.kind == "rtu_over_tcp" else "tcp") for link in config.simulated_links]
    tou = TouSchedule([(t.start, t.period) for t in sim_cfg.tou], timezone=config.site.timezone)
    return Simulator(
        load_profiles(config), links, host=sim_cfg.host, control_port=sim_cfg.control_port,
        speed=sim_cfg.speed, tou=tou, seed=sim_cfg.seed,
    )


class SimulatorComponent(Component):
    name = "simulator"
    requires = (CONFIG, ASSETS)
    provides = (SIMULATOR,)

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulator | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._state_file: str | None = None

    async def start(self, ctx: Context) -> None:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        self.sim = sim = build_simulator(config)
        served = set(sim.servers)
        for problem in sim.set_meters(_meter_specs(assets.snapshot, served)):
            log.warning("meter not simulated", extra={"error": problem})
        if config.simulator.state_file:
            self._state_file = str(config.path(config.simulator.state_file))
            restored = sim.load_state(self._state_file)
            if restored:
                log.info("simulator state restored", extra={"meters": restored, "file": self._state_file})
        await sim.start()

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            for problem in sim.set_meters(_meter_specs(snapshot, served)):
                log.warning("meter not simulated", extra={"error": problem})

        self._unsubscribe = assets.subscribe(follow)
        if self._state_file:
            self.tasks.spawn(lambda: self._save_periodically(config.simulator.save_every_s), "save-state", Restart.ON_FAILURE)
        ports = " ".join(f"{name}={sim.host}:{port}" for name, port in sim.ports.items())
        log.info("simulator listening", extra={"modbus": ports, "control": sim.control_url, "meters": len(sim.meters)})
        ctx[SIMULATOR] = sim

    async def _save_periodically(self, every_s: float) -> None:
        assert self.sim is not None and self._state_file is not None
        while True:
            await asyncio.sleep(every_s)
            # the meters are read on the loop; only the file is written in a thread
            await asyncio.to_thread(Simulator.write_state, self._state_file, self.sim.state())

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.sim is not None:
            if self._state_file:
                try:
                    self.sim.save_state(self._state_file)
                except OSError as exc:
                    log.error("simulator state not saved", extra={"file": self._state_file, "error": str(exc)})
            await self.sim.stop()


# -- scada simulate -------------------------------------------------------------------------------------
def _out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


async def _simulate(args: argparse.Namespace) -> int:
    from protocols.modbus.profile import ProfileLibrary

    profiles = ProfileLibrary.load()
    names = args.profile or ["acrel-ddsy1352"]
    for name in names:
        if name not in profiles:
            raise SystemExit(f"--profile: unknown device profile {name!r} (known: {', '.join(profiles.names())})")
    per_port = args.per_port
    n_ports = (args.meters + per_port - 1) // per_port
    framing: Literal["tcp", "rtu"] = "rtu" if args.rtu else "tcp"
    links = [SimLink(f"port{k}", (args.port + k) if args.port else 0, framing) for k in range(n_ports)]
    sim = Simulator(
        profiles, links, host=args.host, control_port=args.control_port, speed=args.speed,
        tou=TouSchedule(timezone=args.timezone), seed=args.seed,
    )
    for i in range(args.meters):
        profile = profiles[names[i % len(names)]]
        sim.add_meter(MeterSpec(
            f"SIM-{i + 1:05d}", profile.name, f"port{i // per_port}", 1 + i % per_port,
            1 if profile.circuits > 1 else None, args.max_power_kw,
        ))
    await sim.start()
    try:
        for k, link in enumerate(links):
            count = min(per_port, args.meters - k * per_port)
            _out(f"modbus {link.name} {args.host}:{sim.ports[link.name]} ({framing}) units 1-{count}")
        if sim.control_url:
            _out(f"control {sim.control_url}")
        _out(f"simulating {args.meters} meters at speed {args.speed:g}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.meters < 1:
        raise SystemExit("--meters: at least 1")
    if not 1 <= args.per_port <= 247:
        raise SystemExit("--per-port: 1 to 247 unit ids per port")
    return asyncio.run(_simulate(args))


def register(sub: Any) -> None:
    """Add ``scada simulate`` to the command line."""
    p = sub.add_parser("simulate", help="run a stand-alone Modbus meter simulator")
    p.add_argument("--meters", type=int, default=10, help="number of simulated meters (default 10)")
    p.add_argument("--port", type=int, default=5020, help="first Modbus port; 0 binds free ports (default 5020)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--per-port", type=int, default=247, help="meters (unit ids) per port (default 247)")
    p.add_argument("--profile", action="append", help="device profile, repeatable to mix (default acrel-ddsy1352)")
    p.add_argument("--rtu", action="store_true", help="RTU framing over TCP instead of Modbus TCP")
    p.add_argument("--control-port", type=int, default=8090, help="HTTP control API port; 0 binds a free one (default 8090)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timezone", default="UTC", help="time zone of the TOU schedule (default UTC)")
    p.add_argument("--max-power-kw", type=float, default=8.0, help="rating of each meter (sets its load)")
    p.set_defaults(handler=_cmd_simulate)
