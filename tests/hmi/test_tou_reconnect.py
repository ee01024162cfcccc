"""The time-of-use check on (re)connect (``scada.operations.meters``): when a meter's ``comm_ok``
turns from False to True its switch table is read and compared with its tariff's; a table that
differs sets ``<meter>.tou_mismatch`` and the alarm engine raises a ``tou_mismatch`` alarm."""

from __future__ import annotations

import aiohttp

from scada.alarms.clock import ManualClock
from scada.alarms.component import ALARMS
from scada.core.tags import TAGDB
from scada.simulator.component import SIMULATOR

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi
from .test_api_users import bearer
from .test_jobs_site import TOU_NEW, _open, api, ops  # noqa: F401 (ops is the fixture)

METER = "E-B1-101"


async def test_a_reconnecting_meter_with_a_table_other_than_its_tariffs_raises_tou_mismatch(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    tagdb = hmi.rt.ctx[TAGDB]
    alarms = hmi.rt.ctx[ALARMS]
    await until(lambda: tagdb.read(f"{METER}.comm_ok").value is True, timeout=20, what="polled")
    headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
    async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
        control = Control.of(plain, hmi.rt.ctx[SIMULATOR])
        await api(http, "POST", hmi.api + "/tariffs", {"id": "TOU-NEW", "name": "TOU 2027", "commodity": "electricity",
                                                        "definition": TOU_NEW}, 201)
        # the meter keeps the simulator's table, not TOU-NEW's: nothing has looked yet
        await _open(http, hmi, ["B1-R101"], "TOU-NEW")
        assert tagdb.read(f"{METER}.tou_mismatch").value is not True
        assert "tou_mismatch" not in {a.alarm_class for a in alarms.active() if a.object_id == METER}
        # it stops answering, then answers again: the reconnect reads its table
        await control.fault(METER, "timeout")
        await until(lambda: tagdb.read(f"{METER}.comm_ok").value is False, timeout=20, what="offline")
        await control.fault(METER, "none")
        await until(lambda: tagdb.read(f"{METER}.comm_ok").value is True, timeout=20, what="back online")
        await until(lambda: tagdb.read(f"{METER}.tou_mismatch").value is True, timeout=20, what="tou_mismatch set on reconnect")
        await until(lambda: METER in {a.object_id for a in alarms.active() if a.alarm_class == "tou_mismatch"},
                    timeout=20, what="tou_mismatch alarm")
