"""Every write endpoint of the OpenAPI document, swept with the requests nobody may get through:
no credentials, a role without the permission, the page session without its CSRF header, and
bodies that are not JSON, not an object, or carry an unknown field. Each is answered with the
right status and a JSON message naming the problem, and nothing in the database changes.

The endpoints come from the served OpenAPI document, so a write endpoint added later is
swept without touching this test."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import aiohttp
from sqlalchemy import text

from scada.db.component import DATABASE
from scada.users.auth import ROLE_PERMISSIONS, Permission, Role

from .conftest import (
    ADMIN_PASSWORD,
    PASSWORDS,
    ROLES,
    Hmi,
    browser_like,
    login,
    open_accounts,
)

WRITE_METHODS = ("post", "put", "patch", "delete")
PERMISSION = re.compile(r"Requires the permission `([a-z_]+)`")
# path parameters filled with things that exist in the demo (the refusals come before any lookup)
PARAMS = {"room": "B1-R101", "meter": "E-B1-101", "name": "viewer1", "entry": "1", "id": "flat-e", "alarm_id": "1", "order": "1",
          "rule": "1"}

# What only a write through the API changes. The poller, the deduction engine and the alarm
# engine change other rows by themselves while the demo runs (readings, deductions, alarms).
FINGERPRINT = {
    "users": "SELECT name, role, active, language, email, password_hash FROM users ORDER BY name",
    "api_tokens": "SELECT id, user_id, revoked_at FROM api_tokens ORDER BY id",
    "rooms": "SELECT * FROM rooms ORDER BY id",
    "meters": "SELECT * FROM meters ORDER BY id",
    "tariffs": "SELECT * FROM prepaid_tariffs ORDER BY id",
    "tariff_versions": "SELECT * FROM prepaid_tariff_versions ORDER BY id",
    "accounts": "SELECT id, room_id, state, electricity_tariff_id, water_tariff_id, contact_name, credit_limit_minor,"
                " thresholds, protected, friendly_credit, auto_reconnect, emergency_credit_minor FROM prepaid_accounts ORDER BY id",
    "ledger": "SELECT id, kind, amount_minor, actor, reference FROM prepaid_ledger WHERE kind <> 'deduction' ORDER BY id",
    "commands": "SELECT * FROM commands ORDER BY 1",
    "out_of_service": "SELECT * FROM alarm_out_of_service ORDER BY 1",
    "acknowledged": "SELECT id, acked_by FROM alarms WHERE acked_by IS NOT NULL ORDER BY id",
    "shelved": "SELECT id, shelved_by FROM alarms WHERE shelved_by IS NOT NULL ORDER BY id",
    "customers": "SELECT * FROM billing_customers ORDER BY id",
    "account_billing": "SELECT * FROM billing_account_settings ORDER BY account_id",
    "charge_rules": "SELECT * FROM billing_charge_rules ORDER BY id",
    "bills": "SELECT id, status, paid_minor, credited_minor FROM billing_bills ORDER BY id",
    "payments": "SELECT * FROM billing_payments ORDER BY id",
    "credit_notes": "SELECT id, state FROM billing_credit_notes ORDER BY id",
    "adjustments": "SELECT id, state FROM billing_adjustments ORDER BY id",
    "confirmed": "SELECT id, confirmed_by FROM alarms WHERE confirmed_by IS NOT NULL ORDER BY id",
    "commented": "SELECT id, comment_by, comment FROM alarms WHERE comment_by IS NOT NULL ORDER BY id",
    "meter_parents": "SELECT * FROM meter_parents ORDER BY id",
    "manual_readings": "SELECT * FROM topology_readings ORDER BY id",
    "apportionment_rules": "SELECT * FROM topology_rules ORDER BY id",
    "apportionment_runs": "SELECT * FROM topology_runs ORDER BY id",
    "approvals": "SELECT id, state, decided_by FROM approval_requests ORDER BY id",
    "payment_orders": "SELECT id, state, transaction_id FROM payment_orders ORDER BY id",
    "reconciliations": "SELECT id FROM payment_reconciliations ORDER BY id",
}


async def _fingerprint(hmi: Hmi) -> dict[str, str]:
    out = {}
    async with hmi.rt.ctx[DATABASE].transaction() as s:
        for name, sql in FINGERPRINT.items():
            rows = (await s.execute(text(sql))).all()
            out[name] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()[:16]}"
    return out


def _lacking(permission: Permission) -> str | None:
    """A test user whose role lacks the permission."""
    for user, role in ROLES.items():
        if permission not in ROLE_PERMISSIONS[Role(role)]:
            return user
    return None


async def _bearer(http: aiohttp.ClientSession, api: str, user: str, password: str) -> dict[str, str]:
    async with http.post(api + "/auth/token", json={"user": user, "password": password}) as r:
        assert r.status == 200, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def _json_error(r: aiohttp.ClientResponse, case: str) -> dict[str, Any]:
    assert r.content_type == "application/json", (case, r.content_type, await r.text())
    body = await r.json()
    assert isinstance(body.get("error"), str) and body["error"], (case, body)
    return body


async def test_every_write_endpoint_refuses_what_it_must_and_changes_nothing(hmi: Hmi) -> None:
    await open_accounts(hmi, {"B1-R101": "50.00"})
    async with aiohttp.ClientSession() as http, browser_like() as web:
        async with http.get(hmi.api + "/openapi.json") as r:
            assert r.status == 200
            document = await r.json()
        admin = await _bearer(http, hmi.api, "admin", ADMIN_PASSWORD)
        tokens = {user: await _bearer(http, hmi.api, user, PASSWORDS[user]) for user in ROLES}
        await login(web, hmi.url, "admin")  # a page session, used without its CSRF header
        endpoints = [
            (method.upper(), path, op)
            for path, ops in document["paths"].items()
            for method, op in ops.items()
            if method in WRITE_METHODS and "security" in op
        ]
        assert len(endpoints) >= 25, [p for _, p, _ in endpoints]  # the sweep really covers the API
        before = await _fingerprint(hmi)
        swept = 0
        for method, path, op in endpoints:
            url = hmi.url + re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
            case = f"{method} {path}"
            async with http.request(method, url, json={}) as r:
                assert r.status == 401, (case, await r.text())
                assert "authentication required" in (await _json_error(r, case))["error"], case
            async with http.request(method, url, json={}, headers={"Authorization": "Bearer not-a-token"}) as r:
                assert r.status == 401, (case, await r.text())
                await _json_error(r, case)
            match = PERMISSION.search(op.get("description", ""))
            assert match, f"{case}: the document does not say which permission it needs"
            permission = Permission(match.group(1))
            user = _lacking(permission)
            if user is not None:
                async with http.request(method, url, json={}, headers=tokens[user]) as r:
                    assert r.status == 403, (case, user, await r.text())
                    assert f"may not {permission.value}" in (await _json_error(r, case))["error"], (case, user)
            async with web.request(method, url, json={}) as r:
                assert r.status == 403, (case, await r.text())
                assert "CSRF" in (await _json_error(r, case))["error"], case
            if "requestBody" in op:
                async with http.request(method, url, data=b'{"reason": ', headers={**admin, "Content-Type": "application/json"}) as r:
                    assert r.status == 400, (case, await r.text())
                    assert "JSON" in (await _json_error(r, case))["error"], case
                async with http.request(method, url, json=["not", "an", "object"], headers=admin) as r:
                    assert r.status in (400, 422), (case, await r.text())
                    await _json_error(r, case)
                async with http.request(method, url, json={"<script>": "'; DROP TABLE users; --"}, headers=admin) as r:
                    assert r.status in (404, 422), (case, await r.text())
                    body = await _json_error(r, case)
                    assert body.get("field"), (case, body)  # the offending field (or the unknown path object) is named
            swept += 1
        assert swept == len(endpoints)
        assert await _fingerprint(hmi) == before
