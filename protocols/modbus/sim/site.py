"""A simulated site: meters on simulated gateways (one Modbus port each), a clock, the
HTTP control API, and the meters' state (saved and restored so a restart continues)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...dlt645.sim import Dlt645SimServer
from ..profile import ProfileLibrary
from .clock import SimClock
from .control import MAX_ADVANCE_S, is_loopback, start_control_api
from .model import MeterSpec, SimMeter
from .server import Fault, ModbusSimServer, ServerStats
from .tou import TouSchedule

__all__ = ["SimClock", "SimLink", "Simulator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimLink:
    """A simulated gateway: one port, Modbus TCP or RTU framing, or a DL/T 645 bus."""

    name: str
    port: int = 0
    framing: Literal["tcp", "rtu", "dlt645"] = "tcp"


class Simulator:
    def __init__(
        self,
        profiles: ProfileLibrary,
        links: Sequence[SimLink],
        *,
        host: str = "127.0.0.1",
        control_port: int | None = 0,
        speed: float = 1.0,
        tou: TouSchedule | None = None,
        seed: int = 0,
        start_time: float | None = None,
        dlt645_password: str | None = None,
        control_token: str | None = None,
    ) -> None:
        self.profiles = profiles
        self.host = host
        self.clock = SimClock(speed, start_time)
        self.tou = tou or TouSchedule()
        self.seed = seed
        self.control_port = control_port
        # requests to the control API carry this token (a fresh random one unless given)
        self.control_token = control_token or secrets.token_urlsafe(32)
        self._advancing = asyncio.Lock()
        self.servers: dict[str, Any] = {
            link.name: (
                Dlt645SimServer(link.name, self.clock, host=host, port=link.port, password=dlt645_password)
                if link.framing == "dlt645"
                else ModbusSimServer(link.name, self.clock, host=host, port=link.port, framing=link.framing)
            )
            for link in links
        }
        self.meters: dict[str, SimMeter] = {}
        self._control: Any = None  # aiohttp AppRunner of the control API
        self.control_url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            for server in self.servers.values():
                await server.start()
            if self.control_port is not None:
                # the Modbus side may listen elsewhere (``scada simulate --host``); control: loopback only
                control_host = self.host if is_loopback(self.host) else "127.0.0.1"
                self._control, self.control_url = await start_control_api(self, control_host, self.control_port, self.control_token)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._control is not None:
            await self._control.cleanup()
            self._control = None
        for server in self.servers.values():
            await server.stop()

    @property
    def ports(self) -> dict[str, int]:
        return {name: s.port for name, s in self.servers.items()}

    # -- meters ----------------------------------------------------------------------------------
    def add_meter(self, spec: MeterSpec) -> SimMeter:
        """Serve ``spec``; raises ValueError naming what is wrong (profile, link, address)."""
        profile = self.profiles.get(spec.profile)
        if profile is None:
            raise ValueError(f"meter {spec.id}: unknown device profile {spec.profile!r} (known: {', '.join(self.profiles.names())})")
        server = self.servers.get(spec.link)
        if server is None:
            raise ValueError(f"meter {spec.id}: link {spec.link!r} is not simulated (simulated: {', '.join(self.servers) or 'none'})")
        try:
            profile.check_circuit(spec.circuit)
        except ValueError as exc:
            raise ValueError(f"meter {spec.id}: {exc}") from None
        dlt645 = isinstance(server, Dlt645SimServer)
        if dlt645 != (getattr(profile, "protocol", "modbus") == "dlt645"):
            raise ValueError(f"meter {spec.id}: profile {profile.name} does not speak the protocol of link {spec.link}")
        if dlt645 and not (spec.address and len(spec.address) == 12 and spec.address.isdigit()):
            raise ValueError(f"meter {spec.id}: a DL/T 645 meter needs a 12-digit address, found {spec.address!r}")
        if spec.id in self.meters:
            self.remove_meter(spec.id)
        meter = SimMeter(spec, profile, self.tou, self.clock(), self.seed)
        if dlt645:
            assert spec.address is not None
            server.attach(spec.address, meter)
        else:
            server.unit_for(spec.unit_id, profile).attach(meter)
        self.meters[spec.id] = meter
        return meter

    def remove_meter(self, meter_id: str) -> None:
        meter = self.meters.pop(meter_id, None)
        if meter is None:
            return
        server = self.servers[meter.spec.link]
        if isinstance(server, Dlt645SimServer):
            server.detach(meter_id)
            return
        unit = server.units.get(meter.spec.unit_id)
        if unit is not None:
            unit.detach(meter_id)
            if not unit.meters:
                del server.units[meter.spec.unit_id]

    def set_meters(self, specs: Iterable[MeterSpec]) -> list[str]:
        """Serve exactly ``specs`` (keeping the state of meters that stay the same).
        Returns the problems of specs that could not be served."""
        wanted = {s.id: s for s in specs}
        for meter_id in [m for m in self.meters if m not in wanted or self.meters[m].spec != wanted[m]]:
            self.remove_meter(meter_id)
        problems = []
        for spec in wanted.values():
            if spec.id not in self.meters:
                try:
                    self.add_meter(spec)
                except ValueError as exc:
                    problems.append(str(exc))
        return problems

    def meter(self, meter_id: str) -> SimMeter:
        try:
            return self.meters[meter_id]
        except KeyError:
            raise KeyError(f"no simulated meter {meter_id!r}") from None

    def unit_of(self, meter_id: str) -> Any:
        meter = self.meter(meter_id)
        server = self.servers[meter.spec.link]
        return server.units[meter.spec.address if isinstance(server, Dlt645SimServer) else meter.spec.unit_id]

    # -- control -------------------------------------------------------------------------------------
    def set_fault(self, meter_id: str, fault: Fault) -> None:
        """Faults act on the meter's unit id (all circuits of a multi-circuit meter)."""
        self.unit_of(meter_id).fault = fault

    def set_load(self, meter_id: str, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("a load cannot be negative")
        meter = self.meter(meter_id)
        meter.advance(self.clock())
        meter.override = value

    def set_register(self, meter_id: str, point: str, value: float | bool | None) -> None:
        self.meter(meter_id).set_point(point, value, self.clock())

    def set_relay(self, meter_id: str, *, closed: bool | None = None, stuck: bool | None = None) -> None:
        meter = self.meter(meter_id)
        now = self.clock()
        meter.advance(now)
        if stuck is not None:
            meter.stuck = stuck
        if closed is not None:
            meter.supply_on = closed  # a local, manual switch: works even when stuck

    async def advance_clock(self, seconds: float, *, step_s: float = 30 * 86_400.0, meters_per_yield: int = 1) -> None:
        """Move simulated time on by ``seconds`` (> 0, at most :data:`MAX_ADVANCE_S`), in steps
        of ``step_s`` after each of which every meter has caught up, yielding to the event loop
        every ``meters_per_yield`` meters: a jump of a year takes a while (each meter integrates
        its load over it, in hourly slices: see ``SimMeter.advance``), but nothing else stalls
        meanwhile. Jumps run one at a time."""
        if not 0 < seconds <= MAX_ADVANCE_S:  # also refuses NaN
            raise ValueError(f"advance_s: expected a number of seconds in (0, {MAX_ADVANCE_S:g}], found {seconds!r}")
        async with self._advancing:
            left = seconds
            while left > 0:
                step = min(step_s, left)
                self.clock.advance(step)
                left -= step
                now = self.clock()
                for i, meter in enumerate(list(self.meters.values()), 1):
                    meter.advance(now)
                    if i % meters_per_yield == 0:
                        await asyncio.sleep(0)
                await asyncio.sleep(0)

    def stats(self) -> dict[str, Any]:
        return {name: {"port": s.port, "framing": s.framing, **s.stats.as_dict()} for name, s in self.servers.items()}

    def reset_stats(self) -> None:
        for s in self.servers.values():
            s.stats = ServerStats(open_connections=s.stats.open_connections, pending=s.stats.pending)

    # -- persistence ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Every meter's registers and relay state, brought up to now (on the event loop)."""
        now = self.clock()
        for m in self.meters.values():
            m.advance(now)
        return {"version": 1, "saved_at": now, "meters": {mid: m.state() for mid, m in self.meters.items()}}

    def save_state(self, path: str | Path) -> None:
        self.write_state(path, self.state())

    @staticmethod
    def write_state(path: str | Path, data: dict[str, Any]) -> None:
        """Write a :meth:`state` atomically (a crash leaves the old file); fine in a thread."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    def load_state(self, path: str | Path) -> int:
        """Restore the meters found in ``path`` and let them catch up to now (consumption
        while the simulator was down follows their load curves). Returns how many."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("simulator state not loaded", extra={"file": str(path), "error": str(exc)})
            return 0
        restored = 0
        now = self.clock()
        for meter_id, state in data.get("meters", {}).items():
            meter = self.meters.get(meter_id)
            if meter is None:
                continue
            meter.restore(state)
            meter.t = min(meter.t, now)
            meter.advance(now)
            restored += 1
        return restored
