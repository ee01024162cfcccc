"""The meter tree and manual readings through the JSON API: ``GET /meters``, ``PUT
/meters/{meter}`` (parent, audited, effective-dated), ``POST /meters/{meter}/readings`` (a reading
that goes backwards or implies more than the meter's maximum power is a 4xx naming why, and
nothing is stored), the CSV import's dry run, and a manual tenant meter billed like a polled one."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from historian import IntervalRecord
from historian.rollup import day_rollups
from hmi.component import HMI_URL
from scada.config import CONFIG
from scada.core.runtime import Runtime
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import HISTORY
from scada.prepaid.engine import PREPAID
from scada.prepaid.models import LedgerEntry
from scada.site.component import ASSETS
from scada.topology.models import ManualReading
from scada.users.audit import Actor
from scada.users.component import USERS
from scada.users.models import AuditEntry

from ..harness import passwords_hashed_once, running_server, server_config
from ..scada.topology.site import SITE
from ..services import free_port
from ..simulation import until
from .conftest import browser_like, login

ROLES = {"engineer": "engineer", "maint": "maintenance", "viewer": "viewer", "cashier": "cashier"}


@dataclass
class Api:
    base: str
    rt: Runtime
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(self, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        async with self.http.request(method, self.base + path, headers=headers, json=body) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    (tmp_path / "site.toml").write_text(SITE)
    config = server_config(tmp_path, migrated_db_url, f"""
[[links]]
name = "gw"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.2

[prepaid.friendly_credit]
windows = []
weekends = false

[alarms]
enabled = false

