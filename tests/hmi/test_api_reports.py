"""Reports through the JSON API, end to end on a running server: the energy report as JSON, CSV,
XLSX (read back with openpyxl: the same numbers as the JSON) and PDF (a page per group, the chart
on the first), finance and arrears with their permissions, streaming, the row limit, and bad
input answered with a 4xx naming the parameter before any work."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from historian import IntervalRecord
from historian.rollup import day_bounds
from hmi.component import HMI_URL
from scada.core.runtime import Runtime
from scada.history.service import HISTORY
from scada.prepaid.accounts import OpenRequest
from scada.prepaid.engine import PREPAID
from scada.prepaid.tariff_definition import TariffDefinition
from scada.reports.service import REPORTS
from scada.users.audit import Actor
from scada.users.component import USERS

from ..harness import running_server, server_config
from .prepaid_site import prepaid_extra, with_site

TZ8 = dt.timezone(dt.timedelta(hours=8))
USERS_ = {"cashier": "cashier", "engineer": "engineer", "viewer": "viewer"}
CASHIER = Actor("cashier", "api", "cashier")
TOU = {"periods": [{"name": "valley", "price": "0.30"}, {"name": "peak", "price": "1.00"}],
       "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["22:00", "valley"]], "weekend": [["00:00", "valley"]]}]}


@dataclass
class Api:
    base: str
    rt: Runtime
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    async def get(self, path: str, user: str = "engineer", **params: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, params=params, headers={"Authorization": f"Bearer {self.tokens[user]}"}) as r:
            body = await r.json() if r.content_type == "application/json" else await r.read()
            return r.status, body, r

    @property
    def started(self) -> int:
        return self.rt.ctx[REPORTS].sources.started


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    extra = prepaid_extra(tmp_path, "[reports]\nmax_rows = 2000\nstream_above_rows = 5\n")
    config = with_site(server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", extra))
    async with running_server(config) as rt:
        for name, role in USERS_.items():
            await rt.ctx[USERS].add(name, role, f"{name}-password", Actor("t", "cli"))
        async with aiohttp.ClientSession() as http:
            base = rt.ctx[HMI_URL] + "/api/v1"
            tokens = {}
            for name in USERS_:
                async with http.post(base + "/auth/token", json={"user": name, "password": f"{name}-password"}) as r:
                    tokens[name] = (await r.json())["token"]
            yield Api(base, rt, http, tokens)
        await rt.ctx[PREPAID].supply.idle()


async def _data(api: Api) -> None:
    """E1 (R1) and E2 (R2): three days of a valley and a peak interval each; R1's account billed."""
    engine = api.rt.ctx[PREPAID]
    await engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": TOU}), CASHIER,
                                effective_from=dt.datetime(2026, 1, 1, tzinfo=TZ8))
    await engine.tariffs.create("W", "water", "water", TariffDefinition.model_validate({"price": "3"}), CASHIER,
                                effective_from=dt.datetime(2026, 1, 1, tzinfo=TZ8))
    base = engine.defaults()
    await engine.open_account(OpenRequest("R1", base, electricity_tariff_id="TOU"), CASHIER)
    await engine.open_account(OpenRequest("R2", base, electricity_tariff_id="TOU", water_tariff_id="W"), CASHIER)
    await engine.recharge("R1", 10_000, channel="cash", reference="r-1", actor=CASHIER)
    from scada.prepaid.readings import Reading

    for ts, value in ((dt.datetime(2026, 11, 2, 7, tzinfo=TZ8), "10"), (dt.datetime(2026, 11, 2, 12, tzinfo=TZ8), "13.5")):
        await engine.bill([Reading("E1", Decimal(value), ts)])
    backend = api.rt.ctx[HISTORY].historian.backend
    records = []
    for day in (2, 3, 4):
        for meter, kwh in (("E1", 1.25), ("E2", 2.0)):
            t0 = int(dt.datetime(2026, 11, day, 6, tzinfo=TZ8).timestamp())
            t1 = int(dt.datetime(2026, 11, day, 12, tzinfo=TZ8).timestamp())
            records.append(IntervalRecord(meter, t0, 900, {"energy_total": round(kwh * 1e6), "energy_valley": round(kwh * 1e6)}))
            records.append(IntervalRecord(meter, t1, 900, {"energy_total": round(2 * kwh * 1e6), "energy_peak": round(2 * kwh * 1e6)}))
    await backend.write_intervals(records)
    await backend.rebuild_days(sorted({(r.meter, *day_bounds(r.start, TZ8)) for r in records}))


