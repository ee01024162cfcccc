"""Jobs on the demo site and its simulator, with the jobs' clock driven by the test: a job
scheduled 30 s ahead waits and runs on time (and a scheduled job runs after a restart);
``tou_download`` writes a tariff's table into the meters that carry it, a meter that refuses
is retried then reported, a wrong table is flagged ``tou_mismatch`` within one check;
pre-set accounts are imported (a dry run names every bad row) and opened by a job with their
meters' opening readings; ``clock_sync`` and ``meter_params``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from hmi.component import HMI_URL
from protocols.modbus.sim import Simulator
from scada.alarms.clock import ManualClock
from scada.alarms.component import ALARMS
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context
from scada.core.runtime import Runtime
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.operations.component import OperationsComponent
from scada.prepaid.models import MeterSegment
from scada.server import build_components
from scada.simulator.component import SIMULATOR
from scada.users.component import USERS

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, add_role_users, demo_site_config
from .test_api_users import bearer
from .test_jobs_api import wait_job

TOU_NEW = {  # next year's hours: not the simulator's default table
    "tou": {
        "periods": [{"name": "sharp", "price": "1.30"}, {"name": "peak", "price": "1.10"}, {"name": "flat", "price": "0.65"},
                    {"name": "valley", "price": "0.32"}],
        "seasons": [{"name": "all_year",
                     "workday": [["00:00", "valley"], ["07:00", "flat"], ["09:00", "peak"], ["12:00", "flat"], ["18:00", "sharp"],
                                 ["20:00", "peak"], ["22:00", "valley"]],
                     "weekend": [["00:00", "valley"], ["09:00", "flat"], ["22:00", "valley"]]}],
    }
}
EXTRA = (
    "commands.retries=1", "commands.backoff_s=0.1", "commands.confirm_interval_s=0.05",
    "operations.item_retries=1", "operations.item_backoff_s=0.2", "operations.link_gap_s=0",
    'approvals.opening_balance_above="100000"',  # accounts opened with a balance by one user here
)


@asynccontextmanager
async def site(config: ScadaConfig, clock: ManualClock) -> AsyncIterator[Hmi]:
    """The demo server with the jobs' clock in the test's hands."""
    components = [OperationsComponent(clock) if isinstance(c, OperationsComponent) else c for c in build_components(config)]
    ctx = Context()
    ctx[CONFIG] = config
    rt = Runtime(components, ctx=ctx)
    await rt.start()
    try:
        yield Hmi(rt, rt.ctx[HMI_URL])
    finally:
        await rt.stop()


@pytest.fixture
async def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Hmi, ManualClock]]:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with site(demo_site_config(tmp_path, *EXTRA), clock) as hmi:
        await add_role_users(hmi.rt.ctx[USERS])
        yield hmi, clock


async def api(http: aiohttp.ClientSession, method: str, url: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
    async with http.request(method, url, json=body, **kw) as r:
        data = await r.json()
        assert r.status == status, (r.status, data)
        return data


async def test_a_job_scheduled_30_s_ahead_runs_on_time_and_after_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    config = demo_site_config(tmp_path, *EXTRA)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with site(config, clock) as hmi:
        tagdb = hmi.rt.ctx[TAGDB]
        await until(lambda: tagdb.read("E-B1-101.relay_closed").value is True, timeout=20, what="polled")
        headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
        async with aiohttp.ClientSession(headers=headers) as http:
            run_at = clock.now() + dt.timedelta(seconds=30)
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "relay", "targets": {"rooms": ["B1-R101", "B1-R102"]},
                                                              "params": {"action": "disconnect"}, "run_at": run_at.isoformat()}, 201)
            assert job["state"] == "scheduled" and job["run_at"] == run_at.isoformat()
            later = await api(http, "POST", hmi.api + "/jobs", {"kind": "relay", "targets": {"rooms": ["B1-R103"]},
                                                                "params": {"action": "disconnect"},
                                                                "run_at": (run_at + dt.timedelta(minutes=10)).isoformat()}, 201)
            clock.advance(29)
            await asyncio.sleep(0.5)
            assert (await api(http, "GET", f"{hmi.api}/jobs/{job['id']}"))["state"] == "scheduled"
            assert hmi.rt.ctx[SIMULATOR].meter("E-B1-101").supply_on is True
            clock.advance(1)  # its time: it runs, for real, on the simulator
            done = await wait_job(http, hmi, job["id"], timeout=30)
            assert done["state"] == "done" and done["done"] == done["total"] == 2, done
            assert dt.datetime.fromisoformat(done["started_at"]) == run_at
            assert hmi.rt.ctx[SIMULATOR].meter("E-B1-101").supply_on is False
            assert (await api(http, "GET", f"{hmi.api}/jobs/{later['id']}"))["state"] == "scheduled"
    # the server is down when the second job's time comes; it runs when the server is back
    clock = ManualClock(run_at + dt.timedelta(minutes=15))
    async with site(config, clock) as hmi:
        headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
        async with aiohttp.ClientSession(headers=headers) as http:
            done = await wait_job(http, hmi, later["id"], timeout=30)
        assert done["state"] == "done" and done["items"][0]["target"] == "E-B1-103", done
        assert hmi.rt.ctx[SIMULATOR].meter("E-B1-103").supply_on is False


async def _open(http: aiohttp.ClientSession, hmi: Hmi, rooms: list[str], tariff: str) -> None:
    for room in rooms:
        await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open",
                  {"tariffs": {"electricity": tariff, **({"water": "W"} if room[-1] in "369" else {})}, "opening_balance": "50"}, 201)


async def test_tou_download_mismatch_and_a_refusing_meter(ops: tuple[Hmi, ManualClock]) -> None:
    hmi, _clock = ops
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    tagdb = hmi.rt.ctx[TAGDB]
    rooms = [f"B1-R1{i:02d}" for i in range(1, 11)]
    meters = [f"E-B1-1{i:02d}" for i in range(1, 11)]
    await until(lambda: all(tagdb.read(f"{m}.comm_ok").value is True for m in meters), timeout=20, what="polled")
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
        control = Control.of(plain, sim)
        await api(http, "POST", hmi.api + "/tariffs", {"id": "TOU-NEW", "name": "TOU 2027", "commodity": "electricity",
                                                        "definition": TOU_NEW}, 201)
        await api(http, "POST", hmi.api + "/tariffs", {"id": "W", "name": "Water", "commodity": "water", "definition": {"price": "3"}}, 201)
        await _open(http, hmi, rooms + ["B1-R111"], "TOU-NEW")
        await control.call("PUT", "/meters/E-B1-107/params", {"refuse_writes": True})
        # the tariff's meters: the floor's rooms on TOU-NEW (not R112-R115, which have no account)
        preview = await api(http, "POST", hmi.api + "/jobs/preview", {"kind": "tou_download", "targets": {"floor": "B1-F1"},
                                                                       "params": {"tariff": "TOU-NEW"}})
        assert preview["count"] == 11 and set(preview["targets"]) == {*meters, "E-B1-111"}
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "tou_download", "targets": {"meters": meters},
                                                          "params": {"tariff": "TOU-NEW"}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=60)
        assert (done["state"], done["done"], done["failed"]) == ("failed", 9, 1), done
        refused = next(i for i in done["items"] if i["target"] == "E-B1-107")
        assert refused["state"] == "failed" and refused["attempts"] == 2 and "after 2 attempts" in refused["detail"], refused
        expected = {d: TOU_NEW["tou"]["seasons"][0][d if d != "holiday" else "weekend"] for d in ("workday", "weekend", "holiday")}  # type: ignore[index]
        for m in meters:
            table = (await control.meter(m))["tou_table"]
            if m == "E-B1-107":
                assert table["workday"][1] == ["08:00", "peak"]  # still the old one
            else:
                assert table == expected, (m, table)
        # the refusing meter's old table is flagged at once (its check ran after the failure)
        await until(lambda: tagdb.read("E-B1-107.tou_mismatch").value is True, timeout=10, what="E-B1-107 flagged")
        assert tagdb.read("E-B1-101.tou_mismatch").value is False
        # a meter given a wrong table on site is flagged within one check
        await control.call("PUT", "/meters/E-B1-102/tou", {"table": {d: [["00:00", "flat"]] for d in ("workday", "weekend", "holiday")}})
        settings = await api(http, "GET", hmi.api + "/meters/E-B1-102/settings?read=true")
        assert settings["tou"]["mismatch"] is True and settings["tou_table"]["workday"] == [["00:00", "flat"]], settings
        assert tagdb.read("E-B1-102.tou_mismatch").value is True
        alarms = hmi.rt.ctx[ALARMS]
        await until(lambda: {a.object_id for a in alarms.active() if a.alarm_class == "tou_mismatch"} >= {"E-B1-102", "E-B1-107"},
                    timeout=10, what="tou_mismatch alarms")
        # clocks: one meter drifts two minutes; clock_sync sets only that one
        await control.call("PUT", "/meters/E-B1-103/clock", {"drift_s": 120})
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "clock_sync", "targets": {"meters": meters[:4]}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=30)
        assert done["state"] == "done", done
        by_meter = {i["target"]: i for i in done["items"]}
        assert by_meter["E-B1-103"]["result"]["set"] is True and 118 <= by_meter["E-B1-103"]["result"]["drift_s"] <= 122
        assert all(by_meter[m]["result"]["set"] is False for m in ("E-B1-101", "E-B1-102", "E-B1-104"))
        assert abs((await control.meter("E-B1-103"))["clock"]["drift_s"]) <= 2
        # a load limit where the profile has one; a value the register cannot hold names the block
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "meter_params", "targets": {"meters": meters[:2]},
                                                          "params": {"load_limit": "5.5"}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=30)
        assert done["state"] == "done", done
        assert (await control.meter("E-B1-101"))["parameters"]["load_limit"] == "5.5"
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "meter_params", "targets": {"meters": ["E-B1-101"]},
                                                          "params": {"load_limit": "5.5555"}}, 201)
        done = await wait_job(http, hmi, job["id"], timeout=30)
        assert done["state"] == "failed" and "more decimals" in done["items"][0]["detail"], done


GOOD = """customer,contact,language,room,mode,tariff,opening_balance,thresholds,credit_limit,water_tariff
Li Lei,+8613800000001,zh-CN,B1-R201,prepaid,FLAT,100.00,20/5/0,0,
Han Meimei,han@example.com,en,B1-R202,prepaid,FLAT,50,,10,
Wang Wei,+8613800000003,zh-CN,B1-R203,postpaid,FLAT,0,,,W
Zhang San,+8613800000004,zh-CN,B1-R204,prepaid,FLAT,20.5,,,
Li Si,+8613800000005,en,B1-R205,prepaid,FLAT,30,,,
"""
BAD = """Zhao Liu,+8613800000006,zh-CN,B1-R999,prepaid,FLAT,10,,,
Sun Qi,+8613800000007,zh-CN,B1-R101,prepaid,FLAT,10,,,
Zhou Ba,+8613800000008,zh-CN,B1-R208,prepaid,FLAT,-5,,,
"""
FIXED = """Zhao Liu,+8613800000006,zh-CN,B1-R206,prepaid,FLAT,10,,,W
Sun Qi,+8613800000007,zh-CN,B1-R207,prepaid,FLAT,10,,,
Zhou Ba,+8613800000008,zh-CN,B1-R208,prepaid,FLAT,5,,,
"""


async def test_import_dry_run_then_prepared_accounts_opened_by_a_job(ops: tuple[Hmi, ManualClock]) -> None:
    hmi, _clock = ops
    tagdb = hmi.rt.ctx[TAGDB]
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    await until(lambda: all(tagdb.read(f"E-B1-2{i:02d}.comm_ok").value is True for i in range(1, 9)), timeout=20, what="polled")
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=cashier) as http:
        await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                        "definition": {"price": "0.60"}}, 201, headers=admin)
        await api(http, "POST", hmi.api + "/tariffs", {"id": "W", "name": "Water", "commodity": "water", "definition": {"price": "3"}},
                  201, headers=admin)
        await api(http, "POST", hmi.api + "/rooms/B1-R101/account/open", {"tariffs": {"electricity": "FLAT"}}, 201, headers=admin)
        # the back office's customers: the import's customer column names one by name or by
        # number; a name no customer has becomes a new customer
        wang = (await api(http, "POST", hmi.api + "/customers", {"name": "Wang Wei", "kind": "company"}, 201, headers=admin))["id"]
        twins = [(await api(http, "POST", hmi.api + "/customers", {"name": "Twin"}, 201, headers=admin))["id"] for _ in range(2)]
        csv_headers = {**cashier, "Content-Type": "text/csv"}
        odd = ("customer,contact,room,tariff\n#999999,+8613800000009,B1-R206,FLAT\nTwin,+8613800000009,B1-R207,FLAT\n"
               f"#{twins[0]},+8613800000009,B1-R208,FLAT\nEve\x01,+8613800000009,B1-R205,FLAT\n")
        report = await api(http, "POST", hmi.api + "/accounts/import?dry_run=true", None, 200, data=odd.encode(), headers=csv_headers)
        assert [(e["line"], e["column"]) for e in report["errors"]] == [(2, "customer"), (3, "customer"), (5, "customer")], report
        assert report["errors"][2]["error"] == "contains a control character"
        assert "no customer #999999" in report["errors"][0]["error"]
        assert f"2 customers are named 'Twin': give one's number (#{twins[0]}, #{twins[1]})" in report["errors"][1]["error"]
        assert report["valid"] == 1 and report["new_customers"] == []
        report = await api(http, "POST", hmi.api + "/accounts/import?dry_run=true", None, 200, data=(GOOD + BAD).encode(),
                           headers=csv_headers)
        assert report["created"] == 0 and report["rows"] == 8 and report["valid"] == 5, report
        assert report["new_customers"] == ["Li Lei", "Han Meimei", "Zhang San", "Li Si"]
        assert [(e["line"], e["column"]) for e in report["errors"]] == [(7, "room"), (8, "room"), (9, "opening_balance")], report
        assert "unknown room 'B1-R999'" in report["errors"][0]["error"]
        assert "already has an open account" in report["errors"][1]["error"]
        assert "negative" in report["errors"][2]["error"]
        # an import with bad rows creates nothing either
        body = await api(http, "POST", hmi.api + "/accounts/import", None, 422, data=(GOOD + BAD).encode(), headers=csv_headers)
        assert body["created"] == 0 and len(body["errors"]) == 3
        assert (await api(http, "GET", hmi.api + "/accounts/prepared", headers=cashier))["accounts"] == []
        assert len((await api(http, "GET", hmi.api + "/customers", headers=cashier))["customers"]) == 3  # no customer either
        created = await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=(GOOD + FIXED).encode(), headers=csv_headers)
        assert created["created"] == 8 and {a["state"] for a in created["accounts"]} == {"prepared"}
        rooms = sorted(a["room"] for a in created["accounts"])
        assert rooms == [f"B1-R2{i:02d}" for i in range(1, 9)]
        # no account is open yet
        for room in rooms:
            assert (await api(http, "GET", f"{hmi.api}/rooms/{room}/account", headers=cashier, status=404))
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "open", "targets": {"account": "prepared"}}, 201, headers=cashier)
        assert job["total"] == 8
        done = await wait_job(http, hmi, job["id"], timeout=60)
        assert (done["state"], done["done"]) == ("done", 8), done
        prepared = {a["room"]: a for a in (await api(http, "GET", hmi.api + "/accounts/prepared", headers=cashier))["accounts"]}
        assert prepared == {}
        for room in rooms:
            account = await api(http, "GET", f"{hmi.api}/rooms/{room}/account", headers=cashier)
            assert account["state"] == "open"
        li = await api(http, "GET", f"{hmi.api}/rooms/B1-R201/account", headers=cashier)
        assert li["balance"] == "100.00" and li["contact"]["name"] == "Li Lei" and li["contact"]["language"] == "zh-CN"
        assert li["mode"] == "prepaid"
        # the accounts are their customers': Wang Wei's (by name) postpaid, the others' new
        assert (await api(http, "GET", f"{hmi.api}/rooms/B1-R203/account", headers=cashier))["mode"] == "postpaid"
        assert (await api(http, "GET", f"{hmi.api}/customers/{wang}", headers=cashier))["rooms"] == ["B1-R203"]
        customers = {c["name"]: c for c in (await api(http, "GET", hmi.api + "/customers", headers=cashier))["customers"]}
        assert customers["Li Lei"]["rooms"] == ["B1-R201"] and customers["Li Lei"]["phone"] == "+8613800000001"
        assert customers["Han Meimei"]["email"] == "han@example.com" and customers["Han Meimei"]["language"] == "en"
        assert set(customers) == {"Wang Wei", "Twin", "Li Lei", "Han Meimei", "Zhang San", "Li Si", "Zhao Liu", "Sun Qi", "Zhou Ba"}
        # the opening readings: what each meter showed when the job opened its account
        item = next(i for i in done["items"] if i["target"] == "B1-R203")
        readings = item["result"]["readings"]
        assert set(readings) == {"E-B1-203", "W-B1-203"}
        async with hmi.rt.ctx[DATABASE].sessions() as s:
            segments = {g.meter_id: g for g in (await s.scalars(select(MeterSegment))).all()}
        for meter, value in readings.items():
            assert format(segments[meter].baseline, "f").rstrip("0").rstrip(".") == value.rstrip("0").rstrip(".") or \
                segments[meter].baseline == value
            truth = sim.meter(meter).acc["volume" if meter.startswith("W") else "total"] / 1_000_000
            assert 0 <= truth - float(value) < 0.5, (meter, truth, value)
