"""Tenant messages in the tenant's language: a ``message`` job's reminder and the confirmation of
a recharge reach a tenant whose language is zh-CN in Chinese and one whose language is en in
English, through the SMS gateway test double, as the delivery log records them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from scada.alarms.clock import ManualClock
from scada.core.tags import TAGDB

from ..scada.alarms.servers import sms_gateway
from ..simulation import until
from .conftest import ADMIN_PASSWORD, demo_site_config
from .messages_site import SMS_KEY_ENV, quiet_hours, sms_settings
from .test_api_users import bearer
from .test_jobs_api import wait_job
from .test_jobs_site import api, site

TENANTS = {  # room: (name, phone, language)
    "B1-R401": ("李雷", "+8613800000401", "zh-CN"),
    "B1-R402": ("Han Meimei", "+8613800000402", "en"),
}
ZH, EN = "+8613800000401", "+8613800000402"
ZH_ONLY = ("尊敬的", "请及时充值", "充值成功", "已充值", "当前余额")
EN_ONLY = ("Dear", "Please recharge soon", "payment received", "we received", "New balance")


async def test_reminders_and_recharge_messages_in_each_tenants_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv(SMS_KEY_ENV, "gateway-key-1")
    async with sms_gateway("gateway-key-1") as gateway:
        config = demo_site_config(tmp_path, *sms_settings(gateway), quiet_hours(now=False), 'approvals.opening_balance_above="100000"',
                                  "operations.messages.reminders={ enabled = false }")
        async with site(config, ManualClock(dt.datetime.now(dt.UTC))) as hmi:
            tagdb = hmi.rt.ctx[TAGDB]
            await until(lambda: all(tagdb.read(f"E-B1-{r[-3:]}.comm_ok").value is True for r in TENANTS), timeout=20, what="polled")
            headers = await bearer(hmi, "admin", ADMIN_PASSWORD)
            async with aiohttp.ClientSession(headers=headers) as http:
                await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                                "definition": {"price": "0.60"}}, 201)
                for room, (name, phone, language) in TENANTS.items():
                    await api(http, "POST", f"{hmi.api}/rooms/{room}/account/open", {
                        "tariffs": {"electricity": "FLAT"}, "opening_balance": "30",
                        "contact": {"name": name, "phone": phone, "language": language}}, 201)

                def texts(to: str) -> list[str]:
                    return [m["text"] for m in gateway.received if m["to"] == to]

                # a manual reminder to both rooms
                job = await api(http, "POST", hmi.api + "/jobs", {"kind": "message", "targets": {"rooms": list(TENANTS)},
                                                                  "params": {"template": "reminder"}}, 201)
                done = await wait_job(http, hmi, job["id"], timeout=30)
                assert (done["state"], done["done"]) == ("done", 2), done
                await until(lambda: len(texts(ZH)) == 1 and len(texts(EN)) == 1, timeout=20, what="both reminders delivered")
                zh, en = texts(ZH)[0], texts(EN)[0]
                assert "尊敬的李雷：" in zh and "请及时充值。" in zh and "当前余额：30.00 CNY。" in zh, zh
                assert "Dear Han Meimei," in en and "Please recharge soon." in en and "Current balance: 30.00 CNY." in en, en
                assert not any(w in zh for w in EN_ONLY) and not any(w in en for w in ZH_ONLY), (zh, en)
                # a recharge of each: the confirmation in the tenant's language
                for room in TENANTS:
                    await api(http, "POST", f"{hmi.api}/rooms/{room}/account/recharge", {"amount": "20.00", "reference": f"pay-{room}"})
                await until(lambda: len(texts(ZH)) == 2 and len(texts(EN)) == 2, timeout=20, what="both payment messages delivered")
                zh, en = texts(ZH)[1], texts(EN)[1]
                assert "已充值 20.00 CNY（单号 pay-B1-R401），当前余额 50.00 CNY。" in zh, zh
                assert "we received 20.00 CNY for room" in en and "(reference pay-B1-R402). New balance: 50.00 CNY." in en, en
                assert not any(w in zh for w in EN_ONLY) and not any(w in en for w in ZH_ONLY), (zh, en)
                # the delivery log keeps each message with its language
                log = (await api(http, "GET", hmi.api + "/messages"))["messages"]
                languages = {(m["route"].split(":")[0], m["room"]): m.get("language") for m in log}
                assert languages == {("job", "B1-R401"): "zh-CN", ("job", "B1-R402"): "en",
                                     ("payment", "B1-R401"): "zh-CN", ("payment", "B1-R402"): "en"}, log
