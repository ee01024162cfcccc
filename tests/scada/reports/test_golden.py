"""Worked examples computed by hand (the arithmetic is in each docstring), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from scada.prepaid.tariff_definition import TariffDefinition

from ..prepaid.conftest import CASHIER
from .conftest import Reports, local

TOU = {"periods": [{"name": "valley", "price": "0.30"}, {"name": "peak", "price": "1.00"}, {"name": "flat", "price": "0.60"}],
       "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["18:00", "flat"]]}]}


def pick(rows: list[dict], **keys: str) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    assert len(found) == 1, (keys, found)
    return found[0]


async def test_daily_energy_by_room_with_tou_split_and_money_crossing_midnight(reports: Reports) -> None:
    """Three rooms, 3 and 4 November 2026 (Asia/Shanghai, UTC+8), tariff valley 0.30 (00–08),
    peak 1.00 (08–18), flat 0.60 (18–24); water 3.50 a m³.

    History (15-minute intervals): R1's E1 4 kWh valley at 07:45, 10 kWh peak at 12:00, 0.5 kWh
    flat at 23:45 on the 3rd and 0.5 kWh valley at 00:00 on the 4th; R2's E2 2 kWh peak at 09:00 on
    the 3rd, its W2 1.5 m³ at 10:00 on the 4th; R3's E3 3 kWh flat at 20:00 on the 4th.
      R1 3rd: 4 + 10 + 0.5 = 14.5 kWh (valley 4, peak 10, flat 0.5); 4th: 0.5 (valley 0.5).
      R2 3rd: 2 kWh (peak 2), no water; 4th: no electricity, 1.5 m³.  R3 3rd: nothing; 4th: 3 (flat 3).

    Ledger (deductions of the readings, by the local day of the reading):
      E1 100 at 00:00 (baseline) → 104 at 08:00: 4 valley × 0.30 = 1.20; → 114 at 18:00: 10 peak
      × 1.00 = 10.00; → 114.5 at 23:30: 0.5 flat × 0.60 = 0.30. 3rd: 11.50 (valley 1.20, peak
      10.00, flat 0.30). → 115.5 at 00:30 on the 4th (16:30 UTC on the 3rd: the local day
      counts): 1 kWh over 23:30–00:30, split by time: 0.5 flat 0.30 + 0.5 valley 0.15 = 0.45.
      E2 50 at 08:00 → 52 at 10:00 on the 3rd: 2 peak = 2.00, then reversed: 0.00 net.
      W2 10 at 09:00 → 11.5 at 11:00 on the 4th: 1.5 × 3.50 = 5.25 (money_water).
      R3 has no account: 0.00.
    Totals: energy 14.5 + 0.5 + 2 + 3 = 20 kWh; water 1.5 m³; money 11.50 + 0.45 + 5.25 = 17.20.
    Per room: R1 15 kWh, 11.95."""
    site = reports.site
    await site.engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": TOU}), CASHIER,
                                     effective_from=local(2026, 1, 1))
    await site.engine.tariffs.create("W", "water", "water", TariffDefinition.model_validate({"price": "3.50"}), CASHIER,
                                     effective_from=local(2026, 1, 1))
    await site.open("R1", opening=0, tariff="TOU")
    await site.open("R2", opening=0, tariff="TOU", water="W")
    await site.feed("E1", [(local(2026, 11, 3), "100"), (local(2026, 11, 3, 8), "104"), (local(2026, 11, 3, 18), "114"),
                           (local(2026, 11, 3, 23, 30), "114.5"), (local(2026, 11, 4, 0, 30), "115.5")])
    await site.feed("E2", [(local(2026, 11, 3, 8), "50"), (local(2026, 11, 3, 10), "52")])
    await site.feed("W2", [(local(2026, 11, 4, 9), "10"), (local(2026, 11, 4, 11), "11.5")])
    e2 = [e for e in (await site.engine.ledger("R2"))[1] if e.kind == "deduction" and e.meter_id == "E2"]
    assert len(e2) == 1 and e2[0].amount_minor == -200
    await site.engine.reverse(e2[0].id, actor=CASHIER, reason="wrong reading")

    await reports.intervals("E1", local(2026, 11, 3, 7, 45), [{"energy_total": 4, "energy_valley": 4}])
    await reports.intervals("E1", local(2026, 11, 3, 12), [{"energy_total": 10, "energy_peak": 10}])
    await reports.intervals("E1", local(2026, 11, 3, 23, 45), [{"energy_total": 0.5, "energy_flat": 0.5}, {"energy_total": 0.5, "energy_valley": 0.5}])
    await reports.intervals("E2", local(2026, 11, 3, 9), [{"energy_total": 2, "energy_peak": 2}])
    await reports.intervals("W2", local(2026, 11, 4, 10), [{"volume_total": 1.5}])
    await reports.intervals("E3", local(2026, 11, 4, 20), [{"energy_total": 3, "energy_flat": 3}])

    out = await reports.report("energy", **{"from": "2026-11-03", "to": "2026-11-04", "interval": "day", "group": "room"})
    rows = out["rows"]
    assert [(r["day"], r["room"]) for r in rows] == [(d, r) for d in ("2026-11-03", "2026-11-04") for r in ("R1", "R2", "R3")]
    r1 = pick(rows, day="2026-11-03", room="R1")
    assert (r1["energy"], r1["energy_valley"], r1["energy_peak"], r1["energy_flat"], r1["energy_sharp"]) == ("14.5", "4", "10", "0.5", None)
    assert (r1["money_valley"], r1["money_peak"], r1["money_flat"], r1["money_other"], r1["money"]) == ("1.20", "10.00", "0.30", "0.00", "11.50")
    r1b = pick(rows, day="2026-11-04", room="R1")
    assert (r1b["energy"], r1b["energy_valley"], r1b["money_flat"], r1b["money_valley"], r1b["money"]) == ("0.5", "0.5", "0.30", "0.15", "0.45")
    r2 = pick(rows, day="2026-11-03", room="R2")
    assert (r2["energy"], r2["energy_peak"], r2["water"], r2["money_peak"], r2["money"]) == ("2", "2", None, "0.00", "0.00")
    r2b = pick(rows, day="2026-11-04", room="R2")
    assert (r2b["energy"], r2b["water"], r2b["money_water"], r2b["money"]) == (None, "1.5", "5.25", "5.25")
    r3a, r3b = pick(rows, day="2026-11-03", room="R3"), pick(rows, day="2026-11-04", room="R3")
    assert r3a["energy"] is None and r3a["money"] == "0.00"
    assert (r3b["energy"], r3b["energy_flat"], r3b["money"]) == ("3", "3", "0.00")
    t = out["totals"]
    assert (t["energy"], t["water"], t["money"], t["money_water"]) == ("20", "1.5", "17.20", "5.25")
    assert (t["money_valley"], t["money_peak"], t["money_flat"]) == ("1.35", "10.00", "0.60")
    report = await reports.service.report("energy", {"from": "2026-11-03", "to": "2026-11-04"})
    per_room = report.aggregate(["room"]).set_index("room")
    assert per_room.loc["R1", "energy"] == 15_000_000 and per_room.loc["R1", "money"] == 1195
    # money is the ledger's: the deductions of the range less the reversal add up to it
    entries = [e for room in ("R1", "R2") for e in (await site.engine.ledger(room))[1] if e.kind in ("deduction", "reversal")]
    assert -sum(e.amount_minor for e in entries) == 1720
