"""The site's library of device profiles: what meters may name in their ``profile`` key."""

from __future__ import annotations

from pathlib import Path

from protocols.library import load_library
from protocols.modbus.profile import ProfileError, ProfileLibrary, shipped_profiles_dir
from scada.config import ScadaConfig
from scada.core.configbase import ConfigError

__all__ = ["known_profile_names", "load_profiles"]


def load_profiles(config: ScadaConfig) -> ProfileLibrary:
    """The shipped device profiles of every protocol, plus (overriding by name) those of
    ``modbus.profiles_dir``."""
    folders: list[Path] = [shipped_profiles_dir()]
    if config.modbus.profiles_dir:
        folders.append(config.path(config.modbus.profiles_dir))
    try:
        return load_library(*folders)
    except ProfileError as exc:
        raise ConfigError(exc.source, [f"modbus.profiles_dir: {p}" for p in exc.problems]) from None


def known_profile_names(config: ScadaConfig) -> set[str]:
    """Names of the device profiles meters may use (shipped and ``modbus.profiles_dir``)."""
    return set(load_profiles(config).names())
