"""Job kinds run end to end on the demo site and its simulator, each checked by its effect and its
audit rows: ``recharge`` (ledger entries per room, one reference per job run, four eyes above
the job money limit), ``assign_tariff`` (a room without an account fails, the rest go on),
``set_thresholds``, ``set_credit`` (a credit limit above the approvals limit waits for a
supervisor), ``read_now`` (a fresh reading of each meter); the selections ``{"state": "off"}``
and ``{"alarm_level": N}``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import aiohttp

from protocols.modbus.sim import Simulator
from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.operations.targets import room_state
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.component import AUDIT

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import api, ops  # noqa: F401 - the fixture

ROOMS = ["B1-R101", "B1-R102", "B1-R103", "B1-R104"]


async def _setup(hmi: Hmi, http: aiohttp.ClientSession, balances: dict[str, str], **settings: Any) -> None:
    tagdb = hmi.rt.ctx[TAGDB]
    await until(lambda: all(tagdb.read(f"E-{r.replace('R', '')}.comm_ok").value is True for r in balances), timeout=20, what="polled")
    for tariff, commodity, price in (("FLAT", "electricity", "0.60"), ("FLAT2", "electricity", "0.80"), ("W", "water", "3"),
                                     ("DEAR", "electricity", "200")):
        await api(http, "POST", hmi.api + "/tariffs", {"id": tariff, "name": tariff, "commodity": commodity, "definition": {"price": price}},
                  201)
    await _open(hmi, http, balances, "FLAT", **settings)


async def _open(hmi: Hmi, http: aiohttp.ClientSession, balances: dict[str, str], tariff: str, **settings: Any) -> None:
    for room, balance in balances.items():
        await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open", {
            "tariffs": {"electricity": tariff, **({"water": "W"} if room[-1] in "369" else {})}, "opening_balance": balance, **settings,
        }, 201)


def _job_entry(entries: list[dict[str, Any]], reference: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ledger entry with ``reference`` and the one before it (newest first)."""
    i = next(n for n, e in enumerate(entries) if e.get("reference") == reference)
    return entries[i], entries[i + 1]


