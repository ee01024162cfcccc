"""A prepared account that will not be opened (the tenant did not move in) is withdrawn: its room
may be prepared again, the ``open`` job passes it by, the withdrawal is audited, and only a user
who manages accounts may do it."""

from __future__ import annotations

import datetime as dt

import aiohttp
from sqlalchemy import select

from scada.alarms.clock import ManualClock
from scada.db.component import DATABASE
from scada.operations.component import JOBS
from scada.operations.models import PreparedAccountRow
from scada.users.models import AuditEntry

from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import api, ops  # noqa: F401 - the fixture

TWO = """customer,contact,language,room,mode,tariff,opening_balance
Li Lei,+8613800000001,zh-CN,B1-R201,prepaid,FLAT,10
Han Meimei,han@example.com,en,B1-R202,prepaid,FLAT,20
"""
AGAIN = """customer,contact,language,room,mode,tariff,opening_balance
Wang Wei,+8613800000003,zh-CN,B1-R202,prepaid,FLAT,30
"""


async def test_a_withdrawn_prepared_account_frees_its_room_and_is_not_opened(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    viewer = await bearer(hmi, "viewer1", PASSWORDS["viewer1"])
    csv = {**cashier, "Content-Type": "text/csv"}
    async with aiohttp.ClientSession(headers=cashier) as http:
        await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                        "definition": {"price": "0.60"}}, 201, headers=admin)
        created = await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=TWO.encode(), headers=csv)
        ids = {a["room"]: a["id"] for a in created["accounts"]}
        # the room already has a prepared account: a second one is a row error until it is withdrawn
        report = await api(http, "POST", hmi.api + "/accounts/import?dry_run=true", None, 200, data=AGAIN.encode(), headers=csv)
        assert [(e["line"], e["column"]) for e in report["errors"]] == [(2, "room")], report

        url = f"{hmi.api}/accounts/prepared/{ids['B1-R202']}/withdraw"
        refused = await api(http, "POST", url, {"reason": "did not move in"}, 403, headers=viewer)
        assert "error" in refused
        withdrawn = await api(http, "POST", url, {"reason": "did not move in"}, 200)
        assert (withdrawn["room"], withdrawn["state"]) == ("B1-R202", "withdrawn")
        again = await api(http, "POST", url, {}, 409)
        assert "withdrawn" in again["error"]
        assert "no prepared account" in (await api(http, "POST", f"{hmi.api}/accounts/prepared/999999/withdraw", {}, 404))["error"]
        assert "no prepared account" in (await api(http, "POST", f"{hmi.api}/accounts/prepared/x1/withdraw", {}, 404))["error"]
        assert [a["room"] for a in (await api(http, "GET", hmi.api + "/accounts/prepared"))["accounts"]] == ["B1-R201"]

        # the room is free again for another tenant's prepared account
        report = await api(http, "POST", hmi.api + "/accounts/import?dry_run=true", None, 200, data=AGAIN.encode(), headers=csv)
        assert report["errors"] == [], report
        await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=AGAIN.encode(), headers=csv)

        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "open", "targets": {"account": "prepared"}}, 201)
        assert job["total"] == 2
        done = await wait_job(http, hmi, job["id"], timeout=60)
        assert (done["state"], done["done"]) == ("done", 2), done
        opened = await api(http, "GET", f"{hmi.api}/rooms/B1-R202/account")
        assert opened["balance"] == "30.00" and opened["contact"]["name"] == "Wang Wei"

    async with hmi.rt.ctx[DATABASE].sessions() as s:
        states = {(r.room_id, r.customer): r.state for r in (await s.scalars(select(PreparedAccountRow))).all()}
        audit = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "account.prepared_withdrawn"))).all()
    assert states == {("B1-R201", "Li Lei"): "opened", ("B1-R202", "Han Meimei"): "withdrawn", ("B1-R202", "Wang Wei"): "opened"}
    assert [(a.actor, a.target_id, a.reason, a.outcome) for a in audit] == [("cashier1", str(ids["B1-R202"]), "did not move in", "ok")]


async def test_a_job_does_not_claim_an_opening_another_job_made(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    """A scheduled ``open`` job whose rooms' prepared accounts were withdrawn meanwhile, and then
    prepared again and opened by another job, reports its items failed: it opened nothing."""
    hmi, clock = ops
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    csv = {**cashier, "Content-Type": "text/csv"}
    async with aiohttp.ClientSession(headers=cashier) as http:
        await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                        "definition": {"price": "0.60"}}, 201, headers=admin)
        created = await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=TWO.encode(), headers=csv)
        han = next(a["id"] for a in created["accounts"] if a["room"] == "B1-R202")
        run_at = clock.now() + dt.timedelta(minutes=5)
        later = await api(http, "POST", hmi.api + "/jobs", {"kind": "open", "targets": {"rooms": ["B1-R202"]},
                                                            "run_at": run_at.isoformat()}, 201)
        await api(http, "POST", f"{hmi.api}/accounts/prepared/{han}/withdraw", {"reason": "did not move in"}, 200)
        await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=AGAIN.encode(), headers=csv)
        now = await api(http, "POST", hmi.api + "/jobs", {"kind": "open", "targets": {"rooms": ["B1-R202"]}}, 201)
        done = await wait_job(http, hmi, now["id"], timeout=60)
        assert (done["state"], done["done"]) == ("done", 1), done
        clock.advance(5 * 60)
        ended = await wait_job(http, hmi, later["id"], timeout=60)
        assert (ended["done"], ended["failed"]) == (0, 1), ended
        assert "has no prepared account" in ended["items"][0]["detail"], ended
    # what a resumed item of each job finds: the opening its own job made, and only that
    prepared = hmi.rt.ctx[JOBS].ctx.prepared
    assert prepared is not None
    mine = await prepared.opened_by_job("B1-R202", now["id"])
    assert mine is not None and mine.customer == "Wang Wei"
    assert await prepared.opened_by_job("B1-R202", later["id"]) is None
