"""Tariffs over the JSON API: create, versions, assign, quote (without touching any account)."""

from __future__ import annotations

from typing import Any

from scada.prepaid.engine import PREPAID

from .test_api_accounts import FLAT, Api, api, open_r1  # noqa: F401  (api: the fixture)

TOU = {
    "periods": [{"name": "sharp", "price": "1.2"}, {"name": "peak", "price": "1.0"}, {"name": "flat", "price": "0.6"}, {"name": "valley", "price": "0.3"}],
    "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["11:00", "flat"], ["17:00", "peak"], ["19:00", "sharp"], ["21:00", "flat"], ["23:00", "valley"]]}],
}


async def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    status, got = await api.call("POST", "/tariffs", "engineer", body)
    assert status == 201, got
    return got


async def test_create_list_get_and_bad_definitions(api: Api) -> None:
    got = await create(api, {"id": "TOU", "name": "Residential TOU", "commodity": "electricity", "definition": {"tou": TOU}})
    assert got["kind"] == "tou" and got["current_version"] == 1 and got["unit"] == "kWh"
    status, err = await api.call("POST", "/tariffs", "engineer", {**FLAT, "id": "TOU"})
    assert status == 409 and err["field"] == "id"
    for definition, field, message in (
        ({"price": "-1"}, "definition.price", "must not be negative"),
        ({"price": "0.1234567"}, "definition.price", "at most 6 decimals"),
        ({}, "definition", "exactly one energy price"),
        ({"tou": {**TOU, "seasons": [{"workday": [["01:00", "peak"]]}]}}, "definition.tou", "must be 00:00"),
        ({"tou": {**TOU, "seasons": [{"start": "01-01", "end": "06-30", "workday": [["00:00", "peak"]]}]}}, "definition.tou", "07-01 is in no season"),
        ({"tou": {**TOU, "seasons": [{"workday": [["00:00", "night"]]}]}}, "definition.tou", "unknown period 'night'"),
        ({"price": "0.5", "tiers": {"cycle": "weekly", "blocks": [{}]}}, "definition.tiers.cycle", None),
        ({"price": "0.5", "tiers": {"cycle": "monthly", "blocks": [{"up_to": "100"}]}}, "definition.tiers", "last block"),
        ({"price": "0.5", "colour": "red"}, "definition.colour", None),
    ):
        status, err = await api.call("POST", "/tariffs", "engineer", {"id": "BAD", "name": "x", "commodity": "electricity", "definition": definition})
        assert status == 422, (definition, err)
        assert err["field"] == field, (definition, err)
        if message:
            assert message in err["error"], (definition, err)
    # a JSON number arrives as an exact Decimal: 0.5 is accepted
    status, err = await api.call("POST", "/tariffs", "engineer", raw=b'{"id": "NUM", "name": "x", "commodity": "electricity", "definition": {"price": 0.5}}')
    assert status == 201, err
    status, listed = await api.call("GET", "/tariffs", "viewer")
    assert [t["id"] for t in listed["tariffs"]] == ["NUM", "TOU"]
    status, _ = await api.call("GET", "/tariffs/NOPE", "viewer")
    assert status == 404


async def test_versions_and_assign(api: Api) -> None:
    await open_r1(api)
    await create(api, {"id": "TOU", "name": "TOU", "commodity": "electricity", "definition": {"tou": TOU}})
    status, v = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {"definition": {"price": "0.55"}, "effective_from": "2099-01-01T00:00:00+08:00", "reason": "price notice 12"})
    assert status == 201 and v["version"] == 2 and v["effective_from"] == "2098-12-31T16:00:00+00:00"
    status, err = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {"definition": {"price": "0.55"}, "effective_from": "2001-01-01T00:00:00+00:00"})
    assert status == 422 and err["field"] == "effective_from" and "in the past" in err["error"]
    status, err = await api.call("POST", "/tariffs/FLAT/versions", "engineer", {"definition": {"price": "0.55"}, "effective_from": "2099-01-01T00:00:00"})
    assert status == 422 and err["field"] == "effective_from"
    status, got = await api.call("GET", "/tariffs/FLAT", "viewer")
    assert [x["version"] for x in got["versions"]] == [1, 2] and got["current_version"] == 1
    status, body = await api.call("POST", "/tariffs/TOU/assign", "cashier", {"rooms": ["R1"], "reason": "tenant asked"})
    assert status == 200 and body["accounts"][0]["tariffs"]["electricity"] == "TOU"
    status, err = await api.call("POST", "/tariffs/TOU/assign", "cashier", {"rooms": ["R2"]})
    assert status == 422 and err["field"] == "rooms[0]"
    status, _ = await api.call("POST", "/tariffs/TOU/assign", "viewer", {"rooms": ["R1"]})
    assert status == 403


