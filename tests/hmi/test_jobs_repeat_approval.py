"""Four eyes on a repeating job: an approval is good for one run. A repeating recharge above the
approval limit asks again as soon as its next run is scheduled, does not run until a supervisor
approves that run, and each run's approval is audited; a run whose selection grew past the limit
since the job was created waits for an approval it did not need before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.approvals.component import APPROVALS
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.operations.targets import room_state
from scada.site.component import ASSETS
from scada.users.component import AUDIT, USERS

from ..simulation import until
from .conftest import ADMIN_PASSWORD, PASSWORDS, add_role_users, demo_site_config
from .test_api_users import bearer
from .test_jobs_site import EXTRA, api, site

ROOMS = ["B1-R101", "B1-R102"]


async def _job_recharges(http: aiohttp.ClientSession, api_url: str) -> int:
    entries = (await api(http, "GET", f"{api_url}/rooms/B1-R101/account/ledger"))["entries"]
    return len([e for e in entries if e.get("channel") == "job"])


async def test_each_run_of_a_repeating_job_over_the_limit_needs_its_own_approval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with site(demo_site_config(tmp_path, *EXTRA, 'operations.approval_money_above="2"'), clock) as hmi:
        await add_role_users(hmi.rt.ctx[USERS])
        jobs = hmi.rt.ctx[JOBS]
        admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
        cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
        supervisor = await bearer(hmi, "super1", PASSWORDS["super1"])
        async with aiohttp.ClientSession(headers=cashier) as http:
            await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                            "definition": {"price": "0.60"}}, 201, headers=admin)
            for room in ROOMS:
                await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open",
                          {"tariffs": {"electricity": "FLAT"}, "opening_balance": "10"}, 201, headers=admin)
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"rooms": ROOMS},
                                                              "params": {"amount": "1.50"}, "repeat": "* * * * *"}, 201, headers=admin)
            url = f"{hmi.api}/jobs/{job['id']}"
            assert job["approval"] == "required" and "3.00" in job["approval_why"], job
            first = dt.datetime.fromisoformat(job["run_at"])
            await api(http, "POST", url + "/approve", {"reason": "monthly subsidy"}, headers=supervisor)

            clock.set(first)
            for _ in range(300):  # run 1 ends and the next run asks for its own approval
                await jobs.wait_idle(timeout=30)
                view = await api(http, "GET", url)
                if view["run"] == 1 and view["approval"] == "required":
                    break
            assert (view["state"], view["run"], view["approval"], view["approved_by"]) == ("scheduled", 1, "required", None), view
            assert "waits for approval request" in view["detail"], view
            assert await _job_recharges(http, hmi.api) == 1

            # its time comes and goes without an approval: no run
            clock.set(first + dt.timedelta(minutes=1, seconds=30))
            await jobs.wait_idle(timeout=30)
            view = await api(http, "GET", url)
            assert (view["state"], view["run"]) == ("scheduled", 1), view
            assert await _job_recharges(http, hmi.api) == 1
            # its creator cannot approve it, even with the permission; a supervisor can, and the run goes ahead
            refused = await api(http, "POST", url + "/approve", {}, 403, headers=admin)
            assert "own request" in refused["error"], refused
            await api(http, "POST", url + "/approve", {"reason": "run 2"}, headers=supervisor)
            for _ in range(300):
                await jobs.wait_idle(timeout=30)
                view = await api(http, "GET", url)
                if view["run"] == 2 and view["approval"] == "required":
                    break
            assert (view["state"], view["run"], view["approval"]) == ("scheduled", 2, "required"), view
            assert await _job_recharges(http, hmi.api) == 2
            assert view["detail"].startswith("waits for approval request"), view

        audit = hmi.rt.ctx[AUDIT]
        approvals = await audit.query(action="job.approve", target_id=str(job["id"]))
        assert sorted(a.actor for a in approvals) == ["super1", "super1"]
        required = await audit.query(action="job.approval_required", target_id=str(job["id"]))
        assert sorted(a.after["run"] for a in required) == [2, 3]


async def test_a_run_whose_selection_grew_past_the_limit_waits_for_an_approval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeating recharge of the floor's rooms in state ``ok`` needs no approval for one room;
    when a second room's account opens, its next run (3.00 above the limit of 2) waits for one."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with site(demo_site_config(tmp_path, *EXTRA, 'operations.approval_money_above="2"'), clock) as hmi:
        await add_role_users(hmi.rt.ctx[USERS])
        jobs, tagdb, assets = hmi.rt.ctx[JOBS], hmi.rt.ctx[TAGDB], hmi.rt.ctx[ASSETS]
        admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
        supervisor = await bearer(hmi, "super1", PASSWORDS["super1"])

        def state(room: str) -> str:
            return room_state(assets.snapshot, tagdb, room)

        async with aiohttp.ClientSession(headers=admin) as http:
            await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                            "definition": {"price": "0.60"}}, 201)
            await api(http, "POST", f"{hmi.api}/rooms/B1-R101/account/open", {"tariffs": {"electricity": "FLAT"}, "opening_balance": "100"}, 201)
            await until(lambda: state("B1-R101") == "ok" and state("B1-R102") == "no_account", timeout=20, what="room states")
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"floor": "B1-F1", "state": "ok"},
                                                              "params": {"amount": "1.50"}, "repeat": "* * * * *"}, 201)
            url = f"{hmi.api}/jobs/{job['id']}"
            assert (job["approval"], job["total"]) == ("none", 1), job
            await api(http, "POST", f"{hmi.api}/rooms/B1-R102/account/open", {"tariffs": {"electricity": "FLAT"}, "opening_balance": "100"}, 201)
            await until(lambda: state("B1-R102") == "ok", timeout=20, what="B1-R102 ok")

            clock.set(dt.datetime.fromisoformat(job["run_at"]))
            for _ in range(300):
                await jobs.wait_idle(timeout=30)
                view = await api(http, "GET", url)
                if view["approval"] == "required":
                    break
            assert (view["state"], view["run"]) == ("scheduled", 0), view
            assert "3.00" in view["approval_why"], view
            assert await _job_recharges(http, hmi.api) == 0
            await api(http, "POST", url + "/approve", {"reason": "two shops now"}, headers=supervisor)
            for _ in range(300):
                await jobs.wait_idle(timeout=30)
                view = await api(http, "GET", url)
                if view["run"] == 1 and view["state"] == "scheduled":
                    break
            assert [(i["target"], i["state"]) for i in view["items"]] == [("B1-R101", "done"), ("B1-R102", "done")], view
            assert view["approval"] == "required", view  # and the run after that asks again


async def test_an_approval_asked_days_ahead_stays_open_until_after_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job due in three days asks now; its request does not expire after the usual 24 hours,
    long before its run, but the usual window after the run's time."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with site(demo_site_config(tmp_path, *EXTRA, 'operations.approval_money_above="2"'), clock) as hmi:
        admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
        async with aiohttp.ClientSession(headers=admin) as http:
            run_at = clock.now() + dt.timedelta(days=3)
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"rooms": ROOMS},
                                                              "params": {"amount": "1.50"}, "run_at": run_at.isoformat()}, 201)
            assert job["approval"] == "required", job
        pending = [r for r in await hmi.rt.ctx[APPROVALS].list(state="pending", kind="job") if r.target == str(job["id"])]
        assert len(pending) == 1
        assert pending[0].expires_at >= run_at + dt.timedelta(hours=23), (pending[0].expires_at, run_at)
