"""DL/T 645 through the whole server: a DL/T 645 bus and a Modbus gateway in one config, both
served by the simulator; a DL/T 645 meter is billed exactly like a Modbus meter with the same
consumption, and its relay is tripped and closed through the command path (C = 0x1C with the
link's password and operator code from secrets), confirmed by reading the status word back."""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scada.commands.service import COMMANDS, CommandKind, CommandRequest
from scada.core.tags import TAGDB
from scada.prepaid.accounts import OpenRequest
from scada.prepaid.engine import PREPAID
from scada.prepaid.tariff_definition import TariffDefinition
from scada.simulator.component import SIMULATOR
from scada.users.audit import Actor

from ..harness import running_server, server_config
from ..services import free_port
from ..simulation import Control, until

pytestmark = pytest.mark.slow

SITE = """
[site]
id = "dlt"
name = "DLT"
timezone = "Asia/Shanghai"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F1"
[[rooms]]
id = "R1"
floor = "F"
name = "R1"
[[rooms]]
id = "R2"
floor = "F"
name = "R2"
[[meters]]
id = "E-MODBUS"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
initial_reading = "100"
[[meters]]
id = "E-DLT"
kind = "electricity"
room = "R2"
profile = "dlt645-single-phase"
link = "bus"
address = "000000000042"
initial_reading = "100"
"""


async def test_dlt645_meter_bills_like_a_modbus_meter_and_trips_through_the_command_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    monkeypatch.setenv("SCADA_TEST_DLT_PASSWORD", "02123456")
    monkeypatch.setenv("SCADA_TEST_DLT_OPERATOR", "12345678")
    (tmp_path / "site.toml").write_text(SITE)
    config = server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", f"""
[[links]]
name = "gw"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.5

[[links]]
name = "bus"
kind = "dlt645"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.5
inter_frame_gap_ms = 0
password = {{ env = "SCADA_TEST_DLT_PASSWORD" }}
operator_code = {{ env = "SCADA_TEST_DLT_OPERATOR" }}

[simulator]
enabled = true
control_port = 0
speed = 0

[modbus]
poll_intervals = {{ fast = 0.3, energy = 0.3, slow = 0.3 }}
start_spread = 0

[commands]
retries = 1
confirm_timeout_s = 3
confirm_interval_s = 0.2
backoff_s = 0.2

[alarms]
enabled = false

[prepaid]
tick_s = 0.2
jump_margin = "100000"
""")
    config = config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})
    async with running_server(config) as rt, aiohttp.ClientSession() as http:
        engine, tagdb, sim = rt.ctx[PREPAID], rt.ctx[TAGDB], rt.ctx[SIMULATOR]
        assert sim.control_url is not None
        control = Control.of(http, sim)
        assert (await control.meter("E-DLT"))["protocol"] == "dlt645"
        await engine.tariffs.create("FLAT", "Flat", "electricity", TariffDefinition.model_validate({"price": "0.5683"}), Actor("t", "cli"))
        for room in ("R1", "R2"):
            await engine.open_account(
                OpenRequest(room, engine.defaults(), electricity_tariff_id="FLAT", opening_minor=10_000), Actor("t", "cli")
            )
        for meter in ("E-MODBUS", "E-DLT"):
            await control.load(meter, kw=1.7)
        await until(lambda: tagdb.read("E-MODBUS.energy_total").good and tagdb.read("E-DLT.energy_total").good, 15, "first readings")
        await asyncio.sleep(1.0)  # the baselines are billed
        for _ in range(6):
            await control.advance(1800)  # half an hour at 1.7 kW: 0.85 kWh on each meter
            await asyncio.sleep(0.5)
        truth = {m: (await control.meter(m))["points"]["energy_total"] for m in ("E-MODBUS", "E-DLT")}
        assert truth["E-MODBUS"] == truth["E-DLT"] > 105
        await until(lambda: all(tagdb.read(f"{m}.energy_total").value == truth[m] for m in truth), 10, "last readings")

        def balances() -> tuple[Any, Any]:
            return tagdb.read("room:R1.balance").value, tagdb.read("room:R2.balance").value

        # the consumption at 0.5683, deducted in steps (each rounded, the remainder carried): the
        # consumption times the price rounded once, the same on both meters
        used = Decimal(str(truth["E-DLT"])) - 100
        expected = str(Decimal("100.00") - (used * Decimal("0.5683")).quantize(Decimal("0.01"), ROUND_HALF_UP))
        await until(lambda: balances() == (float(expected), float(expected)), 10, f"both billed to {expected} ({balances()})")

        # the relay of the DL/T 645 meter through the one command path
        commands = rt.ctx[COMMANDS]
        result = await commands.execute(CommandRequest("E-DLT", CommandKind.DISCONNECT, Actor.system("test"), "test trip"), timeout=20)
        assert (result.status, result.detail) == ("confirmed", "relay open (confirmed by read-back)")
        assert (await control.meter("E-DLT"))["relay_closed"] is False
        result = await commands.execute(CommandRequest("E-DLT", CommandKind.CONNECT, Actor.system("test"), "test close"), timeout=20)
        assert result.status == "confirmed"
        assert (await control.meter("E-DLT"))["relay_closed"] is True