# the link is down: the supply commands an account's opening sends fail, and the teardown waits
# for them (two retries after 2 and 4 s by default)
[commands]
backoff_s = 0.1
""")
    config = config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})
    async with running_server(config) as rt:
        with passwords_hashed_once():
            for name, role in ROLES.items():
                await rt.ctx[USERS].add(name, role, f"{name}-password", Actor("t", "cli"))
        async with aiohttp.ClientSession() as http:
            base = rt.ctx[HMI_URL] + "/api/v1"
            tokens = {}
            for name in ROLES:
                async with http.post(base + "/auth/token", json={"user": name, "password": f"{name}-password"}) as r:
                    tokens[name] = (await r.json())["token"]
            yield Api(base, rt, http, tokens)
        await rt.ctx[PREPAID].supply.idle()


def iso(t: dt.datetime) -> str:
    return t.isoformat()


async def test_meters_parents_and_manual_readings(api: Api) -> None:
    status, body = await api.call("GET", "/meters", "viewer")
    assert status == 200
    meters = {m["id"]: m for m in body["meters"]}
    assert set(meters) == {"U", "S1", "S2", "E1", "E2", "C1", "E3", "E4", "E5", "W1", "V"}
    assert {k: meters["U"][k] for k in ("kind", "role", "room", "parent", "state", "manual")} == {
        "kind": "electricity", "role": "utility", "room": None, "parent": None, "state": "manual", "manual": True,
    }
    assert meters["U"]["children"] == ["S1", "S2"]
    assert (meters["E1"]["role"], meters["E1"]["room"], meters["E1"]["parent"]) == ("tenant", "R1", "S1")
    assert meters["E1"]["state"] in ("unknown", "offline")  # nothing answers on its link
    assert (meters["V"]["role"], meters["V"]["state"], meters["V"]["formula"]) == ("virtual", "virtual", "S1 + S2")
    assert (meters["W1"]["kind"], meters["W1"]["state"]) == ("water", "manual")
    status, body = await api.call("GET", "/meters?role=tenant&building=B&kind=electricity", "viewer")
    assert status == 200 and [m["id"] for m in body["meters"]] == ["E1", "E2", "E3", "E4", "E5"]
    status, body = await api.call("GET", "/meters?role=landlord", "viewer")
    assert status == 422 and body["field"] == "role"

    # re-parenting: audited, from now on; the past keeps its tree
    before = dt.datetime.now(dt.UTC)
    status, body = await api.call("PUT", "/meters/E5", "viewer", {"parent": "S1"})
    assert status == 403
    status, body = await api.call("PUT", "/meters/E5", "engineer", {"parent": "S1", "reason": "rewired to feeder 1"})
    assert status == 200, body
    assert body["parent"] == "S1" and dt.datetime.fromisoformat(body["parent_since"]) >= before
    tree = api.rt.ctx[ASSETS].snapshot.tree
    assert tree.parent_at("E5", before - dt.timedelta(seconds=1)) == "S2" and tree.parent_at("E5", dt.datetime.now(dt.UTC)) == "S1"
    async with api.rt.ctx[DATABASE].sessions() as s:
        audit = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "meter.parent"))).all()
    assert [(a.actor, a.target_id, a.reason, a.before, a.after["parent"]) for a in audit] == [
        ("engineer", "E5", "rewired to feeder 1", {"parent": "S2"}, "S1"),
    ]
    for body, field, why in (
        ({"parent": "E1"}, "parent", "loop"),  # S1 below E1, while E1 hangs below S1
        ({"parent": "W1"}, "parent", "measures water"),
        ({"parent": "X9"}, "parent", "unknown meter"),
        ({"parent": "S2", "from": "2020-01-01T00:00:00+08:00"}, "from", "at or after its last change"),
    ):
        target = "S1" if body["parent"] == "E1" else "E5"
        status, got = await api.call("PUT", f"/meters/{target}", "engineer", body)
        assert status == 422 and got["field"] == field and why in got["error"], got
    status, got = await api.call("PUT", "/meters/S1", "engineer", {"parent": None, "reason": "test"})
    assert status == 200 and got["parent"] is None

    # manual readings of the utility meter
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
    status, got = await api.call("POST", "/meters/U/readings", "viewer", {"value": "1000", "ts": iso(t0), "reason": "r"})
    assert status == 403
    status, got = await api.call("POST", "/meters/U/readings", "maint", {"value": "1000.00", "ts": iso(t0), "reason": "monthly round"})
    assert status == 201, got
    assert got["source"] == "manual" and got["entered_by"] == "maint" and got["value"] == "1000"
    cases = [
        ({"value": "999.9", "ts": iso(t0 + dt.timedelta(days=1)), "reason": "x"}, 422, "value", "goes backwards from 1000 "),
        ({"value": "20000", "ts": iso(t0 + dt.timedelta(days=1)), "reason": "x"}, 422, "value", "more than the meter's maximum 400 kW"),
        ({"value": "1e400", "ts": iso(t0 + dt.timedelta(days=1)), "reason": "x"}, 422, "value", "too large"),
        ({"value": 1001.5, "ts": iso(t0 + dt.timedelta(days=1)), "reason": "x"}, 201, None, ""),  # a JSON number is read exactly
        ({"value": "1002", "ts": "yesterday", "reason": "x"}, 422, "ts", "not a time"),
        ({"value": "1002", "ts": iso(t0 + dt.timedelta(days=1, hours=1))}, 422, "reason", "missing"),
    ]
    for payload, status_wanted, field, why in cases:
        status, got = await api.call("POST", "/meters/U/readings", "maint", payload)
        assert status == status_wanted and (field is None or (got["field"] == field and why in got["error"])), (payload, got)
    status, got = await api.call("POST", "/meters/E1/readings", "maint", {"value": "1", "ts": iso(t0), "reason": "x"})
    assert status == 409 and "is polled" in got["error"]
    status, got = await api.call("POST", "/meters/nope/readings", "maint", {"value": "1", "ts": iso(t0), "reason": "x"})
    assert status == 404 and got["field"] == "meter"
    async with api.rt.ctx[DATABASE].sessions() as s:
        stored = (await s.scalars(select(ManualReading).order_by(ManualReading.ts))).all()
    assert [format(r.value.normalize(), "f") for r in stored] == ["1000", "1001.5"]
    status, got = await api.call("GET", "/meters/U/readings", "viewer")
    assert status == 200 and [r["value"] for r in got["readings"]] == ["1001.5", "1000"]
    tv = api.rt.ctx[TAGDB].read("U.energy_total")
    assert tv.value == 1001.5 and tv.source_ts == t0 + dt.timedelta(days=1) and tv.detail == "source=manual"

    # the CSV import's dry run names every bad row
    csv = f"meter,ts,value\nU,{iso(t0 + dt.timedelta(days=1, hours=6))},900\nE2,{iso(t0)},1\nU,{iso(t0 + dt.timedelta(days=1, hours=7))},1010\n"
    status, got = await api.call("POST", "/readings/import", "maint", {"csv": csv, "dry_run": True})
    assert status == 200 and [(p["line"], p["column"]) for p in got["problems"]] == [(2, "value"), (3, "meter")]
    status, got = await api.call("POST", "/readings/import", "maint", {"csv": csv})
    assert status == 422 and got["field"] == "csv" and got["stored"] == 0 and len(got["problems"]) == 2

    # losses: one row per meter with children; unknown without history; CSV; bad ranges named
    day = (t0 + dt.timedelta(days=1)).date()
    status, got = await api.call("GET", f"/losses?from={day}&to={day + dt.timedelta(days=1)}", "viewer")
    assert status == 200, got
    rows = {r["meter"]: r for r in got["losses"]}
    assert set(rows) == {"U", "S1", "S2"} and rows["U"]["loss"] is None and rows["U"]["unit"] == "kWh"
    assert [c["meter"] for c in rows["S2"]["children"]] == ["E3", "E4", "E5"]  # E5 moved to S1 only today
    status, got = await api.call("GET", f"/losses?from={day}&to={day + dt.timedelta(days=2)}&meter=U&by=day", "viewer")
    assert status == 200 and [r["from"][:10] for r in got["losses"]] == [str(day), str(day + dt.timedelta(days=1))]
    async with api.http.get(api.base + f"/losses?from={day}&to={day + dt.timedelta(days=1)}&format=csv",
                            headers={"Authorization": f"Bearer {api.tokens['viewer']}"}) as r:
        text = await r.text()
        assert r.status == 200 and r.content_type == "text/csv"
    assert text.splitlines()[0] == "meter,from,to,unit,consumption,children_consumption,loss,loss_pct,estimated"
    for query, field in ((f"from={day}&to={day}", "to"), (f"from={day}&to=2099-01-01", "to"), ("from=soon&to=later", "from"),
                         (f"from={day}&to={day + dt.timedelta(days=1)}&meter=X9", "meter")):
        status, got = await api.call("GET", f"/losses?{query}", "viewer")
        assert status in (404, 422) and got["field"] == field, (query, got)

    # a room shows its area
    status, got = await api.call("GET", "/rooms/R2", "viewer")
    assert status == 200 and Decimal(got["area_m2"]) == Decimal("45.5")


async def test_manual_water_meter_is_billed_like_a_polled_one(api: Api) -> None:
    for tariff in ({"id": "W", "name": "Water", "commodity": "water", "definition": {"price": "3.50"}},
                   {"id": "E", "name": "Power", "commodity": "electricity", "definition": {"price": "0.60"}}):
        status, body = await api.call("POST", "/tariffs", "engineer", tariff)
        assert status == 201, body
    status, body = await api.call("POST", "/rooms/R1/account/open", "cashier", {"tariffs": {"water": "W", "electricity": "E"}})
    assert status == 201, body
    status, body = await api.call("POST", "/rooms/R1/account/recharge", "cashier", {"amount": "100.00", "reference": "R1-1"})
    assert status in (200, 201), body
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    for value, hours in (("12.50", 0), ("14.50", 1)):  # the first is the baseline; then 2 m³ at 3.50
        status, got = await api.call("POST", "/meters/W1/readings", "maint", {"value": value, "ts": iso(t0 + dt.timedelta(hours=hours)), "reason": "round"})
        assert status == 201, got
    engine = api.rt.ctx[PREPAID]
    await until(lambda: engine.views["R1"].balance_minor == 9300, timeout=10, what="the manual reading billed")
    async with api.rt.ctx[DATABASE].sessions() as s:
        entries = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "deduction"))).all()
    assert [(e.meter_id, e.amount_minor, e.quantity) for e in entries] == [("W1", -700, entries[0].quantity)]
    assert entries[0].quantity == 2 and entries[0].reading_ts == t0 + dt.timedelta(hours=1)
    await asyncio.sleep(0)


async def test_odd_input_is_refused_naming_the_field_and_stores_nothing(api: Api) -> None:
    """The topology's bodies take the API's bounded inputs: control characters in free text,
    non-ASCII or oversized decimals, times outside 1970–2200 or without an offset, ids beyond
    64 bits and malformed periods are 4xx naming the field, and nothing is stored."""
    from scada.site.models import MeterParent
    from scada.topology.models import ApportionmentRule, ApportionmentRun

    async def counts() -> tuple[int, ...]:
        async with api.rt.ctx[DATABASE].sessions() as s:
            return tuple([len((await s.scalars(select(t))).all()) for t in (ManualReading, MeterParent, ApportionmentRule, ApportionmentRun)])

    before = await counts()
    ts = iso(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1))
    rule = {"name": "common", "source": "C1", "method": "area", "targets": {"floor": "F1"}, "pricing": {"price": "0.85"},
            "settle": "balance", "schedule": "monthly"}
    cases: list[tuple[str, str, str, Any, int, str, str]] = [
        ("POST", "/meters/U/readings", "maint", {"value": "1000", "ts": ts, "reason": "round\x00"}, 422, "reason", "control character"),
        ("POST", "/meters/U/readings", "maint", {"value": "１０００", "ts": ts, "reason": "round"}, 422, "value", "ASCII digits"),
        ("POST", "/meters/U/readings", "maint", {"value": "1" * 30, "ts": ts, "reason": "round"}, 422, "value", "too large"),
        ("POST", "/meters/U/readings", "maint", {"value": "NaN", "ts": ts, "reason": "round"}, 422, "value", "finite"),
        ("POST", "/meters/U/readings", "maint", {"value": "1000", "ts": "0001-01-01T00:00:00+14:00", "reason": "r"}, 422, "ts", "1970"),
        ("POST", "/meters/U/readings", "maint", {"value": "1000", "ts": "2999-01-01 00:00", "reason": "r"}, 422, "ts", "2200"),
        ("PUT", "/meters/E5", "engineer", {"parent": "S1", "from": "2026-11-01T00:00:00"}, 422, "from", "timezone"),
        ("PUT", "/meters/E5", "engineer", {"parent": "S1", "from": "1900-01-01T00:00:00+08:00"}, 422, "from", "1970"),
        ("PUT", "/meters/E5", "engineer", {"parent": "S1", "reason": "\x1b[31mred"}, 422, "reason", "control character"),
        ("PUT", "/meters/E5", "engineer", {"parent": "../S1"}, 422, "parent", "pattern"),
        ("POST", "/readings/import", "maint", {"csv": f"meter,ts,value\nU,{ts},1000\x07\n"}, 422, "csv", "control character"),
        ("POST", "/apportionment/rules", "engineer", {**rule, "name": "bell\x07"}, 422, "name", "control character"),
        ("POST", "/apportionment/rules", "engineer", {**rule, "pricing": {"price": "1e999"}}, 422, "pricing", "price"),
        ("POST", "/apportionment/rules", "engineer", {**rule, "method": "ratio", "weights": {"R1": "Infinity", "R2": "1"}}, 422, "weights.R1", "finite"),
        ("PUT", "/apportionment/rules/99999999999999999999", "engineer", {"active": False}, 404, "rule", "unknown rule"),
        ("PUT", "/apportionment/rules/1x", "engineer", {"active": False}, 404, "rule", "unknown rule"),
        ("POST", "/apportionment/runs", "cashier", {"rule": 2**70, "period": "2026-11"}, 422, "rule", "less than or equal"),
        ("POST", "/apportionment/runs", "cashier", {"rule": 1, "period": "2026-11; x"}, 422, "period", "pattern"),
        ("POST", "/apportionment/preview", "viewer", {"rule": 1, "from": "0001-01-01", "to": "2026-11-01"}, 422, "from", "1970"),
    ]
    for method, path, user, body, status_wanted, field, why in cases:
        status, got = await api.call(method, path, user, body)
        assert status == status_wanted and got.get("field") == field and why in got["error"], (path, body, got)
    assert await counts() == before


class _Tree(HTMLParser):
    """The meter tree page's nodes: meter -> (parent, {"consumption": text, "loss": text})."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, tuple[str | None, dict[str, str]]] = {}
        self._stack: list[str] = []  # the open <li data-meter> elements of the tree
        self._field: str | None = None
        self._in_tree = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "ul" and "meter-tree" in (a.get("class") or "").split():
            self._in_tree += 1
        elif tag == "ul" and self._in_tree:
            self._in_tree += 1
        if tag == "li" and self._in_tree and a.get("data-meter"):
            meter = a["data-meter"] or ""
            self.nodes[meter] = (self._stack[-1] if self._stack else None, {})
            self._stack.append(meter)
        elif tag == "li" and self._in_tree:
            self._stack.append("")
        if tag == "span" and self._stack and a.get("data-f"):
            self._field = a["data-f"]
            self.nodes[self._stack[-1]][1][self._field] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul" and self._in_tree:
            self._in_tree -= 1
        elif tag == "li" and self._stack:
            self._stack.pop()
        elif tag == "span":
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None and self._stack:
            fields = self.nodes[self._stack[-1]][1]
            fields[self._field] = " ".join((fields[self._field] + data).split())


