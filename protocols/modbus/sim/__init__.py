"""A simulated site of Modbus meters: realistic load, TOU energy registers, relays and valves,
fault injection, served over real Modbus TCP / RTU-over-TCP with an HTTP control API."""

from .model import MeterSpec, SimMeter
from .server import ModbusSimServer
from .site import Simulator
from .tou import DEFAULT_TOU, TouSchedule

__all__ = ["DEFAULT_TOU", "MeterSpec", "ModbusSimServer", "SimMeter", "Simulator", "TouSchedule"]
