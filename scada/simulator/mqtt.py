"""The demo's MQTT gateways: the registry's meters on the MQTT links named in
``[simulator] links`` are modelled like the simulator's other meters (the same load curve, time
of use and relay, on the simulator's clock) and published by a gateway of our own
(:class:`protocols.mqtt.simgw.SimGateway`) to the configured broker, as Sparkplug B or JSON.
Relay commands the server sends (DCMD, or the JSON command topic) switch the modelled meter.
The values follow the simulator's (possibly sped-up) clock; the readings carry the gateway's real time.
Without a broker nothing of this runs: the demo stays broker-free unless one is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from protocols.modbus.profile import ProfileLibrary
from protocols.modbus.sim import MeterSpec, Simulator
from protocols.modbus.sim.model import SimMeter
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.profile import MqttProfile
from protocols.mqtt.simgw import SimDevice, SimGateway
from scada.site.assets import AssetSnapshot

__all__ = ["DemoMqttGateway"]

log = logging.getLogger(__name__)


class DemoMqttGateway:
    """One simulated gateway for one MQTT link, publishing its meters every ``every_s``."""

    def __init__(
        self, link: MqttLinkConfig, sim: Simulator, profiles: ProfileLibrary, snapshot: Callable[[], AssetSnapshot],
        *, every_s: float = 10.0, password: str | None = None,
    ) -> None:
        self.link = link
        self.sim = sim
        self.profiles = profiles
        self.snapshot = snapshot
        self.every_s = every_s
        self.password = password
        self.meters: dict[str, SimMeter] = {}  # device id -> model
        self.gateway: SimGateway | None = None

    def _build(self) -> SimGateway:
        now = self.sim.clock()
        devices = []
        for m in self.snapshot().active_meters:
            profile = self.profiles.get(m.profile)
            if m.link != self.link.name or not isinstance(profile, MqttProfile):
                continue
            device = m.address or m.id
            spec = MeterSpec(m.id, m.profile, m.link, m.unit_id, None,
                             float(m.max_power_kw) if m.max_power_kw is not None else None, float(m.initial_reading), device)
            model = self.meters.get(device) or SimMeter(spec, profile, self.sim.tou, now, self.sim.seed)  # type: ignore[arg-type]
            self.meters[device] = model
            devices.append(SimDevice(device, self._values(model, profile, now)))
        c = self.link
        return SimGateway(
            c.host, c.broker_port, c.edge_node_id if c.format == "sparkplug" else c.gateway_id, devices,
            group=c.group_id, format=c.format, keepalive=max(5, c.keepalive_s), username=c.username, password=self.password,
        )

    @staticmethod
    def _values(model: SimMeter, profile: MqttProfile, now: float) -> dict[str, bool | float | str]:
        model.advance(now)
        out: dict[str, bool | float | str] = {}
        for point in profile.points.values():
            v = model.value(point, now)
            if v is not None:
                out[point.metric] = v if isinstance(v, (bool, str)) else float(v)
        return out

    async def run(self) -> None:
        """Connect (again and again while the broker is away) and publish until cancelled."""
        backoff, warned = 1.0, False
        while True:
            gw = self._build()
            try:
                await gw.start()
            except OSError as exc:
                if not warned:
                    log.warning("demo MQTT gateway: broker unreachable", extra={"link": self.link.name, "error": str(exc)})
                    warned = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            log.info("demo MQTT gateway publishing", extra={"link": self.link.name, "meters": len(gw.devices)})
            self.gateway, backoff, warned = gw, 1.0, False
            try:
                await self._publish(gw)
            except OSError as exc:
                log.warning("demo MQTT gateway: connection lost", extra={"link": self.link.name, "error": str(exc)})
            finally:
                self.gateway = None
                await gw.stop()

    async def _publish(self, gw: SimGateway) -> None:
        done = 0
        while True:
            now = self.sim.clock()
            for model, value in [(self.meters[d], v) for d, _metric, v in gw.commands[done:] if d in self.meters]:
                model.switch(bool(value), now)
            done = len(gw.commands)
            for device, model in self.meters.items():
                if device in gw.devices:
                    gw.read(device, self._values(model, model.profile, now))  # type: ignore[arg-type]
            await gw.flush()
            if gw.wire is None or gw.wire.writer is None or gw.wire.writer.is_closing():
                raise ConnectionError("the broker closed the connection")
            await asyncio.sleep(self.every_s)
