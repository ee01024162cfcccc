"""The findings of a hostile run against the API, end to end: every odd input is a 4xx naming
what was wrong (never a 500), huge numbers and ranges are refused before any work and quote
little of themselves, refused requests write nothing (or one bounded row), failed logins are
counted before the password is checked, and live connections are capped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from hmi.component import HMI_URL
from hmi.feed import CLOSE_TOO_MANY
from scada.db.component import DATABASE
from scada.users.component import USERS

from ..harness import running_server
from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi, add_role_users, browser_like, demo_site_config, login, open_accounts


@pytest.fixture
async def capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hmi]:
    """The demo with small WebSocket caps, users of every role and an account in B1-R101."""
    monkeypatch.setenv("SCADA_ADMIN_PASSWORD", ADMIN_PASSWORD)
    config = demo_site_config(tmp_path, "hmi.ws_max_per_user=3", "hmi.ws_max_total=4")
    async with running_server(config) as rt:
        await add_role_users(rt.ctx[USERS])
        hmi = Hmi(rt, rt.ctx[HMI_URL])
        await open_accounts(hmi, {"B1-R101": "50.00"})
        yield hmi


async def _token(http: aiohttp.ClientSession, hmi: Hmi, user: str) -> dict[str, str]:
    async with http.post(hmi.api + "/auth/token", json={"user": user, "password": PASSWORDS.get(user, ADMIN_PASSWORD)}) as r:
        assert r.status == 200, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def _audit_size(hmi: Hmi) -> tuple[int, int]:
    """Rows and bytes of the audit log (every column's text)."""
    sql = ("SELECT count(*), coalesce(sum(length(actor) + length(action) + length(target_type) + length(target_id)"
           " + length(reason) + length(coalesce(CAST(after AS TEXT), '')) + length(coalesce(CAST(before AS TEXT), ''))), 0) FROM audit_log")
    async with hmi.rt.ctx[DATABASE].sessions() as s:
        rows, size = (await s.execute(text(sql))).one()
    return int(rows), int(size)


async def _balance(http: aiohttp.ClientSession, hmi: Hmi, headers: dict[str, str]) -> str:
    async with http.get(hmi.api + "/rooms/B1-R101/account", headers=headers) as r:
        return str((await r.json())["balance"])


async def test_odd_input_is_a_4xx_never_a_500(capped: Hmi) -> None:
    hmi = capped
    async with aiohttp.ClientSession() as http:
        admin = await _token(http, hmi, "admin")
        viewer = await _token(http, hmi, "viewer1")
        cashier = await _token(http, hmi, "cashier1")

        async def call(method: str, path: str, headers: dict[str, str], body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any], int]:
            kw: dict[str, Any] = {"headers": headers}
            if raw is not None:
                kw["data"] = raw
                kw["headers"] = {**headers, "Content-Type": "application/json"}
            elif body is not None:
                kw["json"] = body
            async with http.request(method, hmi.api + path, **kw) as r:
                payload = await r.read()
                try:
                    doc = json.loads(payload)
                except ValueError:
                    doc = {"raw": payload[:200].decode(errors="replace")}
                return r.status, doc, len(payload)

        balance = await _balance(http, hmi, admin)
        rows_before, _ = await _audit_size(hmi)
        # huge decimals: the tariff quote (open to a viewer) and money fields, as strings and JSON numbers
        for value in ("1E+50000000", "1E+200000000"):
            status, err, size = await call("POST", "/tariffs/flat-e/quote", viewer, {"quantity": value, "start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"})
            assert status == 422 and err["field"] == "quantity" and size < 1000, (status, err)
            status, err, size = await call("POST", "/rooms/B1-R101/account/recharge", cashier, raw=b'{"amount": ' + value.encode() + b', "reference": "x1"}')
            assert status == 422 and err["field"] == "amount" and size < 1000, (status, err)
            status, err, _ = await call("POST", "/rooms/B1-R101/account/settings", admin, {"credit_limit": value})
            assert status == 422 and err["field"] == "credit_limit", (status, err)
        status, err, _ = await call("POST", "/rooms/B1-R101/account/recharge", cashier, raw=b'{"amount": ' + b"9" * 5000 + b', "reference": "x2"}')
        assert status == 422 and err["field"] == "amount"
        # full-width and Arabic-Indic digits are not money
        for value in ("１０", "١٠"):
            status, err, _ = await call("POST", "/rooms/B1-R101/account/recharge", cashier, {"amount": value, "reference": f"fw-{value}"})
            assert status == 422 and err["field"] == "amount" and "not a decimal number" in err["error"], err
        assert await _balance(http, hmi, admin) == balance  # nothing was credited
        # ids beyond 64 bits and non-ASCII digits in path ids
        for path, body in (("/alarms/¹/acknowledge", {"reason": "x"}), ("/alarms/18446744073709551616/acknowledge", {"reason": "x"}),
                           ("/alarms/٣/shelve", {"reason": "x", "minutes": 5}), ("/ledger/¹/reverse", {"reason": "x"}),
                           ("/ledger/99999999999999999999999/reverse", {"reason": "x"})):
            status, err, _ = await call("POST", path, admin, body)
            assert status == 404, (path, status, err)
        for path in ("/alarms/¹", "/alarms/18446744073709551616", "/rooms/B1-R101/account/ledger?before=18446744073709551616",
                     "/alarms/deliveries?alarm_id=18446744073709551616"):
            status, err, _ = await call("GET", path, admin)
            assert status in (404, 422), (path, status, err)
        status, err, _ = await call("POST", "/alarms/acknowledge", admin, {"ids": [2**64], "reason": "x"})
        assert status == 422 and err["field"] == "ids[0]"
        # history and trend: dates, intervals and sizes
        for query, field in (
            ("room=B1-R101&start=2024-05-01&end=2024-05-02&interval=" + "1" * 5000 + "min", "interval"),
            ("room=B1-R101&start=2024-05-01&end=9999-12-31T23:59:59Z", "end"),
            ("room=B1-R101&start=0001-01-01&end=2024-05-02", "start"),
            ("room=B1-R101&start=1970-01-02&end=2199-12-31&interval=15min", "interval"),
        ):
            status, err, _ = await call("GET", "/history?" + query, admin)
            assert status == 422 and err["field"] == field, (query, status, err)
        status, err, _ = await call("GET", "/history?building=B1&start=1970-01-02&end=2199-12-31&interval=15min", admin)
        assert err["limit"] == 2_000_000 and err["rows"] > 2_000_000 and "2,000,000" in err["error"]
        for day in ("9999-12-31", "0001-01-01", "1970-01-01"):
            status, err, _ = await call("GET", f"/rooms/B1-R101/trend?range=week&date={day}", viewer)
            assert status == 422 and err["field"] == "date", (day, status, err)
        # JSON nested 100,000 deep; NUL and other control characters in free text
        status, err, _ = await call("POST", "/rooms/B1-R101/account/refund", cashier, raw=b"[" * 100_000 + b"]" * 100_000)
        assert status == 400 and "nested deeper" in err["error"]
        status, err, _ = await call("POST", "/rooms/B1-R101/account/refund", cashier, {"amount": "1.00", "reason": "a\u0000b"})
        assert status == 422 and err["field"] == "reason" and "U+0000" in err["error"]
        status, err, _ = await call("GET", "/rooms/B1%00R101/account", admin)
        assert status == 404
        # phone numbers are E.164: no extra recipient smuggled in
        status, err, _ = await call("POST", "/rooms/B1-R101/account/settings", admin, {"contact": {"name": "X", "phone": "123&to=+19990000000"}})
        assert status == 422 and err["field"] == "contact.phone"
        # the cashier's receipt page: a path id of odd digits is a 404 page, not a 500
        async with browser_like() as web:
            await login(web, hmi.url, "cashier1")
            for entry in ("¹", "٣", "9223372036854775807", "99999999999999999999999"):
                async with web.get(hmi.url + f"/cashier/receipt/B1-R101/{entry}") as r:
                    assert r.status == 404, (entry, r.status)
        # malformed requests wrote nothing (the rows are the balance read above and the cashier's
        # sign-in, audited as ever)
        async with hmi.rt.ctx[DATABASE].sessions() as s:
            written = (await s.execute(text(f"SELECT action, outcome FROM audit_log ORDER BY id LIMIT 100 OFFSET {rows_before}"))).all()
        assert [tuple(w) for w in written] == [("api.accounts.get_account", "ok"), ("session.login", "ok")], written