async def test_quote(api: Api) -> None:
    await create(api, {"id": "TOU", "name": "TOU", "commodity": "electricity", "definition": {"tou": TOU}})
    await create(api, {"id": "TIER", "name": "Tiers", "commodity": "electricity", "definition": {
        "price": "0.56", "tiers": {"cycle": "monthly", "blocks": [{"up_to": "200"}, {"up_to": "400", "adder": "0.05"}, {"adder": "0.30"}]}}})
    await create(api, {"id": "TWO", "name": "Two-part", "commodity": "electricity", "definition": {
        "price": "0.65", "two_part": {"basis": "capacity", "price": "28", "charging": "daily"}}})
    # per period: 10 kWh peak + 5 valley = 10.00 + 1.50
    status, q = await api.call("POST", "/tariffs/TOU/quote", "viewer", {"consumption": {"peak": "10", "valley": "5"}})
    assert status == 200, q
    assert q["total"] == "11.50" and {(ln["period"], ln["amount"]) for ln in q["lines"]} == {("peak", "10"), ("valley", "1.5")}
    # split by time: 07:00-09:00 local, 2 kWh: 1 valley (0.30) + 1 peak (1.00)
    status, q = await api.call("POST", "/tariffs/TOU/quote", "viewer", {"quantity": "2", "start": "2026-03-02T07:00:00+08:00", "end": "2026-03-02T09:00:00+08:00"})
    assert q["total"] == "1.30" and [ln["period"] for ln in q["lines"]] == ["valley", "peak"]
    # tiers: 190 already this month + 220: 123.20 + 10.00 + 3.00
    status, q = await api.call("POST", "/tariffs/TIER/quote", "viewer", {"consumption": {"total": "220"}, "cycle_to_date": "190", "at": "2026-03-20T10:00:00+08:00"})
    assert q["total"] == "136.20" and q["cycle"] == "monthly:2026-03"
    # two-part: 315 kVA × 28 = 8820.00 a month; 3 days of a 31-day month: 284.52 + 284.51 + 284.52
    status, q = await api.call("POST", "/tariffs/TWO/quote", "viewer", {"capacity_kva": "315", "days": 3, "at": "2026-03-15T00:00:00+08:00"})
    assert q["fixed"][0]["monthly"] == "8820" and q["fixed"][0]["amount"] == "853.55" and q["total"] == "853.55"
    status, q = await api.call("POST", "/tariffs/TWO/quote", "viewer", {"consumption": {"total": "100"}, "capacity_kva": "315"})
    assert q["total"] == "8885.00"
    for body, field in (
        ({"consumption": {"shoulder": "1"}}, "consumption.shoulder"),
        ({"consumption": {"peak": "-1"}}, "consumption.peak"),
        ({}, "consumption"),
        ({"quantity": "1", "start": "2026-03-02T09:00:00+08:00", "end": "2026-03-02T07:00:00+08:00"}, "end"),
        ({"demand_kw": "5"}, "demand_kw"),
    ):
        status, err = await api.call("POST", "/tariffs/TOU/quote" if "demand_kw" not in body else "/tariffs/TWO/quote", "viewer", body)
        assert status == 422 and err["field"] == field, (body, err)
    # nothing was billed or changed anywhere
    assert await api.rt.ctx[PREPAID].accounts.open_accounts() == []
