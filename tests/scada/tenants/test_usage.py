"""What a tenant sees of an account, from the ledger (SQLite and PostgreSQL): each local day's
cost (the sum of its deductions) and consumption (last reading minus first, per meter and
billing segment, exact), today, this month, and the days of credit left."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from scada.db import Database
from scada.prepaid.ledger import account_view
from scada.prepaid.models import Account, LedgerEntry
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.tenants.usage import account_summary, days_left
from scada.users.audit import Actor

TZ = ZoneInfo("Asia/Shanghai")
SITE = """
[site]
id = "t"
name = "T"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F"
[[rooms]]
id = "R1"
floor = "F"
name = "R1"
[[meters]]
id = "E1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1
[[meters]]
id = "W1"
kind = "water"
room = "R1"
profile = "water-valve"
link = "gw"
unit_id = 2
"""


def test_days_left() -> None:
    assert days_left(10000, Decimal(300)) == Decimal("33.3")
    assert days_left(0, Decimal(300)) == 0 and days_left(-5, None) == 0
    assert days_left(10000, None) is None and days_left(10000, Decimal(0)) is None


async def test_days_month_and_today_are_exact(db: Database) -> None:
    await apply_site(db, parse_toml(SITE, "<site>"), Actor("t", "cli"))
    registry = AssetRegistry(db)
    await registry.load()
    now = dt.datetime(2026, 3, 2, 10, 0, tzinfo=TZ)  # two local days into March
    t0 = now.astimezone(dt.UTC)
    async with db.transaction() as s:
        a = Account(room_id="R1", open_room_id="R1", state="open", opened_at=t0 - dt.timedelta(days=60), opened_by="t",
                    contact_name="", language="en", credit_limit_minor=0, thresholds=[], balance_minor=9000, remainder=0, updated_at=t0)
        s.add(a)
        await s.flush()
        rows: list[dict[str, Any]] = []
        reading = {"E1": Decimal("100.00"), "W1": Decimal("5.000")}

        def deduct(when: dt.datetime, meter: str, qty: str, cost: int, segment: int = 1) -> None:
            start = reading[meter]
            reading[meter] = start + Decimal(qty)
            rows.append(dict(account_id=a.id, ts=when.astimezone(dt.UTC), kind="deduction", amount_minor=-cost, balance_after_minor=0,
                             actor="engine", source="engine", reason="", meter_id=meter, segment=segment, reading_from=start,
                             reading_to=reading[meter], quantity=Decimal(qty)))

        # local 2026-02-28 23:30 (UTC 15:30): February; then March 1st in three pieces, March 2nd this morning
        deduct(dt.datetime(2026, 2, 28, 23, 30, tzinfo=TZ), "E1", "1.25", 63)
        for hour, qty, cost in ((0, "0.10", 5), (12, "2.333", 117), (23, "0.007", 1)):
            deduct(dt.datetime(2026, 3, 1, hour, 15, tzinfo=TZ), "E1", qty, cost)
        deduct(dt.datetime(2026, 3, 1, 8, 0, tzinfo=TZ), "W1", "0.125", 44)
        deduct(dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ), "E1", "0.5", 25)
        # a meter reset mid-morning: a new segment starts from zero
        reading["E1"] = Decimal(0)
        deduct(dt.datetime(2026, 3, 2, 9, 30, tzinfo=TZ), "E1", "0.25", 13, segment=2)
        for r in rows:
            s.add(LedgerEntry(**r))
        view = account_view(a)
    engine: Any = SimpleNamespace(tz=TZ, db=db, assets=registry, biller=SimpleNamespace(daily_cost=lambda _id: Decimal(300)))
    summary = await account_summary(engine, view, now=t0)
    by_day = {d.day.isoformat(): d for d in summary.days}
    assert len(summary.days) == 30 and summary.days[-1].day == dt.date(2026, 3, 2)
    assert by_day["2026-02-28"].cost_minor == 63 and by_day["2026-02-28"].quantity["electricity"] == Decimal("1.25")
    assert by_day["2026-03-01"].cost_minor == 123 + 44
    assert by_day["2026-03-01"].quantity == {"electricity": Decimal("2.440"), "water": Decimal("0.125")}
    assert summary.today.cost_minor == 38 and summary.today.quantity["electricity"] == Decimal("0.75")
    assert summary.month.cost_minor == 167 + 38 and summary.month.quantity["electricity"] == Decimal("3.190")
    assert summary.days_left == Decimal("30.0")
    data = summary.as_json(2, "CNY")
    assert data["today"] == {"day": "2026-03-02", "cost": "0.38", "quantity": {"electricity": "0.75", "water": "0"}}
    assert data["units"] == {"electricity": "kWh", "water": "m³"}
