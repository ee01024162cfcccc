"""The simulator's period registers follow the table a ``tou_download`` wrote: after next year's
table (``TOU_NEW``) is downloaded, energy used 07:00-09:00 and 18:00-20:00 of a workday goes
into flat and sharp, where the simulator's default table would have split it valley/peak and
peak/sharp; a meter whose clock runs an hour fast switches periods by its own clock. The
meter's table and clock are read from the control API, the registers over Modbus (a
``read_now`` job)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.simulator.component import SIMULATOR

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import TOU_NEW, _open, api, ops  # noqa: F401 (ops is the fixture)

METER = "E-B1-101"
PERIODS = ("sharp", "peak", "flat", "valley")


async def _registers(http: aiohttp.ClientSession, hmi: Hmi) -> dict[str, float]:
    """The meter's period registers, read over Modbus by a read_now job."""
    job = await api(http, "POST", hmi.api + "/jobs", {"kind": "read_now", "targets": {"meters": [METER]}}, 201)
    done = await wait_job(http, hmi, job["id"], timeout=20)
    assert done["state"] == "done", done
    values: dict[str, Any] = done["items"][0]["result"]
    return {p: float(values[f"energy_{p}"]) for p in (*PERIODS, "total")}


def _next_workday(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.isoweekday() >= 6:
        day += dt.timedelta(days=1)
    return day


async def _at(control: Control, local: dt.datetime) -> None:
    """Move the simulator's (frozen) clock on to the meter's local time ``local``, the meter idle."""
    await control.load(METER, kw=0)
    now = dt.datetime.fromisoformat((await control.meter(METER))["clock"]["time"])
    assert local > now, (local, now)
    await control.advance((local - now).total_seconds())
    assert dt.datetime.fromisoformat((await control.meter(METER))["clock"]["time"]) == local


def _used(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """kWh per period between two reads, to the whole kWh (the registers count hundredths, and a
    hundredth may still sit in the meter's fraction)."""
    return {p: round(after[p] - before[p]) for p in PERIODS}


async def _use(control: Control, hours: int) -> None:
    await control.load(METER, kw=1)
    await control.advance(hours * 3600)
    await control.load(METER, kw=0)


async def test_energy_goes_into_the_period_the_downloaded_table_says(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    tagdb = hmi.rt.ctx[TAGDB]
    await until(lambda: tagdb.read(f"{METER}.comm_ok").value is True, timeout=20, what="polled")
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
        control = Control.of(plain, hmi.rt.ctx[SIMULATOR])
        before = (await control.meter(METER))["tou_table"]
        assert before["workday"][:3] == [["00:00", "valley"], ["08:00", "peak"], ["11:00", "flat"]]  # the default
        await api(http, "POST", hmi.api + "/tariffs", {"id": "TOU-NEW", "name": "TOU 2027", "commodity": "electricity",
                                                        "definition": TOU_NEW}, 201)
        await _open(http, hmi, ["B1-R101"], "TOU-NEW")
        job = await api(http, "POST", hmi.api + "/jobs", {"kind": "tou_download", "targets": {"meters": [METER]},
                                                          "params": {"tariff": "TOU-NEW"}}, 201)
        assert (await wait_job(http, hmi, job["id"], timeout=30))["state"] == "done"
        meter = await control.meter(METER)
        workday = TOU_NEW["tou"]["seasons"][0]["workday"]  # type: ignore[index]
        assert meter["tou_table"]["workday"] == workday and meter["clock"]["drift_s"] == 0, meter
        # time stands still but for the test's steps: to 07:00 of the next workday (meter time)
        await control.call("POST", "/clock", {"speed": 0})
        day = _next_workday(dt.datetime.fromisoformat(meter["clock"]["time"]).date())
        await _at(control, dt.datetime.combine(day, dt.time(7, 0)))
        r0 = await _registers(http, hmi)
        await _use(control, 2)  # 07:00-09:00: flat by TOU_NEW (the default: valley, then peak)
        r1 = await _registers(http, hmi)
        assert r1["total"] - r0["total"] == pytest.approx(2.0, abs=0.011)
        assert _used(r0, r1) == {"sharp": 0, "peak": 0, "flat": 2, "valley": 0}, (r0, r1)
        await _at(control, dt.datetime.combine(day, dt.time(18, 0)))
        r2 = await _registers(http, hmi)
        await _use(control, 2)  # 18:00-20:00: sharp by TOU_NEW (the default: peak, then sharp)
        r3 = await _registers(http, hmi)
        assert _used(r2, r3) == {"sharp": 2, "peak": 0, "flat": 0, "valley": 0}, (r2, r3)
        # a meter's clock an hour fast: it switches periods by its own clock, as a real meter does
        await control.call("PUT", f"/meters/{METER}/clock", {"drift_s": 3600})
        day = _next_workday(day)
        await _at(control, dt.datetime.combine(day, dt.time(7, 0)))  # 06:00 true time, 07:00 on the meter
        r4 = await _registers(http, hmi)
        await _use(control, 1)  # flat by the meter's clock (by true time: valley)
        r5 = await _registers(http, hmi)
        assert _used(r4, r5) == {"sharp": 0, "peak": 0, "flat": 1, "valley": 0}, (r4, r5)
        # the registers read over Modbus are the simulator's own
        points = (await control.meter(METER))["points"]
        assert {p: points[f"energy_{p}"] for p in PERIODS} == {p: r5[p] for p in PERIODS}
