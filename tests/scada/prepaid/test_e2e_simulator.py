"""End to end against the Modbus simulator, through the whole server: a room consumes down
through each alarm level, its relay opens in the simulator (confirmed by read-back), a recharge
over the API closes it again; inside a friendly-credit window the cut waits until the window
ends; a relay that does not follow leaves the room "cutting" and is retried; an account that
waits for an operator is reconnected by one; a protected account is never cut; closing an
account cuts its supply. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hmi.component import HMI_URL
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.prepaid.demo import DEMO_TOU
from scada.prepaid.engine import PREPAID
from scada.prepaid.reconcile import reconcile
from scada.simulator.component import SIMULATOR
from scada.users.audit import Actor
from scada.users.component import USERS
from tags import TagChange

from ...harness import passwords_hashed_once, running_server, server_config
from ...services import free_port
from ...simulation import Control, until

pytestmark = pytest.mark.slow

SITE = """
[site]
id = "e2e"
name = "E2E"
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
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
max_power_kw = "8"
[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2
max_power_kw = "8"
"""

TZ = ZoneInfo("Asia/Shanghai")


def e2e_config(tmp_path: Path, db_url: str) -> Any:
    (tmp_path / "site.toml").write_text(SITE)
    config = server_config(tmp_path, db_url, f"""
[[links]]
name = "gw"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.5

[simulator]
enabled = true
control_port = 0
speed = 0            # the test moves simulated time itself

[modbus]
poll_intervals = {{ fast = 0.3, energy = 0.3 }}
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
command_retry_s = 1
jump_margin = "100000"   # simulated hours pass in real milliseconds here

[prepaid.friendly_credit]
windows = [{{ start = "02:00", end = "03:00" }}]
weekends = false

# these tests are about supply: the cashier opens and protects alone (the four-eyes rule is
# tested in tests/scada/prepaid/test_approvals.py and tests/hmi/test_api_approvals.py)
[approvals]
opening_balance_above = "100"
protection = false
""")
    return config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})


def local_today(hour: int, minute: int) -> dt.datetime:
    today = dt.datetime.now(TZ).date()
    return dt.datetime(today.year, today.month, today.day, hour, minute, tzinfo=TZ).astimezone(dt.UTC)


async def test_balance_levels_cutoff_recharge_and_friendly_window(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with running_server(e2e_config(tmp_path, migrated_db_url)) as rt, aiohttp.ClientSession() as http:
        engine, tagdb = rt.ctx[PREPAID], rt.ctx[TAGDB]
        engine.clock = lambda: local_today(2, 30)  # inside the friendly-credit window
        sim = rt.ctx[SIMULATOR]
        assert sim.control_url is not None
        control = Control.of(http, sim)
        with passwords_hashed_once():
            await rt.ctx[USERS].add("cash", "cashier", "cashier-password", Actor("t", "cli"))
            await rt.ctx[USERS].add("eng", "engineer", "engineer-password", Actor("t", "cli"))
        base = rt.ctx[HMI_URL] + "/api/v1"

        async def token(user: str, password: str) -> dict[str, str]:
            async with http.post(base + "/auth/token", json={"user": user, "password": password}) as r:
                return {"Authorization": f"Bearer {(await r.json())['token']}"}

        cashier, engineer = await token("cash", "cashier-password"), await token("eng", "engineer-password")

        async def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
            async with http.post(base + path, json=body, headers=headers) as r:
                data = await r.json()
                assert r.status in (200, 201), (path, r.status, data)
                return data

        await post("/tariffs", {"id": "TOU", "name": "TOU", "commodity": "electricity", "definition": DEMO_TOU}, engineer)
        thresholds = [{"level": 1, "money": "8"}, {"level": 2, "money": "4"}, {"level": 3, "money": "0"}]
        await post("/rooms/R1/account/open", {"tariffs": {"electricity": "TOU"}, "opening_balance": "10.00",
                                              "thresholds": thresholds, "friendly_credit": False}, cashier)
        await post("/rooms/R2/account/open", {"tariffs": {"electricity": "TOU"}, "opening_balance": "1.00",
                                              "thresholds": thresholds, "friendly_credit": True}, cashier)
        levels: list[int] = []
        sub = tagdb.subscribe(lambda n: n == "room:R1.alarm_level", name="test-levels")

        def value(name: str) -> Any:
            return tagdb.read(name).value

        await control.load("E1", kw=2.0)
        await control.load("E2", kw=2.0)
        # the first readings are the baselines
        await until(lambda: tagdb.read("E1.energy_total").good and tagdb.read("E2.energy_total").good,
                    timeout=15, what="first readings")
        await asyncio.sleep(1.0)

        async def consume_until(predicate: Any, what: str, step_s: float = 900) -> None:
            for _ in range(200):
                if predicate():
                    return
                await control.advance(step_s)  # a quarter of an hour at 2 kW: 0.5 kWh
                await asyncio.sleep(0.4)
            raise AssertionError(f"never reached: {what}")

        await consume_until(lambda: value("room:R1.supply_state") in ("cutting", "off"), "R1 cut")
        await until(lambda: value("room:R1.supply_state") == "off", timeout=15, what="R1 off")
        levels = [c.new.value for c in sub.drain() if isinstance(c, TagChange)]
        sub.close()
        assert [lv for lv in levels if lv] == [1, 2, 3], levels  # each level once, in order
        assert (await control.meter("E1"))["relay_closed"] is False  # opened in the simulator
        assert value("E1.relay_fault") is False
        # no more energy while open
        before = (await control.meter("E1"))["points"]["energy_total"]
        await control.advance(3600)
        assert (await control.meter("E1"))["points"]["energy_total"] == before

        # R2 ran out too, inside the friendly-credit window: its supply stays on
        await consume_until(lambda: value("room:R2.alarm_level") == 3, "R2 exhausted")
        await asyncio.sleep(1.0)  # several ticks
        assert value("room:R2.supply_state") == "on" and (await control.meter("E2"))["relay_closed"] is True

        # a recharge over the API closes R1's relay again
        await post("/rooms/R1/account/recharge", {"amount": "50.00", "reference": "POS-9", "channel": "cash"}, cashier)
        await until(lambda: value("room:R1.supply_state") == "on", timeout=15, what="R1 restored")
        assert (await control.meter("E1"))["relay_closed"] is True and value("room:R1.alarm_level") == 0

        # the window ends: R2 is cut
        engine.clock = lambda: local_today(3, 1)
        await until(lambda: value("room:R2.supply_state") == "off", timeout=15, what="R2 cut after the window")
        assert (await control.meter("E2"))["relay_closed"] is False

        report = await reconcile(rt.ctx[DATABASE], 2)
        assert report.ok, [str(m) for m in report.mismatches]
        await engine.supply.idle()


async def test_stuck_relay_operator_reconnect_protected_and_close(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with running_server(e2e_config(tmp_path, migrated_db_url)) as rt, aiohttp.ClientSession() as http:
        engine, tagdb = rt.ctx[PREPAID], rt.ctx[TAGDB]
        engine.clock = lambda: local_today(12, 0)  # outside the friendly-credit window
        control = Control.of(http, rt.ctx[SIMULATOR])
        users = rt.ctx[USERS]
        with passwords_hashed_once():
            await users.add("cash", "cashier", "cashier-password", Actor("t", "cli"))
            await users.add("eng", "engineer", "engineer-password", Actor("t", "cli"))
            await users.add("op", "operator", "operator-password", Actor("t", "cli"))
        base = rt.ctx[HMI_URL] + "/api/v1"

        async def token(user: str, password: str) -> dict[str, str]:
            async with http.post(base + "/auth/token", json={"user": user, "password": password}) as r:
                return {"Authorization": f"Bearer {(await r.json())['token']}"}

        cashier, engineer = await token("cash", "cashier-password"), await token("eng", "engineer-password")
        operator = await token("op", "operator-password")

        async def call(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
            async with http.request(method, base + path, json=body, headers=headers) as r:
                data = await r.json()
                assert r.status in (200, 201), (path, r.status, data)
                return data

        def value(name: str) -> Any:
            return tagdb.read(name).value

        await call("POST", "/tariffs", {"id": "TOU", "name": "TOU", "commodity": "electricity", "definition": DEMO_TOU}, engineer)
        await call("POST", "/rooms/R1/account/open", {"tariffs": {"electricity": "TOU"}, "opening_balance": "2.00",
                                                      "auto_reconnect": False, "friendly_credit": False}, cashier)
        await call("POST", "/rooms/R2/account/open", {"tariffs": {"electricity": "TOU"}, "opening_balance": "2.00",
                                                      "protected": True}, cashier)
        await control.load("E1", kw=2.0)
        await control.load("E2", kw=2.0)
        await control.relay("E1", stuck=True)  # accepts commands, does not move
        await until(lambda: tagdb.read("E1.energy_total").good and tagdb.read("E2.energy_total").good, timeout=15, what="first readings")
        await asyncio.sleep(1.0)
        for _ in range(200):
            if value("room:R1.supply_state") == "cutting" and value("room:R2.alarm_level") == 3:
                break
            await control.advance(900)
            await asyncio.sleep(0.4)
        # the meter does not follow: the command path raises relay_fault, the room stays "cutting"
        await until(lambda: value("E1.relay_fault") is True, timeout=20, what="relay_fault")
        assert value("room:R1.supply_state") == "cutting" and (await control.meter("E1"))["relay_closed"] is True
        # protected: exhausted, never cut
        assert value("room:R2.supply_state") == "on" and (await control.meter("E2"))["relay_closed"] is True
        # the relay is freed on site: the retry opens it
        await control.relay("E1", stuck=False)
        await until(lambda: value("room:R1.supply_state") == "off", timeout=20, what="R1 off after the retry")
        assert (await control.meter("E1"))["relay_closed"] is False and value("E1.relay_fault") is False

        # credit again, but R1 waits for an operator
        await call("POST", "/rooms/R1/account/recharge", {"amount": "30.00", "reference": "R1-1"}, cashier)
        await until(lambda: engine.views["R1"].reconnect_pending, timeout=10, what="reconnect pending")
        account = await call("GET", "/rooms/R1/account", None, cashier)
        assert account["supply_state"] == "off" and account["reconnect_pending"] is True
        await call("POST", "/rooms/R1/account/reconnect", {"reason": "tenant called, meter checked"}, operator)
        await until(lambda: value("room:R1.supply_state") == "on", timeout=15, what="R1 reconnected by the operator")
        assert (await control.meter("E1"))["relay_closed"] is True

        # closing R2 (after settling its arrears) cuts its supply, protected or not
        await call("POST", "/rooms/R2/account/recharge", {"amount": "100.00", "reference": "R2-1"}, cashier)
        closed = await call("POST", "/rooms/R2/account/close", {"reason": "moved out"}, cashier)
        assert closed["account"]["state"] == "closed"
        await until(lambda: value("room:R2.supply_state") == "off", timeout=15, what="R2 cut after closing")
        assert (await control.meter("E2"))["relay_closed"] is False and value("room:R2.account_state") == "closed"

        report = await reconcile(rt.ctx[DATABASE], 2)
        assert report.ok, [str(m) for m in report.mismatches]
        await engine.supply.idle()
