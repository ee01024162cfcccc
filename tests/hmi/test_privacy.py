"""Tenants' contact details (name, phone, e-mail) reach only the roles that work with tenants
(cashier, supervisor, admin): not viewers, operators, engineers or maintenance, in the API,
the pages or the WebSocket feed."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from websockets.asyncio.client import connect

from hmi.api.alarms import mask_recipient

from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, browser_like, login, open_accounts

NAME, PHONE, EMAIL = "Tenant B1-R101", "+8613800138000", "tenant101@example.com"
SEES = ("admin", "super1", "cashier1")
DOES_NOT = ("viewer1", "operator1", "maint1", "engineer1")


async def bearer(http: aiohttp.ClientSession, hmi: Hmi, user: str) -> dict[str, str]:
    password = ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
    async with http.post(hmi.api + "/auth/token", json={"user": user, "password": password}) as r:
        assert r.status == 200, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def test_contact_details_only_for_those_who_need_them(hmi: Hmi) -> None:
    await open_accounts(hmi, {"B1-R101": "20.00"})
    async with aiohttp.ClientSession() as http:
        admin = await bearer(http, hmi, "admin")
        async with http.post(hmi.api + "/rooms/B1-R101/account/settings", headers=admin,
                             json={"contact": {"name": NAME, "phone": PHONE, "email": EMAIL}, "reason": "new number"}) as r:
            assert r.status == 200, await r.text()
        for user in SEES + DOES_NOT:
            headers = await bearer(http, hmi, user)
            for path in ("/rooms/B1-R101/account", "/rooms/B1-R101/account/ledger"):
                async with http.get(hmi.api + path, headers=headers) as r:
                    assert r.status == 200, (user, path, await r.text())
                    body = await r.json()
                account = body.get("account", body)
                if user in SEES:
                    assert account["contact"] == {"name": NAME, "phone": PHONE, "email": EMAIL, "language": "en"}, user
                else:
                    assert account["contact"] is None, (user, path)
                    assert NAME not in json.dumps(body) and PHONE not in json.dumps(body), (user, path)

    # the pages: the room page shows the account to everyone, the contact to nobody without the right
    for user in DOES_NOT[:2]:
        async with browser_like() as web:
            await login(web, hmi.url, user)
            for path in ("/rooms/B1-R101", "/"):
                async with web.get(hmi.url + path) as r:
                    html = await r.text()
                assert r.status == 200 and NAME not in html and PHONE not in html and EMAIL not in html, (user, path)
    async with browser_like() as web:
        await login(web, hmi.url, "cashier1")
        async with web.get(hmi.url + "/cashier?room=B1-R101") as r:
            assert PHONE in await r.text()  # the cashier works with the tenant

    # the WebSocket feed (overview and the room's own view) carries no contact details
    async with aiohttp.ClientSession() as http:
        viewer = await bearer(http, hmi, "viewer1")
    async with connect(hmi.url.replace("http://", "ws://") + "/ws", additional_headers=viewer) as ws:
        seen = []
        for sub in ({"view": "overview", "page_size": 100}, {"view": "room", "room": "B1-R101"}):
            await ws.send(json.dumps({"type": "subscribe", **sub}))
            seen.append(await asyncio.wait_for(ws.recv(), 5))
        try:
            while True:  # and what follows for a moment
                seen.append(await asyncio.wait_for(ws.recv(), 0.5))
        except TimeoutError:
            pass
    text = " ".join(str(m) for m in seen)
    assert '"snapshot"' in text and "B1-R101" in text
    assert NAME not in text and PHONE not in text and EMAIL not in text


async def test_the_delivery_log_shows_tenants_addresses_only_to_those_who_may_see_them(hmi: Hmi) -> None:
    import datetime as dt

    from scada.alarms.notify.models import DeliveryRow
    from scada.db.component import DATABASE

    now = dt.datetime.now(dt.UTC)
    async with hmi.rt.ctx[DATABASE].transaction() as s:
        s.add(DeliveryRow(created_at=now, alarm_id=None, alarm_key="balance_low:room:B1-R101", event="raised", route="tenants",
                          channel="sms", recipient=PHONE, language="en", subject="Low balance", body=f"Dear {NAME}, top up",
                          payload="{}", dedup_key="k", status="sent", reason="", attempts=1, next_attempt_at=None, sent_at=now))
    async with aiohttp.ClientSession() as http:
        for user, recipient, body in (("admin", PHONE, f"Dear {NAME}, top up"), ("operator1", "+86…8000", ""), ("maint1", "+86…8000", "")):
            async with http.get(hmi.api + "/alarms/deliveries", headers=await bearer(http, hmi, user)) as r:
                assert r.status == 200, await r.text()
                [row] = (await r.json())["deliveries"]
            assert (row["recipient"], row["body"]) == (recipient, body), user


def test_the_delivery_log_masks_recipients() -> None:
    assert mask_recipient("+8613800138000") == "+86…8000"
    assert mask_recipient("tenant101@example.com") == "t…@example.com"
    assert mask_recipient("room:B1-R101") == "room:B1-R101"
    assert mask_recipient("12345") == "…"