async def test_account_kinds_recharge_tariff_thresholds_credit(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    audit = hmi.rt.ctx[AUDIT]
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    supervisor = await bearer(hmi, "super1", PASSWORDS["super1"])
    async with aiohttp.ClientSession(headers=admin) as as_admin:
        await _setup(hmi, as_admin, {r: "50" for r in ROOMS})
    async with aiohttp.ClientSession(headers=cashier) as http:
        accounts = {r: (await api(http, "GET", f"{hmi.api}/rooms/{r}/account"))["id"] for r in ROOMS}

        # recharge: one ledger entry per room, by the job's creator, with the job's reference
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"rooms": ROOMS[:3]},
                                                          "params": {"amount": "25"}, "reason": "move-in bonus"}, 201)
        assert job["approval"] == "none" and job["params"] == {"amount": "25.00"}, job
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"], done["total"]) == ("done", 3, 3), done
        for room in ROOMS[:3]:
            reference = f"job-{job['id']}-1-{room}"
            entries = (await api(http, "GET", f"{hmi.api}/rooms/{room}/account/ledger"))["entries"]
            entry, before = _job_entry(entries, reference)
            assert (entry["kind"], entry["amount"], entry["channel"], entry["actor"]) == ("recharge", "25.00", "job", "cashier1"), entry
            assert Decimal(entry["balance_after"]) - Decimal(before["balance_after"]) == Decimal("25.00")
            item = next(i for i in done["items"] if i["target"] == room)
            assert item["result"]["entry"] == entry["id"] and item["detail"].startswith("recharged 25.00; balance "), item
        entries = (await api(http, "GET", f"{hmi.api}/rooms/B1-R104/account/ledger"))["entries"]
        assert not any(e.get("channel") == "job" for e in entries)
        rows = [e for e in await audit.query(action="account.recharge") if e.after and e.after.get("channel") == "job"]
        assert sorted((e.actor, e.target_id, e.after["amount"], e.after["reference"]) for e in rows) == sorted(
            ("cashier1", str(accounts[r]), "25.00", f"job-{job['id']}-1-{r}") for r in ROOMS[:3])
        assert all(f"job {job['id']} (recharge): move-in bonus" == e.reason for e in rows)
        created = await audit.query(action="job.create", target_id=str(job["id"]))
        assert [(e.actor, e.after["count"], e.after["params"]) for e in created] == [("cashier1", 3, {"amount": "25.00"})]
        ended = await audit.query(action="job.end", target_id=str(job["id"]))
        assert [(e.actor, e.outcome, e.after["detail"]) for e in ended] == [("system:jobs", "done", "3 of 3 done")]

        # more money than the job limit (10000): it waits for a supervisor, then runs as its creator
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"rooms": ROOMS[:3]},
                                                          "params": {"amount": "4000"}}, 201)
        assert job["approval"] == "required" and "12000.00" in job["approval_why"], job
        await api(http, "POST", f"{hmi.api}/jobs/{job['id']}/approve", {}, 403)  # not the creator, nor a cashier
        balance = (await api(http, "GET", f"{hmi.api}/rooms/B1-R101/account"))["balance"]
        assert (await api(http, "GET", f"{hmi.api}/jobs/{job['id']}"))["state"] == "scheduled"
        assert Decimal(balance) < 100  # nothing recharged while it waits
        approved = await api(http, "POST", f"{hmi.api}/jobs/{job['id']}/approve", {"reason": "agreed"}, headers=supervisor)
        assert approved["approval"] == "approved" and approved["approved_by"] == "super1", approved
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"]) == ("done", 3), done
        for room in ROOMS[:3]:
            entries = (await api(http, "GET", f"{hmi.api}/rooms/{room}/account/ledger"))["entries"]
            entry, _ = _job_entry(entries, f"job-{job['id']}-1-{room}")
            assert (entry["amount"], entry["actor"]) == ("4000.00", "cashier1"), entry
        assert [e.actor for e in await audit.query(action="job.approve", target_id=str(job["id"]))] == ["super1"]

        # assign_tariff: the rooms' accounts get the tariff; a room without an account fails, the rest go on
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "assign_tariff", "targets": {"rooms": ["B1-R101", "B1-R102", "B1-R105"]},
                                                          "params": {"tariff": "FLAT2"}}, 201)
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"], done["failed"]) == ("failed", 2, 1), done
        failed = next(i for i in done["items"] if i["state"] == "failed")
        assert failed["target"] == "B1-R105" and "has no open account" in failed["detail"], failed
        tariffs = {r: (await api(http, "GET", f"{hmi.api}/rooms/{r}/account"))["tariffs"] for r in ROOMS[:3]}
        assert tariffs == {"B1-R101": {"electricity": "FLAT2", "water": None}, "B1-R102": {"electricity": "FLAT2", "water": None},
                           "B1-R103": {"electricity": "FLAT", "water": "W"}}
        rows = await audit.query(action="account.tariff")
        assert sorted((e.actor, e.target_id, e.before, e.after) for e in rows) == sorted(
            ("cashier1", str(accounts[r]), {"electricity": "FLAT"}, {"electricity": "FLAT2"}) for r in ("B1-R101", "B1-R102"))

        # set_thresholds: every room of the selection, as given
        thresholds = [{"level": 1, "money": "30"}, {"level": 2, "money": "10"}]
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "set_thresholds", "targets": {"rooms": ROOMS},
                                                          "params": {"thresholds": thresholds}}, 201)
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"]) == ("done", 4), done
        expected = job["params"]["thresholds"]
        assert [(t["level"], t["money"]) for t in expected] == [(1, "30.00"), (2, "10.00")], expected
        for room in ROOMS:
            assert (await api(http, "GET", f"{hmi.api}/rooms/{room}/account"))["thresholds"] == expected, room
        rows = [e for e in await audit.query(action="account.settings") if e.reason.startswith(f"job {job['id']} ")]
        assert sorted((e.actor, e.target_id) for e in rows) == sorted(("cashier1", str(accounts[r])) for r in ROOMS)
        assert all(e.after["thresholds"] == expected and e.before["thresholds"] != expected for e in rows)

        # set_credit: any credit above the approvals limit (0 here) waits for a supervisor
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "set_credit", "targets": {"rooms": ROOMS[:2]},
                                                          "params": {"credit_limit": "20"}}, 201)
        assert job["approval"] == "required" and "approvals limit" in job["approval_why"], job
        assert (await api(http, "GET", f"{hmi.api}/jobs/{job['id']}"))["state"] == "scheduled"
        assert (await api(http, "GET", f"{hmi.api}/rooms/B1-R101/account"))["credit_limit"] == "0.00"
        await api(http, "POST", f"{hmi.api}/jobs/{job['id']}/approve", {}, headers=supervisor)
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"]) == ("done", 2), done
        for room in ROOMS:
            limit = (await api(http, "GET", f"{hmi.api}/rooms/{room}/account"))["credit_limit"]
            assert limit == ("20.00" if room in ROOMS[:2] else "0.00"), (room, limit)
        rows = [e for e in await audit.query(action="account.settings") if e.reason.startswith(f"job {job['id']} ")]
        assert sorted((e.actor, e.target_id, e.before["credit_limit"], e.after["credit_limit"]) for e in rows) == sorted(
            ("cashier1", str(accounts[r]), "0.00", "20.00") for r in ROOMS[:2])
        assert [e.actor for e in await audit.query(action="job.approve", target_id=str(job["id"]))] == ["super1"]
        # lowering it back to nothing needs nobody else
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "set_credit", "targets": {"rooms": ROOMS[:2]},
                                                          "params": {"credit_limit": "0"}}, 201)
        assert job["approval"] == "none", job
        assert (await wait_job(http, hmi, job["id"]))["state"] == "done"
        assert (await api(http, "GET", f"{hmi.api}/rooms/B1-R101/account"))["credit_limit"] == "0.00"