async def test_refused_requests_write_nothing_and_rows_stay_small(capped: Hmi) -> None:
    hmi = capped
    async with aiohttp.ClientSession() as http:
        viewer = await _token(http, hmi, "viewer1")
        rows, size = await _audit_size(hmi)
        long_path = "/api/v1/rooms/" + "R" * 8000 + "/account/recharge"
        for _ in range(20):  # anonymous POSTs: refused before any database work
            async with http.post(hmi.url + long_path, json={"amount": "1"}) as r:
                assert r.status in (401, 404)
            async with http.post(hmi.api + "/rooms/B1-R101/account/recharge", json={"amount": "1", "reference": "r"}) as r:
                assert r.status == 401
            async with http.post(hmi.api + "/rooms/B1-R101/account/recharge", json={}, headers={"Authorization": "Bearer sct_" + "x" * 43}) as r:
                assert r.status == 401
        assert await _audit_size(hmi) == (rows, size)
        # an authenticated caller's refusal is one row, and a small one, however long its path
        async with http.post(hmi.url + "/api/v1/rooms/" + "R" * 200 + "/account/recharge", json={}, headers=viewer) as r:
            assert r.status == 403
        rows2, size2 = await _audit_size(hmi)
        assert rows2 == rows + 1 and size2 - size < 1000


