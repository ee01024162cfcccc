"""The Modbus poller as a runtime component: polls every active meter of the asset registry.

It follows the registry at runtime (meters added, replaced, deactivated: tags registered or
unregistered, polls started or stopped) and is the command path's supply driver. The HMI
reads link and device statistics through ``ctx[MODBUS].link_stats()`` / ``device_stats()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from protocols.modbus.poller import DeviceSpec, ModbusPoller
from protocols.modbus.profile import ProfileError, ProfileLibrary, shipped_profiles_dir

from .assets import AssetSnapshot, RegistryDiff
from .commands import SUPPLY_DRIVER
from .config import ConfigError, ScadaConfig
from .context import Context, Key
from .foundation import ASSETS, CONFIG, TAGDB
from .runtime import Component, Restart

__all__ = ["MODBUS", "ModbusComponent", "device_specs", "load_profiles"]

log = logging.getLogger(__name__)

MODBUS: Key[ModbusPoller] = Key("modbus", ModbusPoller)


def load_profiles(config: ScadaConfig) -> ProfileLibrary:
    """The shipped device profiles, plus (overriding by name) those of ``modbus.profiles_dir``."""
    folders: list[Path] = [shipped_profiles_dir()]
    if config.modbus.profiles_dir:
        folders.append(config.path(config.modbus.profiles_dir))
    try:
        return ProfileLibrary.load(*folders)
    except ProfileError as exc:
        raise ConfigError(exc.source, [f"modbus.profiles_dir: {p}" for p in exc.problems]) from None


def device_specs(snapshot: AssetSnapshot) -> list[DeviceSpec]:
    return [
        DeviceSpec(m.id, m.profile, m.link, m.unit_id, m.circuit, m.room_id, m.kind)
        for m in snapshot.active_meters
    ]


class ModbusComponent(Component):
    name = "modbus"
    requires = (CONFIG, TAGDB, ASSETS)
    provides = (MODBUS, SUPPLY_DRIVER)

    def __init__(self) -> None:
        super().__init__()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, ctx: Context) -> None:
        config = ctx[CONFIG]
        assets = ctx[ASSETS]
        poller = ModbusPoller(ctx[TAGDB], config.links, load_profiles(config), config.modbus)
        poller.set_devices(device_specs(assets.snapshot))

        def follow(snapshot: AssetSnapshot, diff: RegistryDiff) -> None:
            poller.set_devices(device_specs(snapshot))

        self._unsubscribe = assets.subscribe(follow)
        self.tasks.spawn(poller.run, "poll", restart=Restart.ON_FAILURE)
        log.info("polling", extra={"meters": len(poller.devices), "links": len(poller.links)})
        ctx[MODBUS] = poller
        ctx[SUPPLY_DRIVER] = poller

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