async def test_read_now_and_the_state_and_alarm_level_selections(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    sim: Simulator = hmi.rt.ctx[SIMULATOR]
    tagdb = hmi.rt.ctx[TAGDB]
    audit = hmi.rt.ctx[AUDIT]
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    viewer = await bearer(hmi, "viewer1", PASSWORDS["viewer1"])
    async with aiohttp.ClientSession(headers=admin) as http:
        # B1-R103 low (level 1 below 20.00), B1-R104 very low (level 2 below 5.00), the others fine
        await _setup(hmi, http, {"B1-R101": "50", "B1-R102": "50", "B1-R103": "15", "B1-R104": "3"},
                     thresholds=[{"level": 1, "money": "20"}, {"level": 2, "money": "5"}, {"level": 3, "money": "0"}])
        levels = {r: (await api(http, "GET", f"{hmi.api}/rooms/{r}/account"))["alarm_level"] for r in ROOMS}
        assert levels == {"B1-R101": 0, "B1-R102": 0, "B1-R103": 1, "B1-R104": 2}, levels

        # {"alarm_level": N}: the rooms at that balance level or above, now
        preview = await api(http, "POST", hmi.api + "/jobs/preview", {"kind": "recharge", "targets": {"alarm_level": 1},
                                                                       "params": {"amount": "10"}})
        assert preview["targets"] == ["B1-R103", "B1-R104"], preview
        preview = await api(http, "POST", hmi.api + "/jobs/preview", {"kind": "recharge", "targets": {"alarm_level": 2},
                                                                       "params": {"amount": "10"}})
        assert preview["targets"] == ["B1-R104"], preview
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"alarm_level": 1},
                                                          "params": {"amount": "10"}}, 201)
        done = await wait_job(http, hmi, job["id"])
        assert sorted(i["target"] for i in done["items"]) == ["B1-R103", "B1-R104"] and done["state"] == "done", done
        for room in ROOMS:
            entries = (await api(http, "GET", f"{hmi.api}/rooms/{room}/account/ledger"))["entries"]
            assert any(e.get("reference") == f"job-{job['id']}-1-{room}" for e in entries) == (room in ("B1-R103", "B1-R104")), room

        # {"state": "off"}: the rooms whose supply is cut (credit used up); a recharge job for
        # them all brings their supply back, and no other room's
        await _open(hmi, http, {"B1-R105": "1.00", "B1-R106": "1.00"}, "DEAR", friendly_credit=False)
        async with aiohttp.ClientSession() as plain:
            control = Control.of(plain, sim)
            for meter in ("E-B1-105", "E-B1-106"):  # 10 kW at 200/kWh: the 1.00 is gone within seconds
                await control.load(meter, kw=10)
            snapshot = hmi.rt.ctx[ASSETS].snapshot
            await until(lambda: all(room_state(snapshot, tagdb, r) == "off" for r in ("B1-R105", "B1-R106")), timeout=30, what="two rooms cut")
            for meter in ("E-B1-105", "E-B1-106"):
                await control.load(meter, kw=0)
        await until(lambda: not sim.meter("E-B1-105").supply_on and not sim.meter("E-B1-106").supply_on, timeout=20, what="relays open")
        assert [r for r in sorted(snapshot.rooms) if room_state(snapshot, tagdb, r) == "off"] == ["B1-R105", "B1-R106"]
        preview = await api(http, "POST", hmi.api + "/jobs/preview", {"kind": "recharge", "targets": {"state": "off"},
                                                                       "params": {"amount": "100"}})
        assert preview["targets"] == ["B1-R105", "B1-R106"], preview
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "recharge", "targets": {"state": "off"}, "params": {"amount": "100"}}, 201)
        done = await wait_job(http, hmi, job["id"])
        assert done["state"] == "done" and sorted(i["target"] for i in done["items"]) == ["B1-R105", "B1-R106"], done
        await until(lambda: sim.meter("E-B1-105").supply_on and sim.meter("E-B1-106").supply_on, timeout=30, what="supply back")
        await until(lambda: not any(room_state(snapshot, tagdb, r) == "off" for r in snapshot.rooms), timeout=20, what="no room off")
        rows = [e for e in await audit.query(action="account.recharge") if e.after and e.after.get("channel") == "job"]
        assert sorted(e.after["room"] for e in rows if e.after["reference"].startswith(f"job-{job['id']}-")) == ["B1-R105", "B1-R106"]

    async with aiohttp.ClientSession(headers=viewer) as http:
        # read_now (a viewer may): each meter read now, its values as the meter gave them
        meters = ["E-B1-101", "E-B1-102", "W-B1-103"]
        since = dt.datetime.now(dt.UTC)
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "read_now", "targets": {"meters": meters}}, 201)
        done = await wait_job(http, hmi, job["id"])
        assert (done["state"], done["done"]) == ("done", 3), done
        for item in done["items"]:
            m = item["target"]
            point, acc = ("volume_total", "volume") if m.startswith("W") else ("energy_total", "total")
            value = item["result"][point]
            truth = sim.meter(m).acc[acc] / 1_000_000
            assert 0 <= truth - value < 0.5, (m, truth, value)
            assert item["detail"].startswith("read ") and item["attempts"] == 1, item
            tv = tagdb.read(f"{m}.{point}")
            assert tv.source_ts >= since, (m, tv)  # the reading is fresh: taken after the job was asked for
        created = await audit.query(action="job.create", target_id=str(job["id"]))
        assert [(e.actor, e.after["kind"], e.after["count"]) for e in created] == [("viewer1", "read_now", 3)]
        ended = await audit.query(action="job.end", target_id=str(job["id"]))
        assert [(e.outcome, e.after["detail"]) for e in ended] == [("done", "3 of 3 done")]
