"""The alarm console and history pages over HTTP, and the feed's alarms view."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from websockets.asyncio.client import connect

from scada.alarms.component import ALARMS
from scada.core.tags import TAGDB
from scada.site.component import ASSETS
from scada.users.audit import Actor
from tags.names import room_tag

from .conftest import Hmi, login
from .producers import publish_room_tags
from .test_feed import recv, subscribe, token_headers, ws_url


async def _raise_low_balance(hmi: Hmi, room: str, level: int = 1) -> None:
    ctx = hmi.rt.ctx
    publish_room_tags(ctx[TAGDB], ctx[ASSETS].snapshot)
    ctx[TAGDB].write(room_tag(room, "alarm_level"), level)
    for _ in range(200):
        if any(a.room_id == room for a in ctx[ALARMS].active()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the alarm engine raised nothing")


async def test_console_offers_only_what_the_role_may_do(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await _raise_low_balance(hmi, "B1-R105")
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/alarms") as r:
        assert r.status == 200
        html = await r.text()
    assert "B1-R105" in html and "Balance low" in html
    assert 'data-action="ack"' not in html and 'data-action="shelve"' not in html
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as op:
        await login(op, hmi.url, "operator1")
        async with op.get(hmi.url + "/alarms") as r:
            html = await r.text()
        assert 'data-action="ack"' in html and 'data-action="shelve"' not in html  # operators acknowledge, maintenance shelves


async def test_history_with_filters(hmi: Hmi, http: aiohttp.ClientSession) -> None:
    await _raise_low_balance(hmi, "B1-R106", level=2)
    engine = hmi.rt.ctx[ALARMS]
    alarm = next(a for a in engine.active() if a.room_id == "B1-R106")
    await engine.acknowledge(alarm.id, Actor("maint1", "hmi", "maintenance"), "seen")
    await login(http, hmi.url, "viewer1")
    async with http.get(hmi.url + "/alarms/history?alarm_class=balance_very_low&room=B1-R106") as r:
        html = await r.text()
    assert f'data-alarm="{alarm.id}"' in html and "maint1" in html and "seen" in html
    async with http.get(hmi.url + "/alarms/history?alarm_class=comm_loss") as r:
        assert "No alarm matches the filter." in await r.text()
    async with http.get(hmi.url + "/alarms/history?alarm_class=nonsense") as r:
        assert "The filter alarm_class was not valid" in await r.text()
    async with http.get(hmi.url + "/alarms/history?since=yesterday") as r:
        assert "The filter since was not valid" in await r.text()


async def test_feed_alarms_view(hmi: Hmi) -> None:
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        snap = await subscribe(ws, view="alarms")
        assert snap["alarms"] == [] and snap["shelved"] == []
        await _raise_low_balance(hmi, "B1-R107", level=3)
        msg = await recv(ws)
        assert msg["type"] == "update" and [a["room_id"] for a in msg["alarms"]] == ["B1-R107"]
        assert msg["alarms"][0]["class"] == "balance_exhausted" and not msg["alarms"][0]["acknowledged"]
        # the room view carries the room's alarms too
        await ws.send(json.dumps({"type": "subscribe", "view": "room", "room": "B1-R107"}))
        room = await recv(ws)
        assert room["type"] == "snapshot" and [a["class"] for a in room["alarms"]] == ["balance_exhausted"]
