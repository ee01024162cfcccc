"""The price and balance a meter shows on its display (the ``price`` and ``balance`` parameter
blocks of ``acrel-ddsy1352``): a ``meter_params`` job writes them over Modbus and confirms them
by read-back; the simulator holds them and the HMI's settings read them back; a meter that
refuses the write is retried, then reported, and the other meters are done."""

from __future__ import annotations

import aiohttp

from protocols.modbus.sim import Simulator
from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.simulator.component import SIMULATOR

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import api, ops  # noqa: F401 (ops is the fixture)

METERS = ["E-B1-101", "E-B1-102", "E-B1-104"]
REFUSING = "E-B1-102"


async def test_meter_params_writes_the_displayed_price_and_balance_and_reports_a_refusing_meter(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    tagdb = hmi.rt.ctx[TAGDB]
    await until(lambda: all(tagdb.read(f"{m}.comm_ok").value is True for m in METERS), timeout=20, what="polled")
    assert {sim.meter(m).profile.name for m in METERS} == {"acrel-ddsy1352"}
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
        control = Control.of(plain, sim)
        before = (await control.meter(REFUSING))["parameters"]
        await control.call("PUT", f"/meters/{REFUSING}/params", {"refuse_writes": True})
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "meter_params", "targets": {"meters": METERS},
                                                          "params": {"price": "0.6512", "balance": "-12.34"}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=30)
        assert (done["state"], done["done"], done["failed"]) == ("failed", 2, 1), done
        items = {i["target"]: i for i in done["items"]}
        refused = items[REFUSING]
        assert refused["state"] == "failed" and refused["attempts"] == 2, refused
        assert "price" in refused["detail"] and "after 2 attempts" in refused["detail"], refused
        for m in ("E-B1-101", "E-B1-104"):
            assert items[m]["state"] == "done" and "confirmed by read-back" in items[m]["detail"], items[m]
            assert items[m]["result"] == {"price": "0.6512", "balance": "-12.34"}, items[m]
            # what the meter holds, as the simulator sees it and as the HMI reads it back over Modbus
            held = (await control.meter(m))["parameters"]
            assert (held["price"], held["balance"]) == ("0.6512", "-12.34"), held
            settings = await api(http, "GET", f"{hmi.api}/meters/{m}/settings?read=true")
            shown = settings["parameters"]
            assert shown["price"] == {"value": "0.6512", "unit": "CNY/kWh"}, shown
            assert shown["balance"] == {"value": "-12.34", "unit": "CNY"}, shown
        assert (await control.meter(REFUSING))["parameters"] == before  # nothing written
        # it takes writes again: the same job's values go in
        await control.call("PUT", f"/meters/{REFUSING}/params", {"refuse_writes": False})
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "meter_params", "targets": {"meters": [REFUSING]},
                                                          "params": {"price": "0.6512", "balance": "-12.34"}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=30)
        assert (done["state"], done["done"]) == ("done", 1), done
        held = (await control.meter(REFUSING))["parameters"]
        assert (held["price"], held["balance"]) == ("0.6512", "-12.34"), held
