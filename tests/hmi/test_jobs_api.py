"""Jobs through the API on the demo site and its simulator: a relay job over 20 rooms confirmed
by read-back, permissions per kind, approvals by another user, bad requests naming the field,
cancelling a job that waits, preview counts. (A job cancelled while it runs, and a repeating
job: test_jobs_repeat_cancel.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from sqlalchemy import select

from protocols.modbus.sim import Simulator
from scada.commands.models import CommandRow
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.simulator.component import SIMULATOR
from scada.users.component import AUDIT

from ..simulation import until
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi
from .test_api_users import bearer

FLOOR1 = [f"B1-R1{i:02d}" for i in range(1, 16)]
FLOOR2 = [f"B1-R2{i:02d}" for i in range(1, 16)]


async def wait_job(http: aiohttp.ClientSession, hmi: Hmi, job_id: int, states: tuple[str, ...] = ("done", "failed", "cancelled"),
                   timeout: float = 60) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with http.get(f"{hmi.api}/jobs/{job_id}") as r:
            body = await r.json()
            assert r.status == 200, body
        if body["state"] in states:
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.1)


async def _polled(hmi: Hmi, rooms: list[str]) -> None:
    tagdb = hmi.rt.ctx[TAGDB]
    await until(lambda: all(tagdb.read(f"E-{r.replace('R', '')}.relay_closed").value is True for r in rooms), timeout=20, what="meters polled")


async def test_relay_job_over_20_rooms_confirmed_by_read_back(hmi: Hmi) -> None:
    rooms = FLOOR1 + FLOOR2[:5]
    await _polled(hmi, rooms)
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    headers = await bearer(hmi, "operator1", PASSWORDS["operator1"])
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(hmi.api + "/jobs/preview", json={"kind": "relay", "targets": {"rooms": rooms},
                                                              "params": {"action": "disconnect"}}) as r:
            preview = await r.json()
            assert r.status == 200, preview
        # every room's electricity meter, and the valve of every third room
        meters = [t for t in preview["targets"]]
        assert preview["count"] == len(meters) and len([m for m in meters if m.startswith("E-")]) == 20
        async with http.post(hmi.api + "/jobs", json={"kind": "relay", "targets": {"rooms": rooms}, "params": {"action": "disconnect"},
                                                      "reason": "floor maintenance"}) as r:
            job = await r.json()
            assert r.status == 201, job
        assert job["state"] == "scheduled" and job["approval"] == "none" and job["total"] == len(meters)
        done = await wait_job(http, hmi, job["id"])
    assert done["state"] == "done", done
    assert (done["total"], done["done"], done["failed"]) == (len(meters), len(meters), 0)
    assert {i["target"] for i in done["items"]} == set(meters)
    assert all(i["state"] == "done" and "confirmed by read-back" in i["detail"] for i in done["items"]), done["items"]
    for m in meters:
        assert sim.meter(m).supply_on is False, m
    async with hmi.rt.ctx[DATABASE].sessions() as s:
        commands = (await s.scalars(select(CommandRow).where(CommandRow.reference.like(f"job:{job['id']}:%")))).all()
    assert sorted(c.meter_id for c in commands) == sorted(meters)
    assert {(c.status, c.actor, c.kind) for c in commands} == {("confirmed", "operator1", "disconnect")}


async def test_permissions_approvals_and_bad_requests(hmi: Hmi) -> None:
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    operator = await bearer(hmi, "operator1", PASSWORDS["operator1"])
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    supervisor = await bearer(hmi, "super1", PASSWORDS["super1"])
    async with aiohttp.ClientSession() as http:
        async def post(path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
            async with http.post(hmi.api + path, json=body, headers=headers) as r:
                return r.status, await r.json()

        # a cashier's job cannot switch relays
        status, body = await post("/jobs", {"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "disconnect"}}, cashier)
        assert status == 403 and "relay_control" in body["error"], body
        # bad input names the field, and creates nothing
        for bad, field in [
            ({"kind": "nope", "targets": {"floor": "B1-F1"}}, "kind"),
            ({"kind": "relay", "targets": {"floor": "B1-F9"}, "params": {"action": "connect"}}, "targets.floor"),
            ({"kind": "relay", "targets": {"rooms": ["B1-R101", "NOPE"]}, "params": {"action": "connect"}}, "targets.rooms[1]"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "toggle"}}, "params.action"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "connect"}, "repeat": "every day"}, "repeat"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "connect"}, "run_at": "2026-05-01T10:00:00"}, "run_at"),
            ({"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "-5"}}, "params.amount"),
            ({"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "1.234"}}, "params.amount"),
            ({"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "5", "extra": 1}}, "params.extra"),
            # odd input: bounded by the server's input types before anything is built from it
            ({"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "1e999999"}}, "params.amount"),
            ({"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "１０"}}, "params.amount"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "connect"}, "reason": "moved\x00out"}, "reason"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "connect"}, "run_at": "9999-12-31T23:00:00+08:00"},
             "run_at"),
            ({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "connect"}, "repeat": "0 22 * * *\x1b[2J"}, "repeat"),
            ({"kind": "relay", "targets": {"rooms": ["B1-R101", "R" * 5000]}, "params": {"action": "connect"}}, "targets.rooms[1]"),
            ({"kind": "message", "targets": {"floor": "B1-F1"}, "params": {"template": "notice", "text": "pay\x07now"}}, "params.text"),
            ({"kind": "tou_download", "targets": {"floor": "B1-F1"}, "params": {"tariff": "T" * 500}}, "params.tariff"),
            ({"kind": "tou_download", "targets": {"floor": "B1-F1"}, "params": {"tariff": "TOU", "at": "9999-01-01"}}, "params.at"),
            ({"kind": "clock_sync", "targets": {"floor": "B1-F1"}, "params": {"max_drift_s": "1e400"}}, "params.max_drift_s"),
            ({"kind": "meter_params", "targets": {"floor": "B1-F1"}, "params": {"load_limit": "9" * 40}}, "params.load_limit"),
            ({"kind": "meter_params", "targets": {"floor": "B1-F1"}, "params": {"load_limit": 1.5e308}}, "params.load_limit"),
            ({"kind": "set_thresholds", "targets": {"floor": "B1-F1"}, "params": {"thresholds": [{"level": 9, "money": "5"}]}},
             "params.thresholds[0].level"),
        ]:
            status, body = await post("/jobs", bad, admin)
            assert status == 422 and body.get("field") == field, (bad, body)
        # the preview reads the same body
        for bad, field in [({"kind": "relay", "targets": {"floor": "B1-F1"}, "params": {"action": "x\x00"}}, "params.action"),
                           ({"kind": "relay", "targets": {"meters": ["E\x00"]}, "params": {"action": "connect"}}, "targets.meters[0]")]:
            status, body = await post("/jobs/preview", bad, admin)
            assert status == 422 and body.get("field") == field, (bad, body)
        async with http.get(hmi.api + "/jobs", headers=admin) as r:
            assert (await r.json())["jobs"] == []
        assert await hmi.rt.ctx[AUDIT].query(action="job.create") == []
        # switching every room of the site needs a supervisor (more than 50 rooms)
        status, job = await post("/jobs", {"kind": "relay", "targets": {"building": "B1"}, "params": {"action": "connect"}}, operator)
        assert status == 201 and job["approval"] == "required" and "60 rooms" in job["approval_why"], job
        await asyncio.sleep(0.5)
        async with http.get(f"{hmi.api}/jobs/{job['id']}", headers=operator) as r:
            assert (await r.json())["state"] == "scheduled"  # waits for the approval
        status, body = await post(f"/jobs/{job['id']}/approve", {}, operator)
        assert status == 403, body  # an operator has no approve permission
        status, body = await post(f"/jobs/{job['id']}/cancel", {"reason": "not today"}, cashier)
        assert status == 403, body
        status, body = await post(f"/jobs/{job['id']}/cancel", {"reason": "not\x00today"}, operator)
        assert status == 422 and body["field"] == "reason", body
        async with http.get(f"{hmi.api}/jobs/{job['id']}", headers=operator) as r:
            assert (await r.json())["state"] == "scheduled"  # the odd request changed nothing
        status, body = await post(f"/jobs/{job['id']}/approve", {"reason": "ok"}, supervisor)
        assert status == 200 and body["approval"] == "approved" and body["approved_by"] == "super1", body
        status, body = await post(f"/jobs/{job['id']}/approve", {}, admin)
        assert status == 409, body
        # the creator may not approve their own job, even with the permission
        status, own = await post("/jobs", {"kind": "recharge", "targets": {"floor": "B1-F1"}, "params": {"amount": "900000"}}, admin)
        assert status == 201 and own["approval"] == "required", own
        status, body = await post(f"/jobs/{own['id']}/approve", {}, admin)
        assert status == 403 and "own request" in body["error"], body  # the approvals service's rule
        status, body = await post(f"/jobs/{own['id']}/cancel", {"reason": "typo"}, admin)
        assert status == 200 and body["state"] == "cancelled", body
    entries = await hmi.rt.ctx[AUDIT].query(action="job.approve")
    assert [(e.actor, e.target_id) for e in entries] == [("super1", str(job["id"]))]
