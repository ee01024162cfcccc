"""The Modbus poller as a runtime component: polls every active meter of the asset registry.

It follows the registry at runtime (meters added, replaced, deactivated: tags registered or
unregistered, polls started or stopped) and is the command path's supply driver. The HMI
reads link and device statistics through ``ctx[MODBUS].link_stats()`` / ``device_stats()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from protocols.modbus.poller import DeviceSpec, ModbusPoller
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

__all__ = ["MODBUS", "ModbusComponent", "device_specs"]

log = logging.getLogger(__name__)

MODBUS: Key[ModbusPoller] = Key("modbus", ModbusPoller)


def device_specs(snapshot: AssetSnapshot) -> list[DeviceSpec]:
    """What the poller polls: one spec per active meter of the registry."""
    return [
        DeviceSpec(m.id, m.profile, m.link, m.unit_id, m.circuit, m.room_id, m.kind)
        for m in snapshot.active_meters
    ]


class ModbusComponent(Component):
    """Provides the poller (``ctx[MODBUS]``), which is also the command path's supply driver."""

    name = "modbus"
    requires = (CONFIG, TAGDB, ASSETS)
    # started after the simulator (so the first connect succeeds) and the historian (so it sees
    # the first readings); neither is read
    optional = (SIMULATOR, HISTORY)
    provides = (MODBUS, SUPPLY_DRIVER, PARAMETER_DRIVER, METER_ACCESS)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        poller = ModbusPoller(ctx[TAGDB], config.links, load_profiles(config), config.modbus)
        poller.set_devices(device_specs(assets.snapshot))

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            poller.set_devices(device_specs(snapshot))

        unsubscribe = assets.subscribe(follow)
        try:
            self.tasks.spawn(poller.run, "poll", restart=Restart.ON_FAILURE)
            log.info("polling", extra={"meters": len(poller.devices), "links": len(poller.links)})
            ctx[MODBUS] = poller
            ctx[SUPPLY_DRIVER] = poller
            ctx[PARAMETER_DRIVER] = poller
            ctx[METER_ACCESS] = poller
            yield
        finally:
            unsubscribe()
