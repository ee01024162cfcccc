"""End to end on the simulator, through the whole server and the API: the common meter's
consumption over a simulated month is apportioned by area; the sum posted to the rooms equals
the common meter's consumption times its price. A second rule settled on the bill: the month's
billing run posts its shares once, as lines of each room's bill, printed in zh-CN and en. On
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from hmi.component import HMI_URL
from scada.billing.service import BILLING_SERVICE
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import HISTORY
from scada.prepaid.models import LedgerEntry
from scada.prepaid.reconcile import reconcile
from scada.simulator.component import SIMULATOR
from scada.topology.service import TOPOLOGY
from scada.users.audit import Actor
from scada.users.component import USERS

from ...harness import passwords_hashed_once, running_server, server_config
from ...services import free_port
from ...simulation import Control, until
from .conftest import TZ

pytestmark = pytest.mark.slow

SITE = """
[site]
id = "e2e"
name = "E2E"
timezone = "Asia/Shanghai"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F1"
[[rooms]]
id = "R1"
floor = "F"
name = "R1"
area_m2 = "30"
[[rooms]]
id = "R2"
floor = "F"
name = "R2"
area_m2 = "20"
[[rooms]]
id = "R3"
floor = "F"
name = "R3"
area_m2 = "50"
[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
[[meters]]
id = "E2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2
[[meters]]
id = "E3"
kind = "electricity"
room = "R3"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 3
[[meters]]
id = "C"
kind = "electricity"
role = "common"
building = "B"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 4
"""


def config(tmp_path: Path, db_url: str) -> Any:
    (tmp_path / "site.toml").write_text(SITE)
    cfg = server_config(tmp_path, db_url, f"""
[runtime]
data_dir = "{tmp_path}"
[[links]]
name = "gw"
host = "127.0.0.1"
port = {free_port()}
timeout_s = 0.5
[simulator]
enabled = true
control_port = 0
speed = 0            # the test moves simulated time itself
[modbus]
poll_intervals = {{ fast = 0.3, energy = 0.3 }}
start_spread = 0
[alarms]
enabled = false
[historian]
interval_min = 1
close_delay_s = 0
[prepaid]
jump_margin = "100000"
[prepaid.friendly_credit]
windows = []
weekends = false
[topology.apportionment]
auto_run = false
""")
    return cfg.model_copy(update={"site": cfg.site.model_copy(update={"import_file": "site.toml"})})


async def test_common_meter_month_apportioned_by_area(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with running_server(config(tmp_path, migrated_db_url)) as rt, aiohttp.ClientSession() as http:
        tagdb, topology = rt.ctx[TAGDB], rt.ctx[TOPOLOGY]
        control = Control.of(http, rt.ctx[SIMULATOR])
        with passwords_hashed_once():
            for name, role in (("eng", "engineer"), ("cash", "cashier"), ("view", "viewer")):
                await rt.ctx[USERS].add(name, role, f"{name}-password", Actor("t", "cli"))
        base = rt.ctx[HMI_URL] + "/api/v1"
        headers = {}
        for name in ("eng", "cash", "view"):
            async with http.post(base + "/auth/token", json={"user": name, "password": f"{name}-password"}) as r:
                headers[name] = {"Authorization": f"Bearer {(await r.json())['token']}"}

        async def call(method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, base + path, json=body, headers=headers[user]) as r:
                return r.status, await r.json()

        status, got = await call("POST", "/tariffs", "eng", {"id": "FLAT", "name": "Flat", "commodity": "electricity", "definition": {"price": "0.60"}})
        assert status == 201, got
        for room in ("R1", "R2", "R3"):
            # opened without a balance (an opening balance waits for a second user), then recharged
            status, got = await call("POST", f"/rooms/{room}/account/open", "cash", {"tariffs": {"electricity": "FLAT"}})
            assert status == 201, got
            status, got = await call("POST", f"/rooms/{room}/account/recharge", "cash", {"amount": "500.00", "reference": f"OPEN-{room}"})
            assert status in (200, 201), got
        rule_body = {"name": "Common area by area", "source": "C", "method": "area", "targets": {"floor": "F"},
                     "pricing": {"price": "0.85"}, "settle": "balance", "schedule": "monthly"}
        status, got = await call("POST", "/apportionment/rules", "cash", rule_body)
        assert status == 403
        for bad, field in (({**rule_body, "method": "by_luck"}, "method"), ({**rule_body, "pricing": {"price": "-1"}}, "pricing"),
                           ({**rule_body, "targets": {"floor": "F", "building": "B"}}, "targets"), ({**rule_body, "source": "X9"}, "source")):
            status, got = await call("POST", "/apportionment/rules", "eng", bad)
            assert status == 422 and got["field"] == field, (bad, got)
        status, rule = await call("POST", "/apportionment/rules", "eng", rule_body)
        assert status == 201, rule
        status, got = await call("POST", "/apportionment/rules", "eng", rule_body)
        assert status == 409 and got["field"] == "name"

        for meter in ("E1", "E2", "E3"):
            await control.load(meter, kw=0.0)
        await control.load("C", kw=3.0)
        await until(lambda: all(tagdb.read(f"{m}.energy_total").good for m in ("C", "E1", "E2", "E3")), timeout=15, what="first readings")
        month = dt.datetime.now(TZ).strftime("%Y-%m")
        first = tagdb.read("C.energy_total").value
        # a simulated month at 3 kW: 2160 kWh, polled as it grows
        for _ in range(6):
            before = tagdb.read("C.energy_total").value
            await control.advance(5 * 86_400)
            await until(lambda before=before: tagdb.read("C.energy_total").value != before, timeout=10, what="the register moved")
        await asyncio.sleep(0.5)  # the polls after the last step: the register stands still
        last = tagdb.read("C.energy_total").value
        consumed = Decimal(str(last)) - Decimal(str(first))
        assert abs(consumed - Decimal("2160")) <= Decimal("0.02"), consumed  # 3 kW for 30 days, in 0.01 kWh steps
        price_total = (consumed * Decimal("0.85")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        # close the historian's intervals now (the test cannot wait for the minute to end)
        await rt.ctx[HISTORY].historian.close_due(time.time() + 120)
        start = dt.datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=TZ)
        following = (start + dt.timedelta(days=32)).replace(day=1)

        async def source_quantity() -> Decimal | None:
            return (await topology.usage("C", start, following)).quantity

        for _ in range(100):
            if await source_quantity() == consumed:
                break
            await asyncio.sleep(0.1)
        assert await source_quantity() == consumed

        # preview over the API, then the month is over: run it
        status, preview = await call("POST", "/apportionment/preview", "view", {"rule": rule["id"], "from": str(start.date()), "to": str(following.date())})
        assert status == 200, preview
        assert Decimal(preview["quantity"]) == consumed and Decimal(preview["total"]) == price_total
        quantities = {s["room"]: Decimal(s["quantity"]) for s in preview["shares"]}
        assert sum(quantities.values()) == consumed and abs(quantities["R3"] - consumed / 2) <= Decimal("0.01")
        status, got = await call("POST", "/apportionment/runs", "cash", {"rule": rule["id"], "period": month})
        assert status == 409 and "has not ended" in got["error"]
        topology.clock = lambda: following + dt.timedelta(hours=2)
        status, got = await call("POST", "/apportionment/runs", "view", {"rule": rule["id"], "period": month})
        assert status == 403
        status, run = await call("POST", "/apportionment/runs", "cash", {"rule": rule["id"], "period": month})
        assert status == 201 and not run["replayed"], run
        async with rt.ctx[DATABASE].sessions() as s:
            entries = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment"))).all()
        posted = -sum(e.amount_minor for e in entries)
        assert posted == int(price_total * 100)  # the common meter's consumption × its price, to the fen
        by_account = sorted(-e.amount_minor for e in entries)
        assert [round(Decimal(a) / posted, 3) for a in by_account] == [Decimal("0.2"), Decimal("0.3"), Decimal("0.5")]  # 20 : 30 : 50 m²
        status, again = await call("POST", "/apportionment/runs", "cash", {"rule": rule["id"], "period": month})
        assert status == 200 and again["replayed"] and again["run"] == run["run"]
        status, got = await call("GET", "/apportionment/runs", "view")
        assert status == 200 and [r["period"] for r in got["runs"]] == [month]
        status, got = await call("GET", "/rooms/R1/account/ledger", "view")
        [share] = [e for e in got["entries"] if e["kind"] == "apportionment"]
        assert share["reason"] == f"Common area by area {month}" and Decimal(share["quantity"]) == quantities["R1"]

        # the same month shared equally on the bill: the run posts nothing, the billing run posts each share once
        status, on_bill = await call("POST", "/apportionment/rules", "eng", {**rule_body, "name": "Common area on the bill", "method": "equal",
                                                                            "settle": "bill"})
        assert status == 201, on_bill
        status, run2 = await call("POST", "/apportionment/runs", "cash", {"rule": on_bill["id"], "period": month})
        assert status == 201, run2
        due = {s["room"]: s["amount"] for s in run2["shares"]}
        by_area = {s["room"]: Decimal(s["amount"]) for s in run["shares"]}
        assert sum(Decimal(a) for a in due.values()) == price_total
        async with rt.ctx[DATABASE].sessions() as s:
            assert len((await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment"))).all()) == 3
        rt.ctx[BILLING_SERVICE].clock = lambda: following + dt.timedelta(hours=3)
        status, billing = await call("POST", "/billing/runs", "cash", {"period": month})
        assert status == 200 and (billing["issued"], billing["posted"]) == (3, 3), billing
        for bill in billing["bills"]:
            [line] = [ln for ln in bill["lines"] if ln["kind"] == "apportionment" and ln["label"] == "Common area on the bill"]
            assert (line["amount"], line["period"], line["unit"], line["unit_price"]) == (due[bill["room"]], month, "kWh", "0.85")
            # the total is its lines and leaves the closing balance; the share settled on the balance was
            # posted when its run ran (in the following month): the account's balance is the closing one less it
            assert Decimal(bill["total"]) == sum(Decimal(ln["amount"]) for ln in bill["lines"])
            assert Decimal(bill["closing_balance"]) == Decimal(bill["opening_balance"]) - Decimal(bill["total"])
            status, account = await call("GET", f"/rooms/{bill['room']}/account", "view")
            assert Decimal(account["balance"]) == Decimal(bill["closing_balance"]) - by_area[bill["room"]]
        status, again = await call("POST", "/billing/runs", "cash", {"period": month})
        assert status == 200 and (again["issued"], again["posted"]) == (0, 0)
        async with rt.ctx[DATABASE].sessions() as s:
            entries = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "apportionment"))).all()
        assert -sum(e.amount_minor for e in entries) == 2 * int(price_total * 100)
        # the printed bill shows the line, in each language
        from pypdf import PdfReader

        bill = next(b for b in billing["bills"] if b["room"] == "R3")
        amount = f"{Decimal(due['R3']):,.2f}"
        for lang, heading in (("en", "Shares from common-area apportionment"), ("zh-CN", "公摊分摊费用")):
            async with http.get(base + f"/bills/{bill['id']}?format=html&lang={lang}", headers=headers["view"]) as r:
                html = await r.text()
            assert r.status == 200, html
            assert f"{heading} · Common area on the bill {month}" in html and amount in html
            async with http.get(base + f"/bills/{bill['id']}?format=pdf&lang={lang}", headers=headers["view"]) as r:
                pdf = await r.read()
            assert r.status == 200 and pdf[:5] == b"%PDF-"
            text = "".join("".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
            assert "".join(heading.split()) in text and amount in text, (lang, text)
        report = await reconcile(rt.ctx[DATABASE], 2)
        assert report.ok, [str(m) for m in report.mismatches]