async def test_energy_report_in_every_format(api: Api) -> None:
    await _data(api)
    span = {"from": "2026-11-02", "to": "2026-11-04", "interval": "day", "group": "room"}
    status, body, _ = await api.get("/reports/energy", **span)
    assert status == 200, body
    rows = body["rows"]
    assert [(r["day"], r["room"], r["energy"], r["energy_valley"], r["energy_peak"]) for r in rows] == [
        (d, room, e, v, p) for d in ("2026-11-02", "2026-11-03", "2026-11-04")
        for room, e, v, p in (("R1", "3.75", "1.25", "2.5"), ("R2", "6", "2", "4"))]
    # R1's 3.5 kWh read 07:00–12:00 on the 2nd: 1 h valley (0.7 × 0.30 = 0.21) and 4 h peak (2.8 × 1.00 = 2.80)
    r1 = rows[0]
    assert (r1["money_valley"], r1["money_peak"], r1["money"]) == ("0.21", "2.80", "3.01")
    assert body["totals"]["energy"] == "29.25" and body["totals"]["money"] == "3.01"
    assert body["chart"]["type"] == "stacked" and body["chart"]["categories"] == ["2026-11-02", "2026-11-03", "2026-11-04"]

    # CSV: the same strings, then a total per room and the overall total
    status, raw, r = await api.get("/reports/energy", format="csv", **span)
    assert status == 200 and r.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(raw.decode())))
    assert table[0][:4] == ["day", "room", "energy", "energy_sharp"]
    assert [dict(zip(table[0], line, strict=True)) for line in table[1:7]] == [{k: ("" if v is None else v) for k, v in row.items()} for row in rows]
    assert table[7][:3] == ["total", "R1", "11.25"] and table[-1][:3] == ["total", "total", "29.25"]

    # XLSX read back: numbers equal to the JSON's, a sheet per level, parameters, frozen headers
    import openpyxl

    status, raw, r = await api.get("/reports/energy", format="xlsx", **span)
    assert status == 200
    book = openpyxl.load_workbook(io.BytesIO(raw))
    assert book.sheetnames == ["Rows", "Room", "Day", "Totals", "Parameters"]
    ws = book["Rows"]
    assert ws.freeze_panes == "A2"
    header = [c.value for c in ws[1]]
    assert header[:3] == ["Day", "Room", "Energy (kWh)"]
    names = [c["name"] for c in body["columns"]]
    for i, row in enumerate(ws.iter_rows(min_row=2, values_only=True)):
        for name, value in zip(names, row, strict=True):
            expected = rows[i][name]
            if expected is None:
                assert value is None, (i, name)
            elif name in ("day", "room"):
                assert value == expected
            else:
                assert isinstance(value, (int, float)) and Decimal(str(value)) == Decimal(expected), (i, name, value, expected)
    money_col = names.index("money") + 1
    assert "¥" in ws.cell(2, money_col).number_format and ws.cell(2, money_col).number_format.count("0.00")
    assert ws.cell(2, names.index("energy") + 1).number_format == "#,##0.00"
    totals = dict(zip([c.value for c in book["Totals"][1]], [c.value for c in book["Totals"][2]], strict=True))
    assert Decimal(str(totals["Energy (kWh)"])) == Decimal("29.25") and Decimal(str(totals["Charged"])) == Decimal("3.01")
    params = {row[0]: row[1] for row in book["Parameters"].iter_rows(min_row=2, values_only=True)}
    assert params["Report"] == "energy" and params["Grouped by"] == "room"

    # PDF: the chart and the totals on the first page, then a page per room
    from pypdf import PdfReader

    status, raw, r = await api.get("/reports/energy", format="pdf", lang="zh-CN", **span)
    assert status == 200 and r.headers["Content-Type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(raw))
    assert len(pdf.pages) == 3
    first = pdf.pages[0].extract_text()
    assert "能耗报表" in first and "谷 (kWh)" in first and "2026-11-03" in first  # title, the chart's legend and axis
    content = pdf.pages[0].get_contents().get_data().decode("latin-1")
    assert content.count(" re") >= 6  # the chart's bars: two periods on three days
    assert "房间 R1" in pdf.pages[1].extract_text() and "房间 R2" in pdf.pages[2].extract_text()


async def test_finance_arrears_permissions_streaming_limits_and_bad_input(api: Api) -> None:
    await _data(api)
    today = dt.datetime.now(TZ8).date().isoformat()
    status, body, _ = await api.get("/reports/finance", user="engineer", **{"from": today, "to": today})
    assert status == 403
    status, body, _ = await api.get("/reports/finance", user="cashier", **{"from": today, "to": today, "group": "channel"})
    assert status == 200 and body["reconciled"] is True and body["totals"]["recharges"] == "100.00"
    status, body, _ = await api.get("/reports/arrears", user="cashier")
    assert status == 200 and body["group"] == "room" and "as_of" in body
    # more rows than stream_above_rows (5): streamed, the same JSON
    status, body, r = await api.get("/reports/energy", **{"from": "2026-11-02", "to": "2026-11-04", "group": "meter"})
    assert status == 200 and r.headers.get("Transfer-Encoding") == "chunked" and len(body["rows"]) == 9

    before = api.started
    bad = [
        ({"from": "2026-11-05", "to": "2026-11-01"}, "to"),
        ({"from": "2026-11-01", "to": "2026-11-05", "group": "galaxy"}, "group"),
        ({"from": "2025-11-01", "to": "2026-11-01", "interval": "1s"}, "interval"),
        ({"from": "2026-11-01", "to": "2026-11-05", "format": "docx"}, "format"),
        ({"from": "2026-13-01", "to": "2026-11-05"}, "from"),
        ({"from": "1900-01-01", "to": "2026-11-05"}, "from"),
        ({"from": "2026-11-01", "to": "2026-11-05", "lang": "fr"}, "lang"),
        ({"from": "2026-11-01", "to": "2026-11-05", "colour": "red"}, "colour"),
    ]
    for params, field in bad:
        status, body, _ = await api.get("/reports/energy", **params)
        assert status == 422 and body["field"] == field, (params, body)
    status, body, _ = await api.get("/reports/weather", **{"from": "2026-11-01", "to": "2026-11-05"})
    assert status == 404 and body["field"] == "kind"
    status, body, _ = await api.get("/reports/losses", **{"from": "2026-11-01", "to": "2026-11-05"})
    assert status == 404 and body["field"] == "kind" and "losses" in body["error"]
    # 2 years by day for 3 meters: 2,190 rows > max_rows 2,000, refused naming the limit
    status, body, _ = await api.get("/reports/energy", **{"from": "2024-11-01", "to": "2026-10-31", "group": "meter"})
    assert status == 422 and body["field"] == "to" and body["limit"] == 2000 and body["rows"] == 2190
    assert api.started == before  # none of them began any work
