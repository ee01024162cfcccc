"""The prepaid JSON API: roles, amounts, idempotent recharges, refunds, reversals, close, ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scada.users.component import AUDIT

from .prepaid_api import FLAT, Api, approved, open_r1, prepaid_api


@pytest.fixture
async def api(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with prepaid_api(tmp_path, migrated_db_url) as api:
        yield api


async def test_open_and_read_account(api: Api) -> None:
    body = await open_r1(api)
    assert body["balance"] == "100.00" and body["state"] == "open" and body["tariffs"]["electricity"] == "FLAT"
    assert body["thresholds"] == [{"level": 1, "money": "20.00"}, {"level": 2, "money": "5.00"}, {"level": 3, "money": "0.00"}]
    status, got = await api.call("GET", "/rooms/R1/account", "cashier")
    assert status == 200 and got["contact"]["name"] == "Han Meimei"
    status, err = await api.call("GET", "/rooms/R2/account", "viewer")
    assert status == 404 and "no account" in err["error"]
    status, err = await api.call("GET", "/rooms/NOPE/account", "viewer")
    assert status == 404 and "no room" in err["error"]
    status, err = await api.call("POST", "/rooms/R1/account/open", "cashier", {"tariffs": {"electricity": "FLAT"}})
    assert status == 409 and "already has an open account" in err["error"]
    status, err = await api.call("POST", "/rooms/R2/account/open", "cashier", {"tariffs": {"electricity": "FLAT"}})
    assert status == 422 and err["field"] == "tariffs.water"


async def test_roles_are_enforced(api: Api) -> None:
    status, _ = await api.call("POST", "/tariffs", "cashier", FLAT)
    assert status == 403
    await open_r1(api)
    for user, path, body in (
        ("viewer", "/rooms/R1/account/recharge", {"amount": "1", "reference": "x"}),
        ("engineer", "/rooms/R1/account/refund", {"amount": "1", "reason": "x"}),
        ("viewer", "/rooms/R1/account/close", {"reason": "x"}),
        ("cashier", "/rooms/R1/account/reconnect", {"reason": "x"}),
    ):
        status, err = await api.call("POST", path, user, body)
        assert status == 403, (user, path, err)
    status, _ = await api.call("POST", "/rooms/R1/account/recharge", "", {"amount": "1", "reference": "x"})
    assert status == 401
    _, acct = await api.call("GET", "/rooms/R1/account", "viewer")
    assert acct["balance"] == "100.00"  # nothing changed


BAD_AMOUNTS = [
    ("-1.00", "must not be negative"),
    ("0", "greater than zero"),
    ("0.00", "greater than zero"),
    ("NaN", "finite"),
    ("-Infinity", "finite"),
    ("1.001", "more than 2 decimals"),
    ("1e12", "larger than the maximum"),
    ("12abc", "not a decimal number"),
    ("1_000", "not a decimal number"),
    ("", "not a decimal number"),
    (True, "decimal string"),
    (None, "decimal string"),
    ([1], "decimal string"),
]


async def test_bad_amounts_are_422_naming_the_field(api: Api) -> None:
    await open_r1(api)
    for amount, message in BAD_AMOUNTS:
        status, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": amount, "reference": "bad"})
        assert status == 422, (amount, err)
        assert err["field"] == "amount" and err["error"].startswith("amount:") and message in err["error"], (amount, err)
        status, err = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": amount, "reason": "x"})
        assert status == 422 and err["field"] == "amount" and message in err["error"], (amount, err)
    status, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"reference": "bad"})
    assert status == 422 and err["field"] == "amount" and "missing" in err["error"]
    status, err = await api.call("POST", "/rooms/R2/account/open", "cashier", {"tariffs": {"electricity": "FLAT", "water": "W"}, "opening_balance": "-5"})
    assert status == 422 and err["field"] == "opening_balance"
    _, acct = await api.call("GET", "/rooms/R1/account", "viewer")
    assert acct["balance"] == "100.00"


async def test_json_numbers_are_read_exactly(api: Api) -> None:
    await open_r1(api)
    # 0.1 + 0.2 as binary floats would not be 0.30: the router reads JSON numbers as Decimal
    status, body = await api.call("POST", "/rooms/R1/account/recharge", "cashier", raw=b'{"amount": 0.1, "reference": "n1"}')
    assert status == 200, body
    status, body = await api.call("POST", "/rooms/R1/account/recharge", "cashier", raw=b'{"amount": 0.2, "reference": "n2"}')
    assert body["account"]["balance"] == "100.30"
    status, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", raw=b'{"amount": 1e400, "reference": "n3"}')
    assert status == 422 and err["field"] == "amount"
    status, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", raw=b'{"amount": NaN, "reference": "n4"}')
    assert status == 400


async def test_recharge_idempotency_and_conflict(api: Api) -> None:
    await open_r1(api)
    req = {"amount": "100.00", "reference": "POS-1", "channel": "cash"}
    s1, first = await api.call("POST", "/rooms/R1/account/recharge", "cashier", req)
    s2, again = await api.call("POST", "/rooms/R1/account/recharge", "cashier", req)
    assert s1 == s2 == 200
    assert first["entry"]["id"] == again["entry"]["id"] and again["replayed"] and not first["replayed"]
    assert again["account"]["balance"] == "200.00"
    s3, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {**req, "amount": "50.00"})
    assert s3 == 409 and err["field"] == "reference" and "already used for 100.00" in err["error"]
    entries = await api.rt.ctx[AUDIT].query(action="api.accounts.recharge")
    assert sorted(e.outcome for e in entries) == ["ok", "ok", "rejected"]


async def test_refund_reverse_ledger_close(api: Api) -> None:
    await open_r1(api)
    _, r = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": "50", "reference": "R-1"})
    status, err = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "150.01", "reason": "leaving"})
    assert status == 409 and err["field"] == "amount"
    status, err = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "10"})
    assert status == 422 and err["field"] == "reason"
    status, body = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "10", "reason": "overpaid"})
    assert status == 200 and body["account"]["balance"] == "140.00" and body["entry"]["amount"] == "-10.00"
    status, body = await api.call("POST", f"/ledger/{r['entry']['id']}/reverse", "cashier", {"reason": "wrong room"})
    assert status == 200 and body["entry"]["kind"] == "reversal" and body["entry"]["reverses"] == r["entry"]["id"]
    assert body["account"]["balance"] == "90.00"
    status, err = await api.call("POST", f"/ledger/{r['entry']['id']}/reverse", "cashier", {"reason": "again"})
    assert status == 409
    status, err = await api.call("POST", "/ledger/abc/reverse", "cashier", {"reason": "x"})
    assert status == 404
    status, ledger = await api.call("GET", "/rooms/R1/account/ledger?limit=2", "viewer")
    assert status == 200 and [e["kind"] for e in ledger["entries"]] == ["reversal", "refund"]
    status, ledger = await api.call("GET", f"/rooms/R1/account/ledger?before={ledger['entries'][-1]['id']}", "viewer")
    assert [e["kind"] for e in ledger["entries"]] == ["recharge", "opening"]
    status, closed = await api.call("POST", "/rooms/R1/account/close", "cashier", {"reason": "moved out", "final_readings": {"E1": "not a number"}})
    assert status == 422 and closed["field"] == "final_readings.E1"
    status, closed = await api.call("POST", "/rooms/R1/account/close", "cashier", {"reason": "moved out"})
    assert status == 200, closed
    assert closed["account"]["state"] == "closed" and closed["settlement"]["amount"] == "-90.00"
    status, err = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": "1", "reference": "late"})
    assert status == 404 and "no open account" in err["error"]


async def test_settings_thresholds_and_emergency_credit(api: Api) -> None:
    await open_r1(api, opening="0")
    status, err = await api.call("POST", "/rooms/R1/account/settings", "cashier", {"thresholds": [{"level": 1, "money": "-x"}]})
    assert status == 422 and err["field"] == "thresholds[0].money"
    status, err = await api.call("POST", "/rooms/R1/account/settings", "cashier", {"thresholds": [{"level": 1, "money": "5"}, {"level": 2, "money": "10"}]})
    assert status == 422 and "must not be above" in err["error"]
    status, err = await api.call("POST", "/rooms/R1/account/settings", "cashier", {"credit_limit": "-5"})
    assert status == 422 and err["field"] == "credit_limit"
    status, body = await api.call("POST", "/rooms/R1/account/settings", "cashier", {
        "credit_limit": "10", "emergency_credit": "5", "protected": True, "contact": {"name": "X", "email": "x@example.com"},
        "reason": "vulnerable tenant"})
    await approved(api, status, body)  # credit limit, emergency credit and protection: four eyes
    status, body = await api.call("GET", "/rooms/R1/account", "cashier")
    assert status == 200 and body["credit_limit"] == "10.00" and body["protected"] and body["contact"]["email"] == "x@example.com"
    status, body = await api.call("POST", "/rooms/R1/account/emergency-credit", "cashier", {})
    assert status == 200 and body["emergency_taken_at"]
    status, err = await api.call("POST", "/rooms/R1/account/emergency-credit", "cashier", {})
    assert status == 409 and "already taken" in err["error"]


async def test_openapi_lists_the_prepaid_routes(api: Api) -> None:
    async with api.http.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    for path in ("/api/v1/rooms/{room}/account", "/api/v1/rooms/{room}/account/recharge", "/api/v1/ledger/{entry}/reverse",
                 "/api/v1/tariffs/{id}/quote", "/api/v1/tariffs"):
        assert path in doc["paths"], path
    assert doc["components"]["schemas"]["RechargeIn"]["properties"]["amount"]["type"] == "string"