async def test_meter_tree_page_shows_each_nodes_consumption_and_loss_for_a_period(api: Api) -> None:
    """One day of history below the utility meter U (read by hand: 1000.00, then 1027.00 a day
    later): the tree page for that day shows every node's consumption and each parent's loss,
    the numbers of tests/scada/topology/test_losses.py worked by hand. Then the rooms hang below
    the virtual meter V = S1 + S2 (both feeders together) from that day on: V is a node of the
    tree with its loss, 25.44 − 24.00 = 1.44 kWh = 5.66 %, and its children below it."""
    tz = api.rt.ctx[CONFIG].site.tz
    day = dt.datetime.now(tz).date() - dt.timedelta(days=3)
    t0 = dt.datetime.combine(day, dt.time(), tz)
    per_quarter = {"E1": "0.05", "E2": "0.10", "C1": "0.02", "E3": "0.03", "E4": "0.04", "E5": "0.01", "S1": "0.18", "S2": "0.085"}
    start = int(t0.timestamp())
    records = [
        IntervalRecord(meter, start + 900 * k, 900, {"energy_total": int(Decimal(kwh) * 1_000_000), "samples": 1, "good_samples": 1,
                                                      "flag_gap": 0, "flag_reset": 0, "flag_first": 0})
        for k in range(96) for meter, kwh in per_quarter.items()
    ]
    backend = api.rt.ctx[HISTORY].historian.backend
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, tz))
    for value, ts in (("1000.00", t0), ("1027.00", t0 + dt.timedelta(days=1))):
        status, got = await api.call("POST", "/meters/U/readings", "maint", {"value": value, "ts": iso(ts), "reason": "round"})
        assert status == 201, got
    page = api.base.removesuffix("/api/v1") + f"/meters?from={day}&to={day + dt.timedelta(days=1)}"

    async def tree() -> dict[str, tuple[str | None, dict[str, str]]]:
        async with browser_like() as http:
            await login(http, api.base.removesuffix("/api/v1"), "viewer", "viewer-password")
            async with http.get(page) as r:
                assert r.status == 200
                parser = _Tree()
                parser.feed(await r.text())
                return parser.nodes

    nodes = await tree()
    assert {m: (parent, f.get("consumption"), f.get("loss")) for m, (parent, f) in nodes.items()} == {
        "U": (None, "27 kWh", "loss: 1.56 kWh (5.78 %)"),
        "S1": ("U", "17.28 kWh", "loss: 0.96 kWh (5.56 %)"),
        "E1": ("S1", "4.8 kWh", None), "E2": ("S1", "9.6 kWh", None), "C1": ("S1", "1.92 kWh", None),
        "S2": ("U", "8.16 kWh", "loss: 0.48 kWh (5.88 %)"),
        "E3": ("S2", "2.88 kWh", None), "E4": ("S2", "3.84 kWh", None), "E5": ("S2", "0.96 kWh", None),
        "W1": (None, "—", None),  # R1's water meter, read by hand: no readings in the period
    }

    # the rooms below the virtual meter of both feeders, from the start of that day
    for meter in ("E1", "E2", "C1", "E3", "E4", "E5"):
        status, got = await api.call("PUT", f"/meters/{meter}", "engineer", {"parent": "V", "from": iso(t0), "reason": "total feeder loss"})
        assert status == 200, got
    status, got = await api.call("GET", f"/losses?from={day}&to={day + dt.timedelta(days=1)}&meter=V", "viewer")
    assert status == 200, got
    [row] = got["losses"]
    assert {k: row[k] for k in ("meter", "consumption", "children_consumption", "loss", "loss_pct")} == {
        "meter": "V", "consumption": "25.44", "children_consumption": "24.00", "loss": "1.44", "loss_pct": "5.66",
    }
    nodes = await tree()
    assert {m: (parent, f.get("consumption"), f.get("loss")) for m, (parent, f) in nodes.items()} == {
        "U": (None, "27 kWh", "loss: 1.56 kWh (5.78 %)"),
        "S1": ("U", "17.28 kWh", None), "S2": ("U", "8.16 kWh", None),
        "V": (None, "25.44 kWh", "loss: 1.44 kWh (5.66 %)"),
        "E1": ("V", "4.8 kWh", None), "E2": ("V", "9.6 kWh", None), "C1": ("V", "1.92 kWh", None),
        "E3": ("V", "2.88 kWh", None), "E4": ("V", "3.84 kWh", None), "E5": ("V", "0.96 kWh", None),
        "W1": (None, "—", None),
    }
