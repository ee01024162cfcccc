"""Relay and valve commands through the API (the one command path, the simulator's meters),
bad input on the supply endpoint, and the links' statistics."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from protocols.modbus.sim import Simulator
from scada.commands.service import COMMANDS
from scada.core.tags import TAGDB
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.audit import Actor
from scada.users.component import AUDIT

from ..simulation import Control, until
from .conftest import PASSWORDS, Hmi, browser_like, login
from .test_api_users import bearer


async def _polled(hmi: Hmi) -> None:
    tagdb = hmi.rt.ctx[TAGDB]
    # E-B1-101's registers as well (test_links_and_device_statistics reads them): the energy
    # class's first poll may come after the fast class's
    await until(lambda: tagdb.read("E-B1-105.relay_closed").value is True and tagdb.read("W-B1-106.valve_open").value is True
                and tagdb.read("E-B1-101.energy_total").good, timeout=15, what="meters polled")


async def test_operator_cuts_and_restores_supply(hmi: Hmi) -> None:
    await _polled(hmi)
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    headers = await bearer(hmi, "operator1", PASSWORDS["operator1"])
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(hmi.api + "/meters/E-B1-105/supply", json={"action": "disconnect", "reason": "tenant moved out"}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["status"] == "confirmed" and body["action"] == "disconnect" and body["meter"] == "E-B1-105"
        assert sim.meter("E-B1-105").supply_on is False
        async with http.post(hmi.api + "/meters/W-B1-106/supply", json={"action": "disconnect", "reason": "leak"}) as r:
            assert (await r.json())["status"] == "confirmed"
        assert sim.meter("W-B1-106").supply_on is False
        async with http.post(hmi.api + "/meters/E-B1-105/supply", json={"action": "connect", "reason": "new tenant"}) as r:
            assert (await r.json())["status"] == "confirmed"
        assert sim.meter("E-B1-105").supply_on is True
        async with http.get(hmi.api + "/meters/E-B1-105/commands") as r:
            history = (await r.json())["commands"]
        assert [(c["action"], c["status"]) for c in history] == [("connect", "confirmed"), ("disconnect", "confirmed")]
        # a meter that does not follow: the command ends failed and the API says so
        await hmi_sim_relay_stuck(hmi, "E-B1-107")
        async with http.post(hmi.api + "/meters/E-B1-107/supply", json={"action": "disconnect", "reason": "credit", "wait_s": 30}) as r:
            assert r.status == 504
            out = await r.json()
        assert "did not confirm" in out["error"] and out["command"]["status"] == "failed"
    entries = await hmi.rt.ctx[AUDIT].query(action="api.supply.set_supply")
    assert {e.actor for e in entries} == {"operator1"} and len(entries) == 4


async def hmi_sim_relay_stuck(hmi: Hmi, meter: str) -> None:
    async with aiohttp.ClientSession() as http:
        await Control.of(http, hmi.rt.ctx[SIMULATOR]).relay(meter, stuck=True)


async def _nothing_happened(hmi: Hmi, meter: str = "E-B1-108") -> None:
    assert hmi.rt.ctx[SIMULATOR].meter(meter).supply_on is True
    assert await hmi.rt.ctx[COMMANDS].history(meter) == []


async def test_supply_needs_auth_role_and_csrf(hmi: Hmi) -> None:
    await _polled(hmi)
    body = {"action": "disconnect", "reason": "test"}
    url = hmi.api + "/meters/E-B1-108/supply"
    async with aiohttp.ClientSession() as anon:
        async with anon.post(url, json=body) as r:
            assert r.status == 401
        for user in ("cashier1", "viewer1", "maint1"):
            async with anon.post(url, json=body, headers=await bearer(hmi, user, PASSWORDS[user])) as r:
                assert r.status == 403 and "may not relay_control" in (await r.json())["error"], user
    async with browser_like() as web:
        await login(web, hmi.url, "operator1")
        async with web.post(url, json=body) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
    await _nothing_happened(hmi)


BAD_SUPPLY: list[tuple[str, Any, int, str | None, str]] = [
    ("/meters/NOPE/supply", {"action": "disconnect", "reason": "x"}, 404, "meter", "unknown meter 'NOPE'"),
    ("/meters/E-B1-108/supply", {"action": "explode", "reason": "x"}, 422, "action", "connect"),
    ("/meters/E-B1-108/supply", {"action": "disconnect"}, 422, "reason", "missing"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": "   "}, 422, "reason", "pattern"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": "r" * 501}, 422, "reason", "at most 500"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": "x", "wait_s": -1}, 422, "wait_s", "greater than or equal"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": "x", "wait_s": "soon"}, 422, "wait_s", "number"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": "x", "user": "admin"}, 422, "user", "unknown field"),
    ("/meters/E-B1-108/supply", {"action": ["disconnect"], "reason": "x"}, 422, "action", "connect"),
    ("/meters/E-B1-108/supply", {"action": "disconnect", "reason": {"$ne": ""}}, 422, "reason", "string"),
    ("/meters/E-B1-108%3Bdrop/supply", {"action": "disconnect", "reason": "x"}, 404, "meter", "unknown meter"),
]


async def test_supply_bad_input_changes_nothing(hmi: Hmi) -> None:
    await _polled(hmi)
    headers = await bearer(hmi, "operator1", PASSWORDS["operator1"])
    async with aiohttp.ClientSession(headers=headers) as http:
        for path, body, status, field, message in BAD_SUPPLY:
            async with http.post(hmi.api + path, json=body) as r:
                assert r.status == status, (path, body, await r.text())
                out = await r.json()
            assert out.get("field") == field and message in out["error"], (body, out)
        async with http.post(hmi.api + "/meters/E-B1-108/supply", data=b'{"action": "disconnect", "reason": "x", "wait_s": Infinity}',
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and "Infinity is not allowed" in (await r.json())["error"]
        await _nothing_happened(hmi)
        # a meter that is not active: the command path refuses it (and records the refusal)
        await hmi.rt.ctx[ASSETS].set_active("E-B1-109", False, Actor("eng", "cli"), reason="removed")
        async with http.post(hmi.api + "/meters/E-B1-109/supply", json={"action": "disconnect", "reason": "x"}) as r:
            assert r.status == 422
            out = await r.json()
        assert "not active" in out["error"] and out["field"] == "meter"


async def test_links_and_device_statistics(hmi: Hmi) -> None:
    await _polled(hmi)
    headers = await bearer(hmi, "viewer1", PASSWORDS["viewer1"])
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(hmi.api + "/links") as r:
            links = (await r.json())["links"]
        assert [link["name"] for link in links] == ["gw-1", "gw-2"]
        assert links[0]["state"] == "up" and links[0]["devices"] == 41 and links[0]["requests"] > 0
        # _polled saw two meters; on a loaded machine the rest of gw-2 may still be on its first round
        for _ in range(300):
            async with http.get(hmi.api + "/links/gw-2/devices") as r:
                body = await r.json()
            if all(d["state"] == "online" for d in body["devices"]):
                break
            await asyncio.sleep(0.1)
        assert body["link"]["name"] == "gw-2" and len(body["devices"]) == 40
        assert all(d["state"] == "online" and d["link"] == "gw-2" for d in body["devices"])
        async with http.get(hmi.api + "/links/gw-2/devices?state=offline") as r:
            assert (await r.json())["devices"] == []
        async with http.get(hmi.api + "/links/gw-9/devices") as r:
            assert r.status == 404 and (await r.json())["field"] == "link"
        async with http.get(hmi.api + "/links/gw-1/devices?state=dead") as r:
            assert r.status == 422 and (await r.json())["field"] == "state"
        async with http.get(hmi.api + "/meters/E-B1-101") as r:
            meter = await r.json()
        assert meter["supply_control"] is True and meter["comm"]["state"] == "online" and meter["points"]["energy_total"]["quality"] == "good"
