"""Reports through the JSON API, end to end on a running server: the energy report as JSON, CSV,
XLSX (read back with openpyxl: the same numbers as the JSON) and PDF (a page per group, the chart
on the first), finance and arrears with their permissions, the losses report (the same numbers as
the topology's loss API, and as XLSX), streaming, the row limit, and bad input answered with a
4xx naming the parameter before any work."""

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
from scada.site.component import ASSETS
from scada.users.audit import Actor
from scada.users.component import USERS

from ..harness import passwords_hashed_once, running_server, server_config
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
    extra = prepaid_extra(tmp_path, "[reports]\nmax_rows = 2000\nstream_above_rows = 5\nledger_rollup_every_s = 5\n")
    config = with_site(server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", extra))
    async with running_server(config) as rt:
        with passwords_hashed_once():
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


async def test_the_server_folds_the_ledger_into_day_rollups_the_report_reads(api: Api) -> None:
    """The running server folds the ledger into the per-meter day rollup in the background
    (every 5 s here); the report then reads R1's day from it, with the same money."""
    import asyncio

    from sqlalchemy import func, select

    from scada.db.component import DATABASE
    from scada.prepaid.models import LedgerEntry
    from scada.reports.models import LedgerDay
    from scada.reports.models import LedgerRollup as RollupRow

    await _data(api)
    db = api.rt.ctx[DATABASE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        async with db.reads() as s:
            high = await s.scalar(select(func.max(LedgerEntry.id)))
            row = await s.get(RollupRow, 1)
            day = await s.get(LedgerDay, (dt.date(2026, 11, 2), "E1"))
        if row is not None and row.through_id == high and day is not None:
            break
        assert loop.time() < deadline, "the server did not fold the ledger within 60 s"
        await asyncio.sleep(0.2)
    assert day.charged_minor == 301
    status, body, _ = await api.get("/reports/energy", **{"from": "2026-11-02", "to": "2026-11-04", "interval": "day", "group": "room"})
    assert status == 200, body
    r1 = body["rows"][0]
    assert (r1["day"], r1["room"], r1["money_valley"], r1["money_peak"], r1["money"]) == ("2026-11-02", "R1", "0.21", "2.80", "3.01")
    assert body["totals"]["money"] == "3.01"


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
    # 2 years by day for 3 meters: 2,190 rows > max_rows 2,000, refused naming the limit
    status, body, _ = await api.get("/reports/energy", **{"from": "2024-11-01", "to": "2026-10-31", "group": "meter"})
    assert status == 422 and body["field"] == "to" and body["limit"] == 2000 and body["rows"] == 2190
    assert api.started == before  # none of them began any work


async def test_losses_report_as_json_and_xlsx_with_the_topology_s_numbers(api: Api) -> None:
    """E1 stands over E2 from 1 November. 2 November: E1 4 + 6 = 10 kWh, E2 3.5 + 5.5 = 9: loss 1 =
    10.00 %; 3 November: E1 3 + 5 = 8, E2 2.5 + 5 = 7.5: loss 0.5 = 6.25 %. Together 18 − 16.5 =
    1.5 = 8.333…% → 8.33 %."""
    await api.rt.ctx[ASSETS].set_parent("E2", "E1", Actor("t", "api", "engineer"), valid_from=dt.datetime(2026, 11, 1, tzinfo=TZ8))
    backend = api.rt.ctx[HISTORY].historian.backend
    records = []
    for day, e1, e2 in ((2, (4.0, 6.0), (3.5, 5.5)), (3, (3.0, 5.0), (2.5, 5.0))):
        for meter, (morning, noon) in (("E1", e1), ("E2", e2)):
            for hour, kwh in ((6, morning), (12, noon)):
                t = int(dt.datetime(2026, 11, day, hour, tzinfo=TZ8).timestamp())
                records.append(IntervalRecord(meter, t, 900, {"energy_total": round(kwh * 1e6)}))
    await backend.write_intervals(records)
    await backend.rebuild_days(sorted({(r.meter, *day_bounds(r.start, TZ8)) for r in records}))

    span = {"from": "2026-11-02", "to": "2026-11-03"}
    status, body, _ = await api.get("/reports/losses", **span)
    assert status == 200, body
    rows = body["rows"]
    assert [(r["day"], r["meter"], r["consumption"], r["children_consumption"], r["loss"], r["loss_pct"], r["children"], r["missing"])
            for r in rows] == [("2026-11-02", "E1", "10", "9", "1", "10.00", "1", ""), ("2026-11-03", "E1", "8", "7.5", "0.5", "6.25", "1", "")]
    assert (body["totals"]["loss"], body["totals"]["loss_pct"], body["unit"]) == ("1.5", "8.33", "kWh")
    assert body["chart"]["series"] == [{"name": "loss", "values": [1.0, 0.5]}]
    # the topology's own loss API, day by day over the same days (its ``to`` is exclusive)
    status, topo, _ = await api.get("/losses", **{"from": "2026-11-02", "to": "2026-11-04", "by": "day"})
    assert status == 200, topo
    assert [(item["from"][:10], item["meter"], Decimal(item["consumption"]), Decimal(item["children_consumption"]),
             Decimal(item["loss"]), Decimal(item["loss_pct"])) for item in topo["losses"]] == [
        (r["day"], r["meter"], Decimal(r["consumption"]), Decimal(r["children_consumption"]), Decimal(r["loss"]), Decimal(r["loss_pct"]))
        for r in rows]

    import openpyxl

    status, raw, _ = await api.get("/reports/losses", format="xlsx", **span)
    assert status == 200
    book = openpyxl.load_workbook(io.BytesIO(raw))
    assert book.sheetnames == ["Rows", "Meter", "Day", "Totals", "Parameters"]
    ws = book["Rows"]
    header = [c.value for c in ws[1]]
    assert header[:6] == ["Day", "Meter", "Consumption", "Children's consumption", "Loss", "Loss %"]
    names = [c["name"] for c in body["columns"]]
    for i, row in enumerate(ws.iter_rows(min_row=2, values_only=True)):
        for name, value in zip(names, row, strict=True):
            expected = rows[i][name]
            if name in ("day", "meter"):
                assert value == expected
            elif name == "missing":
                assert value in (None, "")
            elif name == "loss_pct":  # a per cent cell holds the fraction
                assert Decimal(str(value)) * 100 == Decimal(expected), (i, value, expected)
            else:
                assert isinstance(value, (int, float)) and Decimal(str(value)) == Decimal(expected), (i, name, value, expected)
    per_meter = dict(zip([c.value for c in book["Meter"][1]], [c.value for c in book["Meter"][2]], strict=True))
    assert per_meter["Meter"] == "E1" and Decimal(str(per_meter["Loss"])) == Decimal("1.5")

    # PDF: the chart and the totals, then a page for E1
    from pypdf import PdfReader

    status, raw, r = await api.get("/reports/losses", format="pdf", lang="zh-CN", **span)
    assert status == 200 and r.headers["Content-Type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(raw))
    assert len(pdf.pages) == 2 and "损耗率" in pdf.pages[0].extract_text() and "E1" in pdf.pages[1].extract_text()

    # bad input: answered before any work, naming the parameter; a viewer may not read it
    before = api.started
    for params, field in (({**span, "group": "room"}, "group"), ({**span, "commodity": "gas"}, "commodity"),
                          ({"from": "2026-11-03", "to": "2026-11-01"}, "to"), ({**span, "interval": "hour"}, "interval")):
        status, body, _ = await api.get("/reports/losses", **params)
        assert status == 422 and body["field"] == field, (params, body)
    status, body, _ = await api.get("/reports/losses", user="viewer", **span)
    assert status == 403
    assert api.started == before


async def test_reports_as_english_pdfs(api: Api) -> None:
    """The energy report of ``_data`` in English: the title, the chart's legend and the totals
    (29.25 kWh, 3.01 charged) on the first page, then a page per room; the finance report of
    today in English says it reconciles and shows the 100.00 recharged in cash; nothing Chinese."""
    from pypdf import PdfReader

    await _data(api)
    span = {"from": "2026-11-02", "to": "2026-11-04", "interval": "day", "group": "room"}
    status, raw, r = await api.get("/reports/energy", format="pdf", lang="en", **span)
    assert status == 200 and r.headers["Content-Type"] == "application/pdf" and raw[:5] == b"%PDF-"
    pdf = PdfReader(io.BytesIO(raw))
    assert len(pdf.pages) == 3
    first = pdf.pages[0].extract_text()
    assert "Energy report" in first and "Valley (kWh)" in first and "Peak (kWh)" in first and "2026-11-03" in first, first
    assert "29.25" in first and "3.01" in first, first
    assert "Room R1" in pdf.pages[1].extract_text() and "Room R2" in pdf.pages[2].extract_text()
    assert not any("能耗" in p.extract_text() or "房间" in p.extract_text() for p in pdf.pages)
    today = dt.datetime.now(TZ8).date().isoformat()
    status, raw, _ = await api.get("/reports/finance", user="cashier", format="pdf", lang="en",
                                   **{"from": today, "to": today, "group": "channel"})
    assert status == 200, raw
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(raw)).pages)
    assert "Finance report" in text and "The totals reconcile with the ledger." in text and "Recharges" in text, text
    assert "100.00" in text and "cash" in text and "财务" not in text, text
