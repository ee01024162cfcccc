"""Pre-set accounts imported from an XLSX spreadsheet (``POST /api/v1/accounts/import`` with an
XLSX body): the same rows as the CSV import's test, written as a spreadsheet with numbers in
number cells; a dry run names the row with an unknown tariff (line, column, why) and creates
nothing, and the fixed spreadsheet creates the prepared accounts."""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation

import aiohttp
from openpyxl import Workbook

from scada.alarms.clock import ManualClock
from scada.operations.prepared import XLSX_TYPE

from .conftest import ADMIN_PASSWORD, PASSWORDS, Hmi
from .test_api_users import bearer
from .test_jobs_site import GOOD, api, ops  # noqa: F401 (ops is the fixture)

UNKNOWN_TARIFF = "Zhao Liu,+8613800000006,zh-CN,B1-R206,prepaid,NIGHT-2027,10,,,W\n"
FIXED = "Zhao Liu,+8613800000006,zh-CN,B1-R206,prepaid,FLAT,10,,,W\n"


def xlsx(text: str) -> bytes:
    """The CSV rows as a spreadsheet, as an office program saves it: amounts in number cells,
    phone numbers as text, empty cells empty."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    rows = list(csv.reader(io.StringIO(text)))
    numeric = [i for i, name in enumerate(rows[0]) if name in ("opening_balance", "credit_limit")]
    sheet.append(rows[0])
    for row in rows[1:]:
        cells: list[object] = [cell or None for cell in row]
        for i in numeric:
            try:
                number = Decimal(row[i])
            except InvalidOperation:
                continue
            cells[i] = int(number) if number == number.to_integral_value() else float(number)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_an_xlsx_dry_run_names_the_unknown_tariff_row_then_the_fixed_file_creates_them(ops: tuple[Hmi, ManualClock]) -> None:  # noqa: F811
    hmi, _clock = ops
    cashier = await bearer(hmi, "cashier1", PASSWORDS["cashier1"])
    admin = await bearer(hmi, "admin", ADMIN_PASSWORD)
    sheet_headers = {**cashier, "Content-Type": XLSX_TYPE, "X-Filename": "rooms.xlsx"}
    async with aiohttp.ClientSession(headers=cashier) as http:
        await api(http, "POST", hmi.api + "/tariffs", {"id": "FLAT", "name": "Flat", "commodity": "electricity",
                                                        "definition": {"price": "0.60"}}, 201, headers=admin)
        await api(http, "POST", hmi.api + "/tariffs", {"id": "W", "name": "Water", "commodity": "water", "definition": {"price": "3"}},
                  201, headers=admin)
        bad = xlsx(GOOD + UNKNOWN_TARIFF)
        assert bad[:2] == b"PK"
        report = await api(http, "POST", hmi.api + "/accounts/import?dry_run=true", None, 200, data=bad, headers=sheet_headers)
        assert report["rows"] == 6 and report["valid"] == 5 and report["created"] == 0, report
        assert report["errors"] == [{"line": 7, "column": "tariff", "error": "unknown tariff 'NIGHT-2027'"}], report
        # an import of the same file creates nothing either
        body = await api(http, "POST", hmi.api + "/accounts/import", None, 422, data=bad, headers=sheet_headers)
        assert body["created"] == 0 and [e["line"] for e in body["errors"]] == [7], body
        assert (await api(http, "GET", hmi.api + "/accounts/prepared"))["accounts"] == []
        assert (await api(http, "GET", hmi.api + "/customers"))["customers"] == []
        created = await api(http, "POST", hmi.api + "/accounts/import", None, 201, data=xlsx(GOOD + FIXED), headers=sheet_headers)
        assert created["created"] == 6 and {a["state"] for a in created["accounts"]} == {"prepared"}, created
        prepared = {a["room"]: a for a in (await api(http, "GET", hmi.api + "/accounts/prepared"))["accounts"]}
        assert sorted(prepared) == [f"B1-R20{i}" for i in range(1, 7)]
        # number cells read as the amounts they show: 100.00 (an integer cell), 20.5, 0
        assert {r: prepared[r]["opening_balance"] for r in ("B1-R201", "B1-R204", "B1-R203")} == {
            "B1-R201": "100.00", "B1-R204": "20.50", "B1-R203": "0.00"}, prepared
        assert prepared["B1-R202"]["credit_limit"] == "10.00" and prepared["B1-R203"]["mode"] == "postpaid"
        assert prepared["B1-R206"]["tariff"] == "FLAT" and prepared["B1-R201"]["language"] == "zh-CN"
        assert prepared["B1-R203"]["water_tariff"] == prepared["B1-R206"]["water_tariff"] == "W"
        for room in prepared:  # prepared, not open
            await api(http, "GET", f"{hmi.api}/rooms/{room}/account", status=404)
