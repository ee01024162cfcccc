"""The daily time-of-use check (``scada.operations.meters``, every ``tou_check_every_s`` of the
operations' clock): once the jobs' clock passes the next check, a meter whose table was changed
behind the server's back (through the simulator's control API) is flagged ``tou_mismatch`` and
alarmed, and a meter that still holds its tariff's table is checked and not flagged."""

from __future__ import annotations

import datetime as dt

import aiohttp

from scada.alarms.clock import ManualClock
from scada.alarms.component import ALARMS
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.prepaid.demo import DEMO_TOU
from scada.simulator.component import SIMULATOR

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi
from .test_api_users import bearer
from .test_jobs_site import _open, api, ops  # noqa: F401 (ops is the fixture)

KEPT, CHANGED = "E-B1-101", "E-B1-102"


async def test_the_daily_check_flags_a_table_changed_on_site_and_not_an_unchanged_one(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, clock = ops
    tagdb = hmi.rt.ctx[TAGDB]
    alarms = hmi.rt.ctx[ALARMS]
    meters = hmi.rt.ctx[JOBS].ctx.meters
    assert meters is not None
    candidates = set(meters.candidates())
    assert {KEPT, CHANGED} <= candidates
    # the checks of the start (and of the first connects) are over
    await until(lambda: all(tagdb.read(f"{m}.comm_ok").value is True for m in (KEPT, CHANGED)), timeout=20, what="polled")
    await until(lambda: candidates <= set(meters.checks) and meters.pending() == 0, timeout=30, what="first checks")
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
        control = Control.of(plain, hmi.rt.ctx[SIMULATOR])
        # the tariff of the simulator's own table: both meters hold it
        await api(http, "POST", hmi.api + "/tariffs", {"id": "TOU", "name": "TOU", "commodity": "electricity", "definition": DEMO_TOU}, 201)
        await _open(http, hmi, ["B1-R101", "B1-R102"], "TOU")
        # someone reprograms one meter on site: a flat day
        await control.call("PUT", f"/meters/{CHANGED}/tou", {"table": {d: [["00:00", "flat"]] for d in ("workday", "weekend", "holiday")}})
        assert (await control.meter(CHANGED))["tou_table"]["workday"] == [["00:00", "flat"]]
        checked = meters.checked
        clock.advance(dt.timedelta(hours=23, minutes=59))  # not yet the next daily check
        await until(lambda: meters.pending() == 0, timeout=5, what="nothing queued")
        assert meters.checked == checked
        assert tagdb.read(f"{CHANGED}.tou_mismatch").value is not True
        clock.advance(dt.timedelta(minutes=1))  # a day after the last: every TOU meter is read again
        await until(lambda: tagdb.read(f"{CHANGED}.tou_mismatch").value is True, timeout=30, what="the changed table flagged")
        await until(lambda: CHANGED in {a.object_id for a in alarms.active() if a.alarm_class == "tou_mismatch"}, timeout=20,
                    what="tou_mismatch alarm")
        check = meters.checks[CHANGED]
        assert check.mismatch is True and "differs from the tariff on workday" in check.detail, check
        await until(lambda: meters.checks[KEPT].detail == "matches the tariff", timeout=30, what="the kept table checked")
        assert meters.checks[KEPT].mismatch is False and tagdb.read(f"{KEPT}.tou_mismatch").value is False
        assert KEPT not in {a.object_id for a in alarms.active() if a.alarm_class == "tou_mismatch"}
        # the HMI shows the table as the daily check read it
        settings = await api(http, "GET", f"{hmi.api}/meters/{CHANGED}/settings")
        assert settings["tou"]["mismatch"] is True and settings["tou_table"]["workday"] == [["00:00", "flat"]], settings
