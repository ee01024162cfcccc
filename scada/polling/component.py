"""The Modbus poller as a runtime component: polls every active meter of the asset registry.

It follows the registry at runtime (meters added, replaced, deactivated: tags registered or
unregistered, polls started or stopped) and is the command path's supply driver. The HMI
reads link and device statistics through ``ctx[MODBUS].link_stats()`` / ``device_stats()``.
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

__all__ = ["DLT645", "MODBUS", "ModbusComponent", "SupplyRouter", "device_specs"]

log = logging.getLogger(__name__)

MODBUS: Key[ModbusPoller] = Key("modbus", ModbusPoller)
# the poller of the DL/T 645 links (the same poller with the DL/T 645 driver)
DLT645: Key[ModbusPoller] = Key("dlt645", ModbusPoller)


class SupplyRouter:
    """The command path's supply and parameter driver over several pollers, and the meters'
    reads on demand and link loads: each meter goes to the poller of its link's protocol."""

    def __init__(self, *pollers: ModbusPoller) -> None:
        self.pollers = pollers

    def _of(self, meter: MeterRef) -> ModbusPoller:
        for poller in self.pollers:
            if meter.id in poller.devices:
                return poller
        return self.pollers[0]

    def supports_supply(self, meter: MeterRef) -> bool:
        return self._of(meter).supports_supply(meter)

    async def set_supply(self, meter: MeterRef, on: bool, *, bulk: bool = False) -> None:
        await self._of(meter).set_supply(meter, on, bulk=bulk)

    async def read_supply(self, meter: MeterRef, *, bulk: bool = False) -> bool:
        return await self._of(meter).read_supply(meter, bulk=bulk)

    def block_spec(self, meter: MeterRef, block: str) -> Any:
        return self._of(meter).block_spec(meter, block)

    async def write_block(self, meter: MeterRef, block: str, value: object, *, bulk: bool = False) -> None:
        await self._of(meter).write_block(meter, block, value, bulk=bulk)

    async def read_block(self, meter: MeterRef, block: str, *, bulk: bool = False) -> object:
        return await self._of(meter).read_block(meter, block, bulk=bulk)

    async def poll_now(self, meter_id: str, *, bulk: bool = False) -> dict[str, Any]:
        for poller in self.pollers:
            if meter_id in poller.devices:
                return await poller.poll_now(meter_id, bulk=bulk)
        return await self.pollers[0].poll_now(meter_id, bulk=bulk)

    def link_of(self, meter_id: str) -> str | None:
        return next((link for p in self.pollers if (link := p.link_of(meter_id)) is not None), None)

    def link_backlog(self, link: str) -> int:
        return sum(p.link_backlog(link) for p in self.pollers)


def device_specs(snapshot: AssetSnapshot) -> list[DeviceSpec]:
    """What the poller polls: one spec per active meter of the registry."""
    return [
        DeviceSpec(m.id, m.profile, m.link, m.unit_id, m.circuit, m.room_id, m.kind, m.address)
        for m in snapshot.active_meters
    ]


class ModbusComponent(Component):
    """Provides the poller (``ctx[MODBUS]``), which is also the command path's supply driver."""

    name = "modbus"
    requires = (CONFIG, TAGDB, ASSETS)
    # started after the simulator (so the first connect succeeds) and the historian (so it sees
    # the first readings); neither is read
    optional = (SIMULATOR, HISTORY)
    provides = (MODBUS, DLT645, SUPPLY_DRIVER, PARAMETER_DRIVER, METER_ACCESS)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        profiles = load_profiles(config)
        modbus_links = [link for link in config.links if isinstance(link, LinkConfig)]
        dlt_links = [link for link in config.links if isinstance(link, Dlt645LinkConfig)]
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
        dlt_names = {link.name for link in dlt_links}

        def place(snapshot: AssetSnapshot) -> None:
            specs = device_specs(snapshot)
            poller.set_devices([s for s in specs if s.link not in dlt_names])
            dlt.set_devices([s for s in specs if s.link in dlt_names])

        place(assets.snapshot)

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            place(snapshot)

        unsubscribe = assets.subscribe(follow)
        try:
            self.tasks.spawn(poller.run, "poll", restart=Restart.ON_FAILURE)
            if dlt_links:
                self.tasks.spawn(dlt.run, "poll-dlt645", restart=Restart.ON_FAILURE)
            log.info("polling", extra={"meters": len(poller.devices) + len(dlt.devices), "links": len(config.links)})
            ctx[MODBUS] = poller
            ctx[DLT645] = dlt
            router = SupplyRouter(poller, dlt)
            ctx[SUPPLY_DRIVER] = router
            ctx[PARAMETER_DRIVER] = router
            ctx[METER_ACCESS] = router
            yield
        finally:
            unsubscribe()
