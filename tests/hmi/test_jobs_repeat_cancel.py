"""Repeating and cancelled jobs on the demo site and its simulator, with the jobs' clock driven
by the test: a job with ``repeat`` (every minute) runs once per minute of that clock, each run
with its own items and its own idempotency references, until it is cancelled; a job cancelled
while it runs ends ``cancelled``: items done stay done (and their meters switched), the rest end
cancelled (their meters untouched), including an item stopped between two tries; a cancel
stored just before a crash is carried out at the restart."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from protocols.modbus.sim import Simulator
from scada.alarms.clock import ManualClock
from scada.commands.models import CommandRow
from scada.core.tags import TAGDB
from scada.db import Database, async_url
from scada.db.component import DATABASE
from scada.operations.component import JOBS
from scada.operations.models import JobRow
from scada.simulator.component import SIMULATOR
from scada.users.component import AUDIT, USERS

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, add_role_users, demo_site_config
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import EXTRA, api, ops, site  # noqa: F401 - the fixture


async def _runs(http: aiohttp.ClientSession, hmi: Hmi, job_id: int, run: int) -> dict[str, Any]:
    """The job once its run ``run`` has ended and it waits for its next one."""
    for _ in range(600):
        job = await api(http, "GET", f"{hmi.api}/jobs/{job_id}")
        if job["run"] >= run and job["state"] == "scheduled":
            return job  # type: ignore[no-any-return]
        assert job["state"] in ("scheduled", "running"), job
        await hmi.rt.ctx[JOBS].wait_idle(timeout=30)
    raise AssertionError(f"job {job_id} did not end run {run}: {job}")


async def test_a_repeating_job_runs_every_minute_until_cancelled(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, clock = ops
    tagdb = hmi.rt.ctx[TAGDB]
    await until(lambda: tagdb.read("E-B1-101.comm_ok").value is True, timeout=20, what="polled")
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=admin) as http:
        await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                        "definition": {"price": "0.60"}}, 201)
        for room in ("B1-R101", "B1-R102"):
            await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open", {"tariffs": {"electricity": "FLAT"}, "opening_balance": "10"}, 201)
        cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"rooms": ["B1-R101", "B1-R102"]},
                                                          "params": {"amount": "1.50"}, "repeat": "* * * * *"}, 201, headers=cashier)
        first = dt.datetime.fromisoformat(job["run_at"])
        assert job["state"] == "scheduled" and job["run"] == 0 and job["repeat"] == "* * * * *", job
        assert first > clock.now() and first - clock.now() <= dt.timedelta(minutes=1) and first.second == 0, (first, clock.now())
        # not before its time
        clock.set(first - dt.timedelta(seconds=1))
        await hmi.rt.ctx[JOBS].wait_idle(timeout=30)
        assert (await api(http, "GET", f"{hmi.api}/jobs/{job['id']}"))["run"] == 0
        for run in (1, 2, 3):
            clock.set(first + dt.timedelta(minutes=run - 1))
            view = await _runs(http, hmi, job["id"], run)
            assert view["run"] == run and view["detail"] == f"run {run}: 2 of 2 done", view
            assert dt.datetime.fromisoformat(view["run_at"]) == first + dt.timedelta(minutes=run), view
            assert dt.datetime.fromisoformat(view["started_at"]) == first + dt.timedelta(minutes=run - 1)
            # the items shown are this run's, each done once
            assert [(i["target"], i["state"]) for i in view["items"]] == [("B1-R101", "done"), ("B1-R102", "done")], view
        # each run recharged each room once, with the run's own reference
        for room in ("B1-R101", "B1-R102"):
            entries = (await api(http, "GET", f"{hmi.api}/rooms/{room}/account/ledger"))["entries"]
            refs = sorted(e["reference"] for e in entries if e.get("channel") == "job")
            assert refs == [f"job-{job['id']}-{run}-{room}" for run in (1, 2, 3)], refs
            balance = Decimal((await api(http, "GET", f"{hmi.api}/rooms/{room}/account"))["balance"])
            assert Decimal("14") < balance <= Decimal("14.50"), balance  # 10 + 3 x 1.50, less a little electricity
        ended = await hmi.rt.ctx[AUDIT].query(action="job.end", target_id=str(job["id"]))
        assert sorted(e.after["run"] for e in ended) == [1, 2, 3] and {e.after["state"] for e in ended} == {"scheduled"}
        # cancelled while it waits: no further run
        cancelled = await api(http, "POST", f"{hmi.api}/jobs/{job['id']}/cancel", {"reason": "season over"}, headers=cashier)
        assert cancelled["state"] == "cancelled", cancelled
        clock.advance(dt.timedelta(minutes=5))
        await hmi.rt.ctx[JOBS].wait_idle(timeout=30)
        view = await api(http, "GET", f"{hmi.api}/jobs/{job['id']}")
        assert (view["state"], view["run"]) == ("cancelled", 3), view
        entries = (await api(http, "GET", f"{hmi.api}/rooms/B1-R101/account/ledger"))["entries"]
        assert len([e for e in entries if e.get("channel") == "job"]) == 3


async def test_a_job_cancelled_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    # two items per link at a time, each worker 2 s between items: the stuck meter's item holds
    # one worker (a minute's wait before its retry) while the other goes on
    config = demo_site_config(tmp_path, *EXTRA, "operations.link_in_flight=2", "operations.link_gap_s=2.0",
                              "operations.item_retries=1", "operations.item_backoff_s=60")
    async with site(config, ManualClock(dt.datetime.now(dt.UTC))) as hmi:
        await add_role_users(hmi.rt.ctx[USERS])
        sim: Simulator = hmi.rt.ctx[SIMULATOR]
        tagdb = hmi.rt.ctx[TAGDB]
        meters = [f"E-B1-1{i:02d}" for i in range(1, 16)]
        await until(lambda: all(tagdb.read(f"{m}.relay_closed").value is True for m in meters), timeout=20, what="polled")
        operator = await bearer(hmi, "operator1", PASSWORDS["operator1"])
        async with aiohttp.ClientSession(headers=operator) as http, aiohttp.ClientSession() as plain:
            await Control.of(plain, sim).relay("E-B1-101", stuck=True)  # accepts the command, does not move
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "relay", "targets": {"meters": meters},
                                                              "params": {"action": "disconnect"}, "reason": "maintenance"}, 201)
            reference = f"job:{job['id']}:1:E-B1-101"

            async def stuck_failed_once() -> bool:
                async with hmi.rt.ctx[DATABASE].sessions() as s:
                    status = await s.scalar(select(CommandRow.status).where(CommandRow.reference == reference))
                return status == "failed"

            # under way: some items done, the stuck meter's first try failed (it waits for its retry)
            for _ in range(3000):
                view = await api(http, "GET", f"{hmi.api}/jobs/{job['id']}")
                if view["done"] >= 1 and await stuck_failed_once():
                    break
                assert view["state"] in ("scheduled", "running"), view
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"the job did not get under way: {view}")
            assert view["state"] == "running" and view["pending"] > 0, view
            cancelled = await api(http, "POST", f"{hmi.api}/jobs/{job['id']}/cancel", {"reason": "storm coming"})
            assert cancelled["state"] == "running", cancelled  # the items under way finish first
            done = await wait_job(http, hmi, job["id"], timeout=30)
        assert done["state"] == "cancelled" and done["detail"].startswith("cancelled by operator1: "), done
        items = {i["target"]: i for i in done["items"]}
        states = {i["state"] for i in items.values()}
        assert states == {"done", "cancelled"}, items  # nothing left pending or running
        assert (done["done"], done["failed"], done["cancelled"]) == (
            sum(i["state"] == "done" for i in items.values()), 0, sum(i["state"] == "cancelled" for i in items.values()))
        assert done["done"] >= 1 and done["cancelled"] >= 2 and done["done"] + done["cancelled"] == len(meters), done
        stuck = items["E-B1-101"]
        assert stuck["state"] == "cancelled" and stuck["attempts"] == 1, stuck
        assert stuck["detail"].startswith("cancelled by operator1 after 1 try: failed: "), stuck
        for meter, item in items.items():
            if item["state"] == "done":
                assert sim.meter(meter).supply_on is False and "confirmed by read-back" in item["detail"], (meter, item)
            else:
                assert sim.meter(meter).supply_on is True, (meter, item)  # never switched
                assert item["detail"].startswith("cancelled by operator1"), item
        # no command was sent for a cancelled item (the stuck meter's one try aside)
        async with hmi.rt.ctx[DATABASE].sessions() as s:
            commands = (await s.scalars(select(CommandRow).where(CommandRow.reference.like(f"job:{job['id']}:%")))).all()
        sent = sorted(c.meter_id for c in commands)
        assert sent == sorted([m for m, i in items.items() if i["state"] == "done"] + ["E-B1-101"]), sent
        audit = hmi.rt.ctx[AUDIT]
        assert [(e.actor, e.reason) for e in await audit.query(action="job.cancel", target_id=str(job["id"]))] == [("operator1", "storm coming")]
        assert [e.outcome for e in await audit.query(action="job.end", target_id=str(job["id"]))] == ["cancelled"]



async def test_a_cancel_just_before_a_crash_is_kept_at_the_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops with a running job whose cancel it has stored but not yet carried out
    (a crash in between): at the restart the job ends cancelled, the items not started stay
    unstarted, and no meter of theirs is switched."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    config = demo_site_config(tmp_path, *EXTRA, "operations.link_in_flight=1", "operations.link_gap_s=2.0")
    meters = [f"E-B1-1{i:02d}" for i in range(1, 16)]
    async with site(config, ManualClock(dt.datetime.now(dt.UTC))) as hmi:
        await add_role_users(hmi.rt.ctx[USERS])
        tagdb = hmi.rt.ctx[TAGDB]
        await until(lambda: all(tagdb.read(f"{m}.relay_closed").value is True for m in meters), timeout=20, what="polled")
        operator = await bearer(hmi, "operator1", PASSWORDS["operator1"])
        async with aiohttp.ClientSession(headers=operator) as http:
            job = await api(http, "POST", hmi.api + "/jobs", {"kind": "relay", "targets": {"meters": meters},
                                                              "params": {"action": "disconnect"}}, 201)
            for _ in range(3000):
                view = await api(http, "GET", f"{hmi.api}/jobs/{job['id']}")
                if view["done"] >= 2:
                    break
                await asyncio.sleep(0.02)
            assert view["state"] == "running" and view["pending"] > 2, view
    # what a cancel writes when it is accepted (JobService.cancel), with the server gone before
    # the run could end: the job is still "running", its cancel stored
    db = Database(async_url(config.database.url, base_dir=tmp_path))
    try:
        async with db.transaction() as s:
            row = await s.get(JobRow, job["id"])
            assert row is not None and row.state == "running" and row.cancelled_by is None
            row.cancelled_by = "operator1"
    finally:
        await db.dispose()
    async with site(config, ManualClock(dt.datetime.now(dt.UTC))) as hmi:
        sim: Simulator = hmi.rt.ctx[SIMULATOR]
        admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
        async with aiohttp.ClientSession(headers=admin) as http:
            done = await wait_job(http, hmi, job["id"], timeout=30)
        assert done["state"] == "cancelled" and done["detail"].startswith("cancelled by operator1: "), done
        items = {i["target"]: i for i in done["items"]}
        assert {i["state"] for i in items.values()} == {"done", "cancelled"}, items
        assert done["done"] >= 2 and done["cancelled"] >= 2 and done["done"] + done["cancelled"] == len(meters), done
        # a cancelled item's meter was never sent a command, before or after the restart (this
        # simulator started afresh: its relays are all closed)
        async with hmi.rt.ctx[DATABASE].sessions() as s:
            commands = (await s.scalars(select(CommandRow).where(CommandRow.reference.like(f"job:{job['id']}:%")))).all()
        assert sorted({c.meter_id for c in commands}) == sorted(m for m, i in items.items() if i["state"] == "done")
        assert all(c.status == "confirmed" for c in commands), [(c.meter_id, c.status) for c in commands]
        for meter, item in items.items():
            if item["state"] == "cancelled":
                assert sim.meter(meter).supply_on is True and item["detail"] == "cancelled by operator1", (meter, item)
