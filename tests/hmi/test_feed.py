"""The WebSocket feed with a real client (the ``websockets`` library): snapshots, coalesced
updates, views, resync on reconnect, errors, authentication, and a stalled client that delays
nobody."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from yarl import URL

from hmi.component import HmiComponent
from hmi.feed import FEED, Feed
from scada.core.tags import TAGDB
from scada.site.component import ASSETS
from scada.users.component import USERS
from tags import TagDB
from tags.names import room_tag

from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi, browser_like, login
from .producers import publish_room_tags


def ws_url(hmi: Hmi) -> str:
    return hmi.url.replace("http://", "ws://") + "/ws"


def feed_of(hmi: Hmi) -> Feed:
    component = next(c for c in hmi.rt.components if isinstance(c, HmiComponent))
    assert component.app is not None
    return component.app[FEED]


async def token_headers(hmi: Hmi, user: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(hmi.api + "/auth/token", json={"user": user, "password": password}) as r:
            return {"Authorization": f"Bearer {(await r.json())['token']}"}


@pytest.fixture
async def fed(hmi: Hmi) -> AsyncIterator[tuple[Hmi, TagDB]]:
    """The demo with its meters polled from the simulator, and room tags as the prepaid engine
    publishes them."""
    db = hmi.rt.ctx[TAGDB]
    publish_room_tags(db, hmi.rt.ctx[ASSETS].snapshot, balance=100.0)
    meters = [m.id for m in hmi.rt.ctx[ASSETS].snapshot.active_meters if m.polled]
    # the registers too: their class's first poll comes up to a fifth of its interval after the
    # start (the demo's start_spread), later than the fast class that sets comm_ok
    totals = [f"{m}.{p}" for m in meters for p in ("energy_total", "volume_total") if f"{m}.{p}" in db]

    def polled() -> bool:
        return all(db.read(f"{m}.comm_ok").value is True for m in meters) and all(db.read(t).good for t in totals)

    await until(polled, timeout=30, what="every meter polled, its registers too")
    await asyncio.sleep(0.05)  # let the live table take the initial values
    yield hmi, db


# a ceiling for a message that must come, not a figure: a CI machine running the other worker's
# browser tests has held a push back past 3 s
WAIT_S = 10.0


async def recv(ws: ClientConnection, timeout: float = WAIT_S) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, predicate: Any, timeout: float = WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if predicate(msg):
            return msg


async def subscribe(ws: ClientConnection, **sub: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", **sub}))
    msg = await recv(ws)
    assert msg["type"] == "snapshot", msg
    return msg


def rooms_of(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in msg.get("rooms", [])}


async def test_overview_snapshot_then_updates_of_the_page_only(fed: tuple[Hmi, TagDB]) -> None:
    hmi, db = fed
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        snap = await subscribe(ws, view="overview", filter={"floor": "B1-F1"}, page=1, page_size=10)
        assert snap["total"] == 15 and snap["pages"] == 2 and len(snap["rooms"]) == 10
        assert snap["counts"]["ok"] == 15 and snap["rooms"][0]["balance"] == "100.00"
        page = {r["id"] for r in snap["rooms"]}
        db.write(room_tag("B1-R115", "balance"), 7.0)  # on page 2: not in this view
        db.write(room_tag("B1-R201", "balance"), 7.0)  # another floor
        db.write(room_tag("B1-R102", "balance"), 55.0)
        seq = snap["seq"]
        seen: dict[str, dict[str, Any]] = {}
        while seen.get("B1-R102", {}).get("balance") != "55.00":
            msg = await recv(ws)
            assert msg["type"] == "update" and msg["seq"] == seq + 1
            seq = msg["seq"]
            assert set(rooms_of(msg)) <= page  # the poller's changes too: only rooms of the page
            seen.update(rooms_of(msg))
        # a room changing state updates the counts of the view's scope
        db.write(room_tag("B1-R103", "alarm_level"), 2)
        msg = await recv_until(ws, lambda m: "counts" in m)
        assert rooms_of(msg)["B1-R103"]["state"] == "low" and msg["counts"]["low"] == 1 and msg["counts"]["ok"] == 14


async def test_changes_are_coalesced_newest_wins(fed: tuple[Hmi, TagDB]) -> None:
    hmi, db = fed
    interval = feed_of(hmi).interval_s
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        await subscribe(ws, view="overview", page_size=100)
        start = time.monotonic()
        for i in range(200):
            db.write(room_tag("B1-R101", "balance"), 100.0 - i / 10)
            db.write(room_tag("B1-R102", "balance"), float(i))
            if i % 20 == 0:
                await asyncio.sleep(0.05)
        updates = []
        last: dict[str, dict[str, Any]] = {}
        while last.get("B1-R101", {}).get("balance") != "80.10" or last.get("B1-R102", {}).get("balance") != "199.00":
            msg = await recv(ws)
            updates.append(msg)
            last.update(rooms_of(msg))
        elapsed = time.monotonic() - start
    # 400 changes (and the poller's) arrive in a handful of pushes, at most one per interval
    assert len(updates) <= elapsed / interval + 2, (len(updates), elapsed)


async def test_state_filter_follows_membership(fed: tuple[Hmi, TagDB], sim: Control) -> None:
    hmi, db = fed
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        snap = await subscribe(ws, view="overview", filter={"state": "offline"})
        assert snap["total"] == 0 and snap["rooms"] == []
        await sim.fault("E-B1-304", "timeout")
        msg = await recv_until(ws, lambda m: m["type"] == "snapshot")
        assert [r["id"] for r in msg["rooms"]] == ["B1-R304"]
        assert msg["rooms"][0]["comm"] == "fault" and msg["counts"]["offline"] == 1
        await sim.fault("E-B1-304", "none")
        msg = await recv_until(ws, lambda m: m["type"] == "snapshot")
        assert msg["total"] == 0


async def test_room_view(fed: tuple[Hmi, TagDB], sim: Control) -> None:
    hmi, db = fed
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        snap = await subscribe(ws, view="room", room="B1-R103")
        assert snap["room"]["id"] == "B1-R103"
        assert [m["id"] for m in snap["meters"]] == ["E-B1-103", "W-B1-103"]
        power = snap["meters"][0]["points"]["power"]
        assert power["quality"] == "good" and power["unit"] == "kW" and isinstance(power["value"], float)
        assert snap["meters"][1]["points"]["volume_total"]["quality"] == "good"
        await sim.load("E-B1-103", kw=4.25)
        msg = await recv_until(ws, lambda m: m.get("tags", {}).get("E-B1-103.power", {}).get("value") == 4.25)
        assert all(name.startswith(("E-B1-103.", "W-B1-103.")) for name in msg["tags"])  # only this room's meters
        db.write(room_tag("B1-R103", "balance"), 5.0)
        msg = await recv_until(ws, lambda m: "room" in m and m["room"]["balance"] == "5.00")
        await sim.fault("W-B1-103", "timeout")
        msg = await recv_until(ws, lambda m: m.get("tags", {}).get("W-B1-103.comm_ok", {}).get("value") is False)
        assert msg["room"]["comm"] == "fault"


async def test_reconnect_resyncs_from_a_snapshot(fed: tuple[Hmi, TagDB]) -> None:
    hmi, db = fed
    headers = await token_headers(hmi)
    async with connect(ws_url(hmi), additional_headers=headers) as ws:
        snap = await subscribe(ws, view="overview", filter={"floor": "B1-F4"})
        assert rooms_of(snap)["B1-R401"]["balance"] == "100.00"
    db.write(room_tag("B1-R401", "balance"), 6.5)  # while disconnected
    async with connect(ws_url(hmi), additional_headers=headers) as ws:
        snap = await subscribe(ws, view="overview", filter={"floor": "B1-F4"})
        assert rooms_of(snap)["B1-R401"]["balance"] == "6.50"


BAD_REQUESTS = [
        ("not json", None, "not valid JSON"),
        ("[1, 2]", None, "JSON object"),
        ('{"type": "subscribe", "view": "room", "room": "NOPE"}', "room", "unknown room 'NOPE'"),
        ('{"type": "subscribe", "view": "overview", "filter": {"building": "B9"}}', "filter.building", "unknown building 'B9'"),
        ('{"type": "subscribe", "view": "overview", "filter": {"floor": "B1-F1", "building": "B2"}}', "filter.building", "unknown building"),
        ('{"type": "subscribe", "view": "overview", "filter": {"state": "on fire"}}', "filter.state", "offline"),
        ('{"type": "subscribe", "view": "overview", "page_size": 100000}', "page_size", "1000"),
        ('{"type": "subscribe", "view": "map"}', "view", "overview"),
        ('{"type": "subscribe", "view": "overview", "admin": true}', "admin", "unknown field"),
        ('{"type": "unsubscribe"}', "type", "subscribe"),
]


async def test_bad_requests_are_answered(fed: tuple[Hmi, TagDB]) -> None:
    hmi, _ = fed
    async with connect(ws_url(hmi), additional_headers=await token_headers(hmi)) as ws:
        for message, field, text in BAD_REQUESTS:
            await ws.send(message)
            msg = await recv_until(ws, lambda m: m["type"] == "error")
            assert msg.get("field") == field and text in msg["message"], (message, msg)
        # the connection stays usable
        snap = await subscribe(ws, view="overview", page_size=5)
        assert len(snap["rooms"]) == 5


async def test_authentication(fed: tuple[Hmi, TagDB]) -> None:
    hmi, _ = fed
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url(hmi)):
            pass
    assert err.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url(hmi), additional_headers={"Authorization": "Bearer sct_forged"}):
            pass
    assert err.value.response.status_code == 401
    # the page's session cookie works from the server's own origin, not from another site
    async with browser_like() as http:
        await login(http, hmi.url, "viewer1")
        cookie = http.cookie_jar.filter_cookies(URL(hmi.url))["scada_session"].value
    headers = {"Cookie": f"scada_session={cookie}"}
    async with connect(ws_url(hmi), additional_headers=headers, origin=hmi.url) as ws:  # type: ignore[arg-type]
        assert (await subscribe(ws, view="overview"))["total"] == 60
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url(hmi), additional_headers=headers, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert err.value.response.status_code == 403


async def test_a_revoked_session_loses_the_feed(fed: tuple[Hmi, TagDB]) -> None:
    hmi, _ = fed
    feed_of(hmi).recheck_s = 0.2
    async with browser_like() as http:
        await login(http, hmi.url, "operator1")
        cookie = http.cookie_jar.filter_cookies(URL(hmi.url))["scada_session"].value
    async with connect(ws_url(hmi), additional_headers={"Cookie": f"scada_session={cookie}"}, origin=hmi.url) as ws:  # type: ignore[arg-type]
        await subscribe(ws, view="overview")
        from scada.users.audit import Actor

        await hmi.rt.ctx[USERS].update("operator1", Actor("test", "cli"), active=False)
        with pytest.raises(ConnectionClosed) as err:
            while True:
                await recv(ws)
        assert err.value.rcvd is not None and err.value.rcvd.code == 4401


def _stalled_client(hmi: Hmi, headers: dict[str, str], subscription: dict[str, Any]) -> socket.socket:
    """A WebSocket client that subscribes and then never reads (tiny receive buffer)."""
    url = URL(hmi.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.host, url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1", f"Host: {url.host}:{url.port}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items()), "", "",
    ]
    sock.sendall("\r\n".join(lines).encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: leave any frame that follows unread
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = json.dumps({"type": "subscribe", **subscription}).encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
    sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


@pytest.mark.slow
async def test_a_stalled_client_delays_nobody(big_hmi: Hmi) -> None:
    hmi = big_hmi
    db = hmi.rt.ctx[TAGDB]
    snap = hmi.rt.ctx[ASSETS].snapshot
    publish_room_tags(db, snap)
    headers = await token_headers(hmi)
    feed = feed_of(hmi)
    feed.stall_timeout_s = 600.0  # held, not yet closed (closing it is tested above)
    # a client of all 1,000 rooms (~0.5 MB per push) that never reads: the kernel's buffers
    # fill after a few pushes and its sender waits, alone
    stalled = await asyncio.to_thread(_stalled_client, hmi, headers, {"view": "overview", "page_size": 1000})
    try:
        async with connect(ws_url(hmi), additional_headers=headers) as ws:
            await subscribe(ws, view="overview", filter={"floor": "G1-F1"})
            stalled_client = next(c for c in feed.clients if c.page_size == 1000)
            rooms = list(snap.rooms)
            for round_ in range(25):
                for room in rooms:
                    db.write(room_tag(room, "balance"), round_ + len(room) / 1000)
                db.write(room_tag("G1-R101", "alarm_level"), round_ % 2)
                expected = f"{round_ + len('G1-R101') / 1000:.2f}"
                msg = await recv_until(ws, lambda m, expected=expected: rooms_of(m).get("G1-R101", {}).get("balance") == expected)
                assert rooms_of(msg)["G1-R101"]["alarm_level"] == round_ % 2  # each change arrives, in time
            # the stalled client is stuck in its own sender, holding at most one entry per room
            assert stalled_client.pushes < 25, stalled_client.pushes
            assert len(stalled_client.dirty_rooms) <= len(rooms)
            assert stalled_client in feed.clients
    finally:
        stalled.close()


async def test_the_shared_encoding_is_never_stale(fed: tuple[Hmi, TagDB]) -> None:
    """Two clients that show the same room share each push's encoded part; a change between
    pushes voids it, so both get the new value; a client of other rooms gets its own part."""
    hmi, db = fed
    headers = await token_headers(hmi)
    async with (
        connect(ws_url(hmi), additional_headers=headers) as a,
        connect(ws_url(hmi), additional_headers=headers) as b,
        connect(ws_url(hmi), additional_headers=headers) as other,
    ):
        # one room per view: whatever else changes (the poller), the set of changed rooms of a
        # push is always the same, so a part kept past a change would be served again
        for ws in (a, b):
            assert [r["id"] for r in (await subscribe(ws, view="overview", filter={"q": "B1-R101"}))["rooms"]] == ["B1-R101"]
        assert [r["id"] for r in (await subscribe(other, view="overview", filter={"q": "B1-R102"}))["rooms"]] == ["B1-R102"]
        for round_ in range(6):
            value = 10.0 + round_
            expected = f"{value:.2f}"
            db.write(room_tag("B1-R101", "balance"), value)
            db.write(room_tag("B1-R102", "balance"), 50.0 + round_)
            got = []
            for ws in (a, b):
                msg = await recv_until(ws, lambda m, expected=expected: rooms_of(m).get("B1-R101", {}).get("balance") == expected)
                assert set(rooms_of(msg)) == {"B1-R101"}
                got.append(rooms_of(msg)["B1-R101"])
            assert got[0] == got[1]
            msg = await recv_until(other, lambda m, round_=round_: rooms_of(m).get("B1-R102", {}).get("balance") == f"{50 + round_:.2f}")
            assert set(rooms_of(msg)) == {"B1-R102"}


async def test_a_client_that_reads_nothing_is_closed_and_bounded(fed: tuple[Hmi, TagDB], caplog: pytest.LogCaptureFixture) -> None:
    """A client that stops reading holds at most one push in flight and the newest state of its
    view; once its socket took nothing for the stall timeout it is closed and logged with its
    user, while another client keeps getting every change."""
    hmi, db = fed
    feed = feed_of(hmi)
    feed.stall_timeout_s = 1.0
    headers = await token_headers(hmi)
    stalled = await asyncio.to_thread(_stalled_client, hmi, headers, {"view": "overview", "page_size": 1000})
    try:
        async with connect(ws_url(hmi), additional_headers=headers) as ws:
            await subscribe(ws, view="overview", filter={"floor": "B1-F1"})
            await until(lambda: any(c.page_size == 1000 for c in feed.clients), timeout=5, what="the stalled client subscribed")
            client = next(c for c in feed.clients if c.page_size == 1000)
            assert isinstance(client.transport, asyncio.Transport)
            # a small send buffer on the server's side too, so that a few pushes fill the kernel's
            client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            rooms = list(hmi.rt.ctx[ASSETS].snapshot.rooms)
            for round_ in range(400):
                if client not in feed.clients:
                    break
                for room in rooms:
                    db.write(room_tag(room, "balance"), round_ + len(room) / 1000)
                expected = f"{round_ + len('B1-R101') / 1000:.2f}"
                await recv_until(ws, lambda m, expected=expected: rooms_of(m).get("B1-R101", {}).get("balance") == expected)
                # what the server holds for it: one push in flight (~22 KB of 60 rooms), not a
                # queue of pushes; its newest state waits in its dirty set
                assert client.transport.get_write_buffer_size() <= 64 * 1024, client.transport.get_write_buffer_size()
                assert len(client.dirty_rooms) <= len(rooms)
            assert client not in feed.clients, "the stalled client was never closed"
            assert client.stalled and feed.dropped >= 1 and client.transport.is_closing()
            # the other client still gets each change
            db.write(room_tag("B1-R101", "balance"), 3.25)
            await recv_until(ws, lambda m: rooms_of(m).get("B1-R101", {}).get("balance") == "3.25")
        [record] = [r for r in caplog.records if "took nothing" in r.getMessage()]
        assert record.levelname == "WARNING" and record.user == "admin" and record.code == 1013  # type: ignore[attr-defined]
    finally:
        stalled.close()
