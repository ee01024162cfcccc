"""DL/T 645 for the poller: profiles, reads by data identifier, relay control.

The poller (:class:`protocols.modbus.poller.ModbusPoller`) schedules, tracks health, probes
offline meters and writes tags for any request/response protocol; this driver plans a meter's
reads from its DL/T 645 profile, opens the link's connection and sends relay commands with the
link's password and operator code (resolved from the config's secrets by the server).
"""

from __future__ import annotations

import re
from typing import Any

from tags import QualityReason

from ..modbus.client import ModbusFailure
from ..modbus.poller import DeviceSpec, Driver
from .client import Dlt645Connection
from .profile import DltBlock, DltProfile, plan_dlt645

__all__ = ["Dlt645Driver"]

_ADDRESS = re.compile(r"^\d{12}$")


class Dlt645Driver(Driver):
    name = "dlt645"
    profile_type = DltProfile

    def __init__(self, secrets: dict[str, tuple[str | None, str | None]] | None = None) -> None:
        # link -> (password, operator code)
        self.secrets = dict(secrets or {})

    def plan(self, profile: Any, circuit: int | None, link: Any) -> dict[str, list[Any]]:
        return plan_dlt645(profile)  # type: ignore[return-value]

    def point_block(self, profile: Any, point: Any, circuit: int | None) -> Any:
        return DltBlock(point.di, ((point, 0),))

    def connection(self, link: Any) -> Any:
        return Dlt645Connection(link)

    def device_address(self, spec: DeviceSpec) -> Any:
        return spec.address

    def check(self, spec: DeviceSpec, profile: Any) -> str | None:
        if spec.address is None or not _ADDRESS.match(spec.address):
            return f"a DL/T 645 meter needs a 12-digit address, found {spec.address!r}"
        return None

    async def command(self, conn: Any, address: Any, profile: Any, command: Any, circuit: int | None) -> None:
        password, operator = self.secrets.get(conn.link.name, (None, None))
        if not password or not operator:
            raise ModbusFailure(
                QualityReason.CONFIG_ERROR,
                f"link {conn.link.name}: relay control needs its password and operator_code secrets",
            )
        await conn.relay(address, command.code, password, operator)
