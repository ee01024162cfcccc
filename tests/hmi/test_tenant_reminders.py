"""Repeated tenant reminders (``TenantMessenger.remind``): an account at a balance level is
reminded every ``every_h`` hours, at most ``max_times`` times, and never in the quiet hours (the
notifier holds them); the daily deduction summary (``summaries``) goes once a day per account with
the day's deductions. Driven by the jobs' clock, which the messenger reads, on the demo site."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.operations.messages import TenantMessenger
from scada.simulator.component import SIMULATOR

from ..scada.alarms.servers import sms_gateway
from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi, demo_site_config
from .messages_site import SMS_KEY_ENV, quiet_hours, sms_settings
from .test_api_users import bearer
from .test_jobs_site import api, site

ROOM = "B1-R301"
PHONE = "+8613800000301"


@dataclass
class Arrears:
    hmi: Hmi
    http: aiohttp.ClientSession
    clock: ManualClock
    gateway: Any
    views: Any
    messenger: TenantMessenger

    async def messages(self, route: str) -> list[dict[str, Any]]:
        log = (await api(self.http, "GET", self.hmi.api + "/messages"))["messages"]
        return [m for m in log if m["route"] == route]


@asynccontextmanager
async def arrears_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str,
                       start: dt.datetime | None = None) -> AsyncIterator[Arrears]:
    """The demo site with room ROOM's account opened at 1.00 and run into arrears; the quiet hours
    cover the (real) time now, as the notifier runs on the real clock."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv(SMS_KEY_ENV, "gateway-key-1")
    async with sms_gateway("gateway-key-1", per_second=100) as gateway:
        config = demo_site_config(
            tmp_path, *sms_settings(gateway), quiet_hours(now=True), "operations.messages.check_every_s=86400",
            'approvals.opening_balance_above="100000"', *extra,
        )
        clock = ManualClock(start or dt.datetime.now(dt.UTC))
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
                assert jobs.messenger is not None
                await control.load(meter, kw=10)
                await until(lambda: views[ROOM].balance_minor < 0 and views[ROOM].alarm_level > 0, timeout=30, what="in arrears")
                await control.load(meter, kw=0)
                yield Arrears(hmi, http, clock, gateway, views, jobs.messenger)


async def test_reminders_every_hour_at_most_twice_and_held_in_the_quiet_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with arrears_site(tmp_path, monkeypatch, "operations.messages.reminders={ levels = [1, 2, 3], every_h = 1, max_times = 2 }") as a:
        clock, messenger, views = a.clock, a.messenger, a.views
        level = views[ROOM].alarm_level
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
        sent = await a.messages("reminder")
        assert len(sent) == 2 and {m["room"] for m in sent} == {ROOM}, sent
        # never at night: both held for the quiet hours, none reached the gateway
        assert {m["status"] for m in sent} == {"held"} and all("quiet hours" in str(m["reason"]) for m in sent), sent
        assert not [m for m in a.gateway.received if m["to"] == PHONE], a.gateway.received


async def test_the_daily_summary_goes_once_a_day_per_account_with_the_days_deductions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    # the jobs' clock starts at 10:00 of today (site time), whenever the test runs
    ten = dt.datetime.now(tz).replace(hour=10, minute=0, second=0, microsecond=0)
    async with arrears_site(tmp_path, monkeypatch, "operations.messages.daily_summary=true", 'operations.messages.summary_at="23:00"',
                            "operations.messages.reminders={ enabled = false }", start=ten.astimezone(dt.UTC)) as a:
        clock, messenger, views = a.clock, a.messenger, a.views
        local = clock.now().astimezone(tz)
        assert await messenger.summaries() == 0  # before summary_at
        clock.advance(local.replace(hour=23, minute=0, second=0, microsecond=0) - local)
        # the opening 1.00 and today's deductions: what it used is what the balance fell by
        used = 100 - views[ROOM].balance_minor
        assert used > 100
        assert await messenger.summaries() == 1
        clock.advance(dt.timedelta(minutes=50))
        assert await messenger.summaries() == 0  # once a day
        day = local.date().isoformat()
        sent = await a.messages("summary")
        assert len(sent) == 1 and sent[0]["room"] == ROOM, sent
        body = str(sent[0]["body"])
        balance = f"{views[ROOM].balance_minor / 100:.2f}"
        assert f"room {ROOM[3:]} used {used / 100:.2f} CNY on {day}. Balance: {balance} CNY." in body, body
        # the next day: a new summary, with nothing deducted since its midnight
        clock.advance(dt.timedelta(hours=23, minutes=30))
        assert await messenger.summaries() == 1
        sent = await a.messages("summary")
        nxt = (local.date() + dt.timedelta(days=1)).isoformat()
        assert len(sent) == 2 and any(f"used 0.00 CNY on {nxt}" in str(m["body"]) for m in sent), sent
