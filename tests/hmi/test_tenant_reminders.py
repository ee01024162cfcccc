"""Repeated tenant reminders (``TenantMessenger.remind``): an account at a balance level is
reminded every ``every_h`` hours, at most ``max_times`` times, and never in the quiet hours (the
notifier holds them). Driven by the jobs' clock, which the messenger reads, on the demo site."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.simulator.component import SIMULATOR

from ..scada.alarms.servers import sms_gateway
from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, demo_site_config
from .test_api_users import bearer
from .test_jobs_site import api, site

ROOM = "B1-R301"
PHONE = "+8613800000301"


async def test_reminders_every_hour_at_most_twice_and_held_in_the_quiet_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("T_SMS_KEY", "gateway-key-1")
    # the quiet hours cover the (real) time now: the notifier runs on the real clock
    local = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet = f'{{ start = "{local.hour:02d}:00", end = "{(local.hour + 2) % 24:02d}:00" }}'
    async with sms_gateway("gateway-key-1", per_second=100) as gateway:
        channel = (f'[{{ name = "sms", kind = "sms", url = "{gateway.url}", headers = {{ Authorization = "Bearer {{{{ key }}}}" }}, '
                   f'body = \'{{"to": {{{{ to|tojson }}}}, "text": {{{{ text|tojson }}}}}}\', key = {{ env = "T_SMS_KEY" }}, timeout_s = 5 }}]')
        config = demo_site_config(
            tmp_path, f"alarms.notifications.channels={channel}", f"alarms.notifications.quiet_hours={quiet}",
            'operations.messages.channels=["sms"]', "operations.messages.check_every_s=86400",
            "operations.messages.reminders={ levels = [1, 2, 3], every_h = 1, max_times = 2 }",
            'approvals.opening_balance_above="100000"',
        )
        clock = ManualClock(dt.datetime.now(dt.UTC))
        async with site(config, clock) as hmi:
            tagdb = hmi.rt.ctx[TAGDB]
            meter = f"E-B1-{ROOM[-3:]}"
            await until(lambda: tagdb.read(f"{meter}.comm_ok").value is True, timeout=20, what="polled")
            headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
            async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
                control = Control.of(plain, hmi.rt.ctx[SIMULATOR])
                await api(http, "POST", hmi.api + "/tariffs", {"id": "DEAR", "name": "DEAR", "commodity": "electricity",
                                                                "definition": {"price": "200"}}, 201)
                await api(http, "POST", f"{hmi.api}/rooms/{ROOM}/account/open", {
                    "tariffs": {"electricity": "DEAR"}, "opening_balance": "1.00", "contact": {"name": "Tenant", "phone": PHONE},
                }, 201)
                jobs = hmi.rt.ctx[JOBS].ctx
                views = jobs.prepaid.views  # type: ignore[union-attr]
                messenger = jobs.messenger
                assert messenger is not None
                await control.load(meter, kw=10)
                await until(lambda: views[ROOM].balance_minor < 0 and views[ROOM].alarm_level > 0, timeout=30, what="in arrears")
                await control.load(meter, kw=0)
                level = views[ROOM].alarm_level

                async def reminders() -> list[dict[str, object]]:
                    log = (await api(http, "GET", hmi.api + "/messages"))["messages"]
                    return [m for m in log if m["route"] == "reminder"]

                # the alarm's own notification is the first word: the first round only starts the count
                assert await messenger.remind() == 0
                clock.advance(dt.timedelta(minutes=59))
                assert await messenger.remind() == 0  # not every_h yet
                clock.advance(dt.timedelta(minutes=1))
                assert await messenger.remind() == 1
                clock.advance(dt.timedelta(minutes=30))
                assert await messenger.remind() == 0
                clock.advance(dt.timedelta(minutes=30))
                assert await messenger.remind() == 1
                for _ in range(3):  # max_times reached: no more, however long it stays there
                    clock.advance(dt.timedelta(hours=1))
                    assert await messenger.remind() == 0
                assert views[ROOM].alarm_level == level
                sent = await reminders()
                assert len(sent) == 2 and {m["room"] for m in sent} == {ROOM}, sent
                # never at night: both held for the quiet hours, none reached the gateway
                assert {m["status"] for m in sent} == {"held"} and all("quiet hours" in str(m["reason"]) for m in sent), sent
                assert not [m for m in gateway.received if m["to"] == PHONE], gateway.received