async def test_parallel_wrong_passwords_are_limited(capped: Hmi) -> None:
    hmi = capped
    async with aiohttp.ClientSession() as http:

        async def attempt() -> int:
            async with http.post(hmi.api + "/auth/token", json={"user": "operator1", "password": "wrong-password"}) as r:
                return r.status

        statuses = await asyncio.gather(*(attempt() for _ in range(20)))
    # today all 20 were checked (401): the limit was checked before any was counted
    assert statuses.count(401) == 5 and statuses.count(429) == 15, statuses


async def test_websockets_are_capped_per_user_and_in_all(capped: Hmi) -> None:
    hmi = capped
    async with aiohttp.ClientSession() as http:
        admin = await _token(http, hmi, "admin")
        viewer = await _token(http, hmi, "viewer1")
        opened = [await http.ws_connect(hmi.url + "/ws", headers=admin) for _ in range(3)]
        try:
            extra = await http.ws_connect(hmi.url + "/ws", headers=admin)
            msg = await extra.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and extra.close_code == CLOSE_TOO_MANY
            assert "limit 3 per user" in msg.extra
            fourth = await http.ws_connect(hmi.url + "/ws", headers=viewer)  # another user: the 4th in all
            opened.append(fourth)
            over = await http.ws_connect(hmi.url + "/ws", headers=viewer)
            msg = await over.receive(timeout=5)
            assert over.close_code == CLOSE_TOO_MANY and "limit 4" in msg.extra
            # the connections that were let in work
            await fourth.send_json({"type": "subscribe", "view": "overview"})
            snapshot = await fourth.receive_json(timeout=10)
            assert snapshot["type"] == "snapshot"
        finally:
            for ws in opened:
                await ws.close()
        # closed ones free their places
        await asyncio.sleep(0.2)
        again = await http.ws_connect(hmi.url + "/ws", headers=admin)
        await again.send_json({"type": "subscribe", "view": "overview"})
        assert (await again.receive_json(timeout=10))["type"] == "snapshot"
        await again.close()


async def test_large_history_answers_stream(capped: Hmi) -> None:
    hmi = capped
    async with aiohttp.ClientSession() as http:
        admin = await _token(http, hmi, "admin")
        query = "/history?floor=B1-F1,B1-F2&point=energy_total,power&start=2024-05-01&end=2024-05-15&interval=15min"
        for fmt in ("json", "csv"):
            async with http.get(hmi.api + query + f"&format={fmt}", headers=admin) as r:
                assert r.status == 200, await r.text()
                assert r.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.headers
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                body = await r.read()
            if fmt == "json":
                doc = json.loads(body)
                assert len(doc["rows"]) == 14 * 96 * 2 * 2 and doc["interval"] == "15min"
            else:
                lines = body.decode().splitlines()
                assert lines[0].startswith("time,") and len(lines) == 1 + 14 * 96 * 2 * 2
