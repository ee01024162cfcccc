"""A simulated site of Modbus meters: realistic load, TOU energy registers, relays and valves,
fault injection, served over real Modbus TCP / RTU-over-TCP with an HTTP control API.

Names are imported lazily, so that reading the configuration (``protocols.modbus.config`` needs
the default TOU schedule of ``.tou``) does not load the server and its control API (aiohttp).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from .model import MeterSpec, SimMeter
    from .server import ModbusSimServer
    from .site import Simulator
    from .tou import DEFAULT_TOU, TouSchedule

_EXPORTS = {
    "MeterSpec": "model",
    "SimMeter": "model",
    "ModbusSimServer": "server",
    "Simulator": "site",
    "DEFAULT_TOU": "tou",
    "TouSchedule": "tou",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
