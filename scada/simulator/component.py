"""The site simulator as a runtime component, for ``scada demo``.

It serves the active meters of the asset registry that sit on simulated links
(``[simulator] links``, or every loopback TCP link) on those links' ports, follows registry
changes, and keeps the meters' state in ``[simulator] state_file`` so a restarted demo goes on
where it stopped instead of showing every meter reset to zero. An MQTT link named in
``[simulator] links`` gets a gateway of its own publishing its meters to the link's broker
(:mod:`scada.simulator.mqtt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.control import TOKEN_FILE, control_token
from protocols.modbus.sim.site import SimLink
from protocols.mqtt.config import MqttLinkConfig
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.simulator.mqtt import DemoMqttGateway
from scada.site.assets import AssetSnapshot, RegistryDiff
from scada.site.component import ASSETS
from scada.site.profiles import load_profiles
from tags.timers import run_every

__all__ = ["SIMULATOR", "SimulatorComponent", "build_simulator"]

log = logging.getLogger(__name__)

SIMULATOR: Key[Simulator] = Key("simulator", Simulator)


def _meter_specs(snapshot: AssetSnapshot, links: set[str]) -> list[MeterSpec]:
    return [
        MeterSpec(
            m.id, m.profile, m.link, m.unit_id, m.circuit,
            float(m.max_power_kw) if m.max_power_kw is not None else None, float(m.initial_reading), m.address,
        )
        for m in snapshot.active_meters
        if m.polled and m.link in links
    ]


def build_simulator(config: ScadaConfig, token: str | None = None) -> Simulator:
    """The simulator of the config's simulated links (not yet started, no meters yet). Its
    control API (when ``simulator.control_port`` is set) takes ``token``, by default the one of
    ``<runtime.data_dir>/simulator-control.token`` (created on first use)."""
    sim_cfg = config.simulator
    framings = {"rtu_over_tcp": "rtu", "dlt645": "dlt645"}
    links = [SimLink(link.name, link.port or 0, framings.get(link.kind, "tcp")) for link in config.simulated_links]  # type: ignore[arg-type]
    tou = TouSchedule([(t.start, t.period) for t in sim_cfg.tou], timezone=config.site.timezone)
    if token is None and sim_cfg.control_port is not None:
        token = control_token(control_token_file(config))
    return Simulator(
        load_profiles(config), links, host=sim_cfg.host, control_port=sim_cfg.control_port,
        speed=sim_cfg.speed, tou=tou, seed=sim_cfg.seed, control_token=token,
    )


def control_token_file(config: ScadaConfig) -> str:
    """Where the control API's token is kept: in the data directory."""
    return str(config.data_dir / TOKEN_FILE)


class SimulatorComponent(Component):
    """Serves the registry's meters on simulated links (``ctx[SIMULATOR]``); keeps their state on disk."""

    name = "simulator"
    requires = (CONFIG, ASSETS)
    provides = (SIMULATOR,)

    def __init__(self, *, announce: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.announce = announce or (lambda _msg: None)  # the demo says where the control token is

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        token = None
        if config.simulator.control_port is not None:  # a file read (or written): off the loop
            token = await asyncio.to_thread(control_token, control_token_file(config))
        sim = build_simulator(config, token)
        served = set(sim.servers)
        for problem in sim.set_meters(_meter_specs(assets.snapshot, served)):
            log.warning("meter not simulated", extra={"error": problem})
        state_file = str(config.path(config.simulator.state_file)) if config.simulator.state_file else None
        if state_file:
            restored = sim.load_state(state_file)
            if restored:
                log.info("simulator state restored", extra={"meters": restored, "file": state_file})
        await sim.start()

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            for problem in sim.set_meters(_meter_specs(snapshot, served)):
                log.warning("meter not simulated", extra={"error": problem})

        async def save() -> None:
            assert state_file is not None
            # the meters are read on the loop; only the file is written in a thread
            await asyncio.to_thread(Simulator.write_state, state_file, sim.state())

        unsubscribe = assets.subscribe(follow)
        profiles = load_profiles(config)
        for link in config.links:
            if isinstance(link, MqttLinkConfig) and link.name in config.simulator.links:
                password = link.password.get(config.path(".")) if link.password else None
                gateway = DemoMqttGateway(link, sim, profiles, lambda: assets.snapshot, password=password)
                self.tasks.spawn(gateway.run, f"mqtt-gateway-{link.name}", Restart.ON_FAILURE)
        try:
            if state_file:
                every = config.simulator.save_every_s
                self.tasks.spawn(
                    lambda: run_every(every, save, name="simulator-state", log_failures=False),
                    "save-state", Restart.ON_FAILURE,
                )
            ports = " ".join(f"{name}={sim.host}:{port}" for name, port in sim.ports.items())
            log.info("simulator listening", extra={"modbus": ports, "control": sim.control_url, "meters": len(sim.meters)})
            if sim.control_url:
                self.announce(f"Simulator control API at {sim.control_url}; send the token of {control_token_file(config)}"
                              " as 'Authorization: Bearer <token>'")
            ctx[SIMULATOR] = sim
            yield
        finally:
            unsubscribe()
            if state_file:
                try:
                    sim.save_state(state_file)
                except OSError as exc:
                    log.error("simulator state not saved", extra={"file": state_file, "error": str(exc)})
            await sim.stop()
