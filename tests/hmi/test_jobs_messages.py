"""Messages to tenants through the notifier's delivery path and the SMS gateway test double: a
reminder job to the rooms in arrears sends one message per room; a burst the gateway rate-limits
(HTTP 429) is delivered late, not lost; past the per-recipient limit a message is held, then
sent; a recharge sends a payment message; a gateway that refuses the key fails a message, with
why; the delivery log shows it all, in the API and on the HMI's Messages page (only for the roles
that may read it; in 简体中文 too)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB
from scada.operations.component import JOBS
from scada.simulator.component import SIMULATOR
from scada.users.audit import Actor
from scada.users.component import USERS

from ..scada.alarms.servers import sms_gateway
from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, browser_like, demo_site_config, login
from .messages_site import SMS_KEY_ENV, quiet_hours, sms_settings
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import api, site

ARREARS = [f"B1-R30{i}" for i in range(1, 7)]
OTHERS = ["B1-R307", "B1-R308"]


def phone(room: str) -> str:
    return "+86138000" + room[-3:]


async def test_reminders_to_arrears_rooms_rate_limits_and_payment_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv(SMS_KEY_ENV, "gateway-key-1")
    async with sms_gateway("gateway-key-1", per_second=2) as gateway:
        config = demo_site_config(
            tmp_path, *sms_settings(gateway), quiet_hours(now=False), "alarms.notifications.rate_limit={ messages = 2, window_s = 3 }",
            'approvals.opening_balance_above="100000"',
        )
        async with site(config, ManualClock(dt.datetime.now(dt.UTC))) as hmi:
            tagdb = hmi.rt.ctx[TAGDB]
            await until(lambda: all(tagdb.read(f"E-B1-{r[-3:]}.comm_ok").value is True for r in ARREARS + OTHERS), timeout=20, what="polled")
            headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
            async with aiohttp.ClientSession(headers=headers) as http, aiohttp.ClientSession() as plain:
                control = Control.of(plain, hmi.rt.ctx[SIMULATOR])
                for tariff, price in (("DEAR", "200"), ("FLAT", "0.60"), ("W", "3")):
                    await api(http, "POST", hmi.api + "/tariffs", {"id": tariff, "name": tariff, "commodity": "water" if tariff == "W" else
                                                                    "electricity", "definition": {"price": price}}, 201)
                for room in ARREARS + OTHERS:
                    water = {"water": "W"} if room[-1] in "369" else {}
                    await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open", {
                        "tariffs": {"electricity": "DEAR" if room in ARREARS else "FLAT", **water},
                        "opening_balance": "1.00" if room in ARREARS else "100", "contact": {"name": f"Tenant {room}", "phone": phone(room)},
                    }, 201)
                for room in ARREARS:  # 10 kW at 200/kWh: 2.00 every 0.01 kWh, past the 1.00 within seconds
                    await control.load(f"E-B1-{room[-3:]}", kw=10)
                engine_views = hmi.rt.ctx[JOBS].ctx.prepaid.views  # type: ignore[union-attr]
                await until(lambda: all(engine_views[r].balance_minor < 0 for r in ARREARS), timeout=30, what="rooms in arrears")
                for room in ARREARS:
                    await control.load(f"E-B1-{room[-3:]}", kw=0)
                preview = await api(http, "POST", hmi.api + "/jobs/preview", {"kind": "message", "targets": {"state": "arrears"}})
                assert preview["count"] == 6 and set(preview["targets"]) == set(ARREARS), preview
                job = await api(http, "POST", hmi.api + "/jobs", {"kind": "message", "targets": {"state": "arrears"},
                                                                  "params": {"template": "reminder"}}, 201)
                reminder_job = job["id"]
                done = await wait_job(http, hmi, job["id"], timeout=30)
                assert (done["state"], done["done"]) == ("done", 6), done
                # the gateway takes 2 a second: the burst is refused in part (429), and delivered later
                await until(lambda: len(gateway.received) >= 6, timeout=20, what="every reminder delivered")
                assert sorted(m["to"] for m in gateway.received) == sorted(phone(r) for r in ARREARS)
                assert gateway.refused > 0
                assert all("recharge" in m["text"] for m in gateway.received)
                for _ in range(100):  # the log records the gateway's answer right after it
                    log = (await api(http, "GET", hmi.api + "/messages"))["messages"]
                    reminders = [m for m in log if m["route"] == f"job:{job['id']}"]
                    if {m["status"] for m in reminders} == {"sent"}:
                        break
                    await asyncio.sleep(0.05)
                assert len(reminders) == 6 and {m["status"] for m in reminders} == {"sent"}, reminders
                assert {m["room"] for m in reminders} == set(ARREARS)
                # past the per-recipient limit (2 in 3 s) a message is held, not dropped
                gateway.received.clear()
                for n in range(3):
                    job = await api(http, "POST", hmi.api + "/jobs", {"kind": "message", "targets": {"rooms": ["B1-R307"]},
                                                                      "params": {"template": "notice", "text": f"water off at 10:00 ({n})"}}, 201)
                    await wait_job(http, hmi, job["id"], timeout=10)
                log = (await api(http, "GET", hmi.api + "/messages"))["messages"]
                held = next(m for m in log if m["body"].find("(2)") >= 0)
                assert held["status"] == "held" and "rate limit" in held["reason"], held
                await until(lambda: len([m for m in gateway.received if m["to"] == phone("B1-R307")]) == 3, timeout=10, what="held one sent")
                # a recharge: a payment message
                await api(http, "POST", f"{hmi.api}/rooms/B1-R308/account/recharge", {"amount": "20.00", "reference": "pay-1"})
                await until(lambda: any(m["to"] == phone("B1-R308") and "20.00" in m["text"] for m in gateway.received), timeout=10,
                            what="payment message")
                # a gateway that refuses the key: the message fails at once (a 4xx), with why
                gateway.key = "rotated-key"
                job = await api(http, "POST", hmi.api + "/jobs", {"kind": "message", "targets": {"rooms": ["B1-R301"]},
                                                                  "params": {"template": "notice", "text": "meters checked on Monday"}}, 201)
                await wait_job(http, hmi, job["id"], timeout=10)
                for _ in range(200):
                    failed = (await api(http, "GET", hmi.api + "/messages?status=failed"))["messages"]
                    if failed:
                        break
                    await asyncio.sleep(0.05)
                assert len(failed) == 1 and "HTTP 403" in failed[0]["reason"] and failed[0]["room"] == "B1-R301", failed
            await _log_page(hmi, reminder_job, held, failed[0])


async def _log_page(hmi: Hmi, job_id: int, held: dict[str, Any], failed: dict[str, Any]) -> None:
    """The HMI's page of the same delivery log: every message with its state and why, linked
    from the jobs page; only for the roles the API's log is for; in 简体中文 too."""
    await hmi.rt.ctx[USERS].add("viewer1", "viewer", PASSWORDS["viewer1"], Actor("test", "cli"))
    async with browser_like() as viewer:
        await login(viewer, hmi.url, "viewer1")
        async with viewer.get(hmi.url + "/messages") as r:
            assert r.status == 403, r.status
        async with viewer.get(hmi.url + "/jobs") as r:
            html = await r.text()
            assert r.status == 200 and 'href="/messages"' not in html  # neither in the navigation nor linked
    async with browser_like() as admin:
        csrf = await login(admin, hmi.url, "admin")
        async with admin.get(hmi.url + "/jobs") as r:
            assert 'href="/messages"' in await r.text()
        async with admin.get(hmi.url + "/messages") as r:
            assert r.status == 200
            html = await r.text()
        rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-message="(\d+)".*?</tr>', html, re.S)}
        reminders = [row for row in rows.values() if f'href="/jobs/{job_id}"' in row]
        assert len(reminders) == 6, html  # the reminder job's six, each sent, to its room
        assert {re.search(r'data-room="([^"]+)"', row).group(1) for row in reminders} == set(ARREARS)  # type: ignore[union-attr]
        assert all('data-status="sent"' in row and ">sent" in row for row in reminders)
        # the message held by the rate limit went out later; the refused one says why
        assert 'data-status="sent"' in rows[str(held["id"])] and phone("B1-R307") in rows[str(held["id"])]
        assert "sent late; it was: rate limit" in rows[str(held["id"])], rows[str(held["id"])]
        row = rows[str(failed["id"])]
        assert 'data-status="failed"' in row and ">failed" in row and "HTTP 403" in row and "bad key" in row, row
        assert "payment received" in html and phone("B1-R308") in html
        # a filter by state
        async with admin.get(hmi.url + "/messages?status=failed") as r:
            only = await r.text()
            assert re.findall(r'<tr data-message="(\d+)"', only) == [str(failed["id"])]
        async with admin.get(hmi.url + "/messages?status=cancelled") as r:
            assert "No messages." in await r.text()
        async with admin.get(hmi.url + "/messages?status=sent") as r:
            sent = await r.text()
            assert sent.count("<tr data-message=") >= 9 and 'data-status="held"' not in sent
        async with admin.post(hmi.url + "/language", data={"lang": "zh-CN", "csrf": csrf, "next": "/messages"}) as r:
            assert r.status == 200
            zh = await r.text()
        assert "<h1>租户消息</h1>" in zh and "已发送" in zh and "催缴提醒" in zh
