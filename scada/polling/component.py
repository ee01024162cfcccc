"""The meters' communications as a runtime component: polls every active meter of the asset
registry on its Modbus or DL/T 645 link, and takes what MQTT gateways publish.

It follows the registry at runtime (meters added, replaced, deactivated: tags registered or
unregistered, polls started or stopped) and is the command path's supply driver, routing each
meter's command to its link's protocol. The HMI reads link and device statistics through
``ctx[COMMS]`` (every protocol) or ``ctx[MODBUS]`` / ``ctx[DLT645]`` / ``ctx[MQTT]``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from protocols.dlt645.config import Dlt645LinkConfig
from protocols.dlt645.driver import Dlt645Driver
from protocols.modbus.config import LinkConfig
from protocols.modbus.poller import DeviceSpec, MeterRef, ModbusPoller
from protocols.modbus.stats import DeviceStats, LinkStats
from protocols.mqtt.config import MqttLinkConfig
from protocols.mqtt.links import MqttLinks
from scada.commands.service import METER_ACCESS, PARAMETER_DRIVER, SUPPLY_DRIVER
from scada.config import CONFIG
from scada.core.context import Context, Key
from scada.core.runtime import Component, Restart
from scada.core.tags import TAGDB
from scada.history.service import HISTORY
from scada.simulator.component import SIMULATOR
from scada.site.assets import AssetSnapshot, RegistryDiff
from scada.site.component import ASSETS
from scada.site.profiles import load_profiles

__all__ = ["COMMS", "Comms", "DLT645", "MODBUS", "MQTT", "ModbusComponent", "SupplyRouter", "device_specs"]

log = logging.getLogger(__name__)

MODBUS: Key[ModbusPoller] = Key("modbus", ModbusPoller)
# the poller of the DL/T 645 links (the same poller with the DL/T 645 driver)
DLT645: Key[ModbusPoller] = Key("dlt645", ModbusPoller)
# the MQTT gateways
MQTT: Key[MqttLinks] = Key("mqtt", MqttLinks)


class SupplyRouter:
    """The command path's supply and parameter driver over several pollers, and the meters'
    reads on demand and link loads: each meter goes to the poller of its link's protocol.

    An MQTT gateway has no link to pace (a command is one publish) and no parameter blocks or
    reads on demand: a bulk command goes to it as an ordinary one, a block or a read is refused
    with the reason."""

    def __init__(self, *pollers: ModbusPoller | MqttLinks) -> None:
        self.pollers = pollers

    def _of(self, meter: MeterRef) -> ModbusPoller | MqttLinks:
        return self._of_id(meter.id)

    def _of_id(self, meter_id: str) -> ModbusPoller | MqttLinks:
        for poller in self.pollers:
            if meter_id in poller.devices:
                return poller
        return self.pollers[0]

    def _polled(self, meter_id: str, what: str) -> ModbusPoller:
        poller = self._of_id(meter_id)
        if isinstance(poller, MqttLinks):
            raise LookupError(f"meter {meter_id} reports through an MQTT gateway: no {what}")
        return poller

    def supports_supply(self, meter: MeterRef) -> bool:
        return self._of(meter).supports_supply(meter)

    async def set_supply(self, meter: MeterRef, on: bool, *, bulk: bool = False) -> None:
        poller = self._of(meter)
        if isinstance(poller, MqttLinks):
            await poller.set_supply(meter, on)
        else:
            await poller.set_supply(meter, on, bulk=bulk)

    async def read_supply(self, meter: MeterRef, *, bulk: bool = False) -> bool:
        poller = self._of(meter)
        if isinstance(poller, MqttLinks):
            return await poller.read_supply(meter)
        return await poller.read_supply(meter, bulk=bulk)

    def block_spec(self, meter: MeterRef, block: str) -> Any:
        poller = self._of(meter)
        return None if isinstance(poller, MqttLinks) else poller.block_spec(meter, block)

    async def write_block(self, meter: MeterRef, block: str, value: object, *, bulk: bool = False) -> None:
        await self._polled(meter.id, "parameter blocks").write_block(meter, block, value, bulk=bulk)

    async def read_block(self, meter: MeterRef, block: str, *, bulk: bool = False) -> object:
        return await self._polled(meter.id, "parameter blocks").read_block(meter, block, bulk=bulk)

    async def poll_now(self, meter_id: str, *, bulk: bool = False) -> dict[str, Any]:
        return await self._polled(meter_id, "read on demand (it reports on its own)").poll_now(meter_id, bulk=bulk)

    def link_of(self, meter_id: str) -> str | None:
        for poller in self.pollers:
            if isinstance(poller, MqttLinks):
                device = poller.devices.get(meter_id)
                if device is not None:
                    return device.spec.link
            elif (link := poller.link_of(meter_id)) is not None:
                return link
        return None

    def link_backlog(self, link: str) -> int:
        # an MQTT gateway's commands are not queued behind polls
        return sum(p.link_backlog(link) for p in self.pollers if not isinstance(p, MqttLinks))


class Comms:
    """Link and device statistics of every protocol, for the HMI."""

    def __init__(self, *sources: ModbusPoller | MqttLinks) -> None:
        self.sources = sources

    def link_stats(self) -> list[LinkStats]:
        return [s for source in self.sources for s in source.link_stats()]

    def device_stats(self, meter_id: str | None = None) -> list[DeviceStats]:
        return [d for source in self.sources for d in source.device_stats(meter_id)]


COMMS: Key[Comms] = Key("comms", Comms)


def device_specs(snapshot: AssetSnapshot) -> list[DeviceSpec]:
    """What the poller polls: one spec per active meter of the registry that has a link (not
    the meters read by hand, nor the virtual ones)."""
    return [
        DeviceSpec(m.id, m.profile, m.link, m.unit_id, m.circuit, m.room_id, m.kind, m.address)
        for m in snapshot.active_meters
        if m.polled
    ]


class ModbusComponent(Component):
    """Provides the poller (``ctx[MODBUS]``), which is also the command path's supply driver."""

    name = "modbus"
    requires = (CONFIG, TAGDB, ASSETS)
    # started after the simulator (so the first connect succeeds) and the historian (so it sees
    # the first readings); neither is read
    optional = (SIMULATOR, HISTORY)
    provides = (MODBUS, DLT645, MQTT, COMMS, SUPPLY_DRIVER, PARAMETER_DRIVER, METER_ACCESS)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        profiles = load_profiles(config)
        modbus_links = [link for link in config.links if isinstance(link, LinkConfig)]
        dlt_links = [link for link in config.links if isinstance(link, Dlt645LinkConfig)]
        mqtt_links = [link for link in config.links if isinstance(link, MqttLinkConfig)]
        base = Path(config.base_dir)
        secrets = {
            link.name: (
                link.password.get(base) if link.password else None,
                link.operator_code.get(base) if link.operator_code else None,
            )
            for link in dlt_links
        }
        poller = ModbusPoller(ctx[TAGDB], modbus_links, profiles, config.modbus)
        dlt = ModbusPoller(ctx[TAGDB], dlt_links, profiles, config.modbus, driver=Dlt645Driver(secrets))
        mqtt = MqttLinks(
            ctx[TAGDB], mqtt_links, profiles, {link.name: link.password.get(base) if link.password else None for link in mqtt_links}
        )
        dlt_names = {link.name for link in dlt_links}
        mqtt_names = {link.name for link in mqtt_links}

        def place(snapshot: AssetSnapshot) -> None:
            specs = device_specs(snapshot)
            poller.set_devices([s for s in specs if s.link not in dlt_names and s.link not in mqtt_names])
            dlt.set_devices([s for s in specs if s.link in dlt_names])
            mqtt.set_devices([s for s in specs if s.link in mqtt_names])

        place(assets.snapshot)

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            place(snapshot)

        unsubscribe = assets.subscribe(follow)
        try:
            # the meters are read once the whole server has started: readings flowing through
            # components still starting made them contend for the event loop and the database's
            # write lock (at 20,000 meters the start then failed on "database is locked")
            self.tasks.spawn(poller.run, "poll", restart=Restart.ON_FAILURE, after_start=True)
            if dlt_links:
                self.tasks.spawn(dlt.run, "poll-dlt645", restart=Restart.ON_FAILURE, after_start=True)
            if mqtt_links:
                self.tasks.spawn(mqtt.run, "mqtt", restart=Restart.ON_FAILURE, after_start=True)
            log.info(
                "polling",
                extra={"meters": len(poller.devices) + len(dlt.devices) + len(mqtt.devices), "links": len(config.links)},
            )
            ctx[MODBUS] = poller
            ctx[DLT645] = dlt
            ctx[MQTT] = mqtt
            ctx[COMMS] = Comms(poller, dlt, mqtt)
            router = SupplyRouter(poller, dlt, mqtt)
            ctx[SUPPLY_DRIVER] = router
            ctx[PARAMETER_DRIVER] = router
            ctx[METER_ACCESS] = router
            yield
        finally:
            unsubscribe()
