"""Four eyes over the JSON API, on SQLite and PostgreSQL: for each kind of operation that
creates value, a cashier's request answers 202 with the pending request, the requester approving
it gets 403 and nothing moves, and a supervisor's approval moves the money once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scada.approvals.component import APPROVALS
from scada.users.component import AUDIT

from .prepaid_api import WATER, Api, open_r1, prepaid_api


@pytest.fixture
async def api(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with prepaid_api(tmp_path, migrated_db_url) as api:
        yield api


async def account(api: Api, room: str = "R1") -> dict[str, Any]:
    status, body = await api.call("GET", f"/rooms/{room}/account", "cashier")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def ledger(api: Api, room: str = "R1") -> list[dict[str, Any]]:
    status, body = await api.call("GET", f"/rooms/{room}/account/ledger", "cashier")
    assert status == 200, body
    return body["entries"]  # type: ignore[no-any-return]


async def refused_to_requester(api: Api, request: dict[str, Any], snapshot: Any) -> None:
    """The requester (and a cashier, and a viewer) approving get 403; nothing moves."""
    for user in ("cashier", "viewer", "operator"):
        status, err = await api.call("POST", f"/approvals/{request['id']}/approve", user, {})
        assert status == 403, (user, err)
        status, err = await api.call("POST", f"/approvals/{request['id']}/reject", user, {"reason": "mine"})
        assert status == 403, (user, err)
    status, again = await api.call("GET", f"/approvals/{request['id']}", "cashier")
    assert status == 200 and again["state"] == "pending"
    assert await snapshot() == snapshot.before, "something moved before the approval"


class Snapshot:
    def __init__(self, api: Api, room: str = "R1") -> None:
        self.api, self.room = api, room
        self.before: Any = None

    async def __call__(self) -> Any:
        status, body = await self.api.call("GET", f"/rooms/{self.room}/account/ledger", "cashier")
        if status == 404:
            return None
        a = body["account"]
        return a["balance"], a["credit_limit"], a["emergency_credit"], a["protected"], [e["id"] for e in body["entries"]]

    async def take(self) -> Snapshot:
        self.before = await self()
        return self


async def four_eyes(api: Api, status: int, request: dict[str, Any], kind: str, snapshot: Snapshot) -> dict[str, Any]:
    assert status == 202 and request["state"] == "pending" and request["kind"] == kind, (status, request)
    assert request["requested_by"] == "cashier" and request["rule"], request
    await refused_to_requester(api, request, snapshot)
    status, listed = await api.call("GET", "/approvals?state=pending", "supervisor")
    assert status == 200 and request["id"] in [a["id"] for a in listed["approvals"]]
    status, done = await api.call("POST", f"/approvals/{request['id']}/approve", "supervisor", {"reason": "receipt seen"})
    assert status == 200 and done["state"] == "executed" and done["decided_by"] == "supervisor", done
    status, again = await api.call("POST", f"/approvals/{request['id']}/approve", "supervisor", {})
    assert status == 200 and again["state"] == "executed" and again["result"] == done["result"]
    status, err = await api.call("POST", f"/approvals/{request['id']}/approve", "supervisor2", {})
    assert status == 409, err
    return done  # type: ignore[no-any-return]


async def test_each_kind_needs_a_second_user(api: Api) -> None:
    # opening (reopening) with an opening balance
    status, body = await api.call("POST", "/tariffs", "engineer", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                                  "definition": {"price": "0.5"}})
    assert status == 201, body
    status, body = await api.call("POST", "/tariffs", "engineer", WATER)
    assert status == 201, body
    snap = await Snapshot(api, "R2").take()
    status, request = await api.call("POST", "/rooms/R2/account/open", "cashier", {
        "tariffs": {"electricity": "FLAT", "water": "WATER"}, "opening_balance": "1000000.00", "reason": "new tenant"})
    opened = await four_eyes(api, status, request, "account.open", snap)
    r2 = await account(api, "R2")
    assert r2["balance"] == "1000000.00" and opened["result"]["account"] == r2["id"]
    [opening] = await ledger(api, "R2")
    assert opening["actor"] == "cashier" and "approved by supervisor" in opening["reason"] and opening["reference"] == f"approval-{request['id']}"

    # a refund above the limit (a small one goes at once)
    await open_r1(api, opening="0")
    status, body = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": "900.00", "reference": "POS-1"})
    assert status == 200, body
    status, body = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "100.00", "reason": "overpaid"})
    assert status == 200 and body["account"]["balance"] == "800.00", body
    snap = await Snapshot(api).take()
    status, request = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "700.00", "reason": "tenant leaves"})
    await four_eyes(api, status, request, "account.refund", snap)
    assert (await account(api))["balance"] == "100.00"

    # a reversal that credits (of that refund), while a reversal of the recharge is the cashier's alone
    refund_entry = next(e for e in await ledger(api) if e["kind"] == "refund" and e["amount"] == "-700.00")
    snap = await Snapshot(api).take()
    status, request = await api.call("POST", f"/ledger/{refund_entry['id']}/reverse", "cashier", {"reason": "refund paid twice"})
    await four_eyes(api, status, request, "ledger.reverse", snap)
    assert (await account(api))["balance"] == "800.00"

    # credit limit, emergency credit, protection
    for body, rule in (({"credit_limit": "1000000"}, "credit limit"), ({"emergency_credit": "1000000"}, "emergency credit"),
                       ({"protected": True}, "protection")):
        snap = await Snapshot(api).take()
        status, request = await api.call("POST", "/rooms/R1/account/settings", "cashier", {**body, "reason": "asked"})
        done = await four_eyes(api, status, request, "account.settings", snap)
        assert rule in request["rule"][0] and done["result"]["room"] == "R1"
    after = await account(api)
    assert (after["credit_limit"], after["emergency_credit"], after["protected"]) == ("1000000.00", "1000000.00", True)

    # everything is audited with both users
    executed = await api.rt.ctx[AUDIT].query(action="approval.execute")
    assert len(executed) == 6 and {(e.actor, e.after["requested_by"]) for e in executed} == {("supervisor", "cashier")}


async def test_reject_expire_and_who_sees_what(api: Api) -> None:
    await open_r1(api, opening="0")
    status, body = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": "900.00", "reference": "POS-1"})
    assert status == 200, body
    snap = await Snapshot(api).take()
    status, first = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "600.00", "reason": "a"})
    assert status == 202
    status, err = await api.call("POST", f"/approvals/{first['id']}/reject", "supervisor", {})
    assert status == 422 and err["field"] == "reason"
    status, rejected = await api.call("POST", f"/approvals/{first['id']}/reject", "supervisor", {"reason": "no receipt"})
    assert status == 200 and rejected["state"] == "rejected" and rejected["decision_reason"] == "no receipt"
    status, err = await api.call("POST", f"/approvals/{first['id']}/approve", "supervisor2", {})
    assert status == 409 and "rejected" in err["error"]

    service = api.rt.ctx[APPROVALS]
    status, second = await api.call("POST", "/rooms/R1/account/refund", "cashier", {"amount": "600.00", "reason": "b"})
    assert status == 202
    real = service.clock
    service.clock = lambda: real() + dt.timedelta(hours=25)
    try:
        status, err = await api.call("POST", f"/approvals/{second['id']}/approve", "supervisor", {})
        assert status == 409 and "expired" in err["error"]
        status, listed = await api.call("GET", "/approvals?state=expired", "supervisor")
        assert [a["id"] for a in listed["approvals"]] == [second["id"]]
    finally:
        service.clock = real
    assert await snap() == snap.before

    # the requester sees their own requests; a viewer sees none; an approver sees all
    status, mine = await api.call("GET", "/approvals", "cashier")
    assert status == 200 and {a["id"] for a in mine["approvals"]} >= {first["id"], second["id"]}
    status, none = await api.call("GET", "/approvals", "viewer")
    assert status == 200 and none["approvals"] == []
    status, err = await api.call("GET", f"/approvals/{first['id']}", "viewer")
    assert status == 404
    for bad in ("/approvals?state=nonsense", "/approvals?limit=0"):
        status, err = await api.call("GET", bad, "supervisor")
        assert status == 422, (bad, err)
    for bad_id in ("abc", "１", "99999999999999999999999"):
        status, err = await api.call("POST", f"/approvals/{bad_id}/approve", "supervisor", {})
        assert status == 404, (bad_id, err)


async def test_the_openapi_document_names_the_202_answers(api: Api) -> None:
    async with api.http.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    for path in ("/api/v1/rooms/{room}/account/open", "/api/v1/rooms/{room}/account/refund", "/api/v1/ledger/{entry}/reverse",
                 "/api/v1/rooms/{room}/account/settings"):
        assert "sent for approval" in doc["paths"][path]["post"]["responses"]["202"]["description"], path
    for path in ("/api/v1/approvals", "/api/v1/approvals/{id}", "/api/v1/approvals/{id}/approve", "/api/v1/approvals/{id}/reject"):
        assert path in doc["paths"], path
    assert "`approve`" in doc["paths"]["/api/v1/approvals/{id}/approve"]["post"]["description"]
