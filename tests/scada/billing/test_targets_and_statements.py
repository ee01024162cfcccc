"""Charge rules aimed at a floor or a building in a billing run, and a statement's consumption
per tariff period checked against the ledger's deductions (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from scada.billing.statements import balance_at, statement_of
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor

from ..prepaid.conftest import CASHIER
from .conftest import AREAS, MANAGER, TZ8, Billing

# R2 moves to a second floor of building B, R3 to building C (areas as the fixture set them)
MORE_FLOORS = f"""
[[buildings]]
id = "C"
name = "C"

[[floors]]
id = "B-F2"
building = "B"
level = 2
name = "F2"

[[floors]]
id = "C-F1"
building = "C"
level = 1
name = "C1"

[[rooms]]
id = "R2"
floor = "B-F2"
name = "R2"
area_m2 = "{AREAS["R2"]}"

[[rooms]]
id = "R3"
floor = "C-F1"
name = "R3"
area_m2 = "{AREAS["R3"]}"
"""

TOU = {"periods": [{"name": "valley", "price": "0.30"}, {"name": "peak", "price": "1.00"}, {"name": "flat", "price": "0.60"}],
       "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["18:00", "flat"]]}]}


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ8)


async def test_rules_for_a_floor_and_a_building_charge_only_their_rooms(billing: Billing) -> None:
    """R1 on B-F1, R2 on B-F2 (building B), R3 on C-F1 (building C), all postpaid from 1 October
    2026. On the bill for October: cleaning 100.00 for the floor B-F1, a fee of 2.00 per m² for
    the building B, a lift fee of 7.00 for the building C.
      R1: cleaning 100.00 + fee 45.5 × 2.00 = 91.00 → 191.00
      R2: fee 32 × 2.00 = 64.00 (not on B-F1: no cleaning)
      R3: lift 7.00 (building C: neither)"""
    await apply_site(billing.site.db, parse_toml(MORE_FLOORS, "<more>"), Actor("t", "cli"))
    await billing.site.assets.load()
    rooms = billing.site.assets.snapshot.rooms
    assert [(r, rooms[r].floor_id, rooms[r].building_id) for r in ("R1", "R2", "R3")] == [
        ("R1", "B-F1", "B"), ("R2", "B-F2", "B"), ("R3", "C-F1", "C")]
    await billing.site.flat_tariff()
    await billing.site.flat_tariff("WATER", "3.5", "water")
    for room in ("R1", "R2", "R3"):
        await billing.site.open(room, opening=0, mode="postpaid", water="WATER" if room == "R2" else None)
        await billing.move_in(room, local(2026, 10, 1))
    for name, kind, amount, targets in (("Cleaning", "fixed", "100", {"floor": "B-F1"}), ("Fee", "per_area", "2.00", {"building": "B"}),
                                        ("Lift", "fixed", "7", {"building": "C"})):
        await billing.svc.create_rule({"name": name, "kind": kind, "amount": amount, "period": "monthly", "targets": targets,
                                       "settle": "on_bill", "start": dt.date(2026, 10, 1)}, MANAGER)
    billing.at(local(2026, 11, 1, 9))
    run = await billing.svc.run("2026-10", actor=MANAGER)
    assert run.issued == 3
    got = {room: [(e.reason, e.amount_minor) for e in await billing.entries(room, "charge")] for room in ("R1", "R2", "R3")}
    assert got == {
        "R1": [("Cleaning 2026-10", -10_000), ("Fee 2026-10", -9_100)],
        "R2": [("Fee 2026-10", -6_400)],
        "R3": [("Lift 2026-10", -700)],
    }
    dues = {b["accounts"][0]["room"]: b["total_due"] for b in run.bills}
    assert dues == {"R1": "191.00", "R2": "64.00", "R3": "7.00"}
    # the rules charge from the balance the same rooms
    for room in ("R1", "R2", "R3"):
        assert (await billing.account(room)).balance_minor == {"R1": -19_100, "R2": -6_400, "R3": -700}[room]


async def test_statement_consumption_per_period_is_the_ledgers(billing: Billing) -> None:
    """R1 on a time-of-use tariff (valley 0.30 00–08, peak 1.00 08–18, flat 0.60 18–24), R2's
    water at 3.50 a m³, Tuesday 3 and Wednesday 4 November 2026:
      E1 100 at 00:00 → 104 at 08:00: 4 kWh valley (1.20); → 114 at 18:00: 10 peak (10.00);
      → 114.5 at 23:30: 0.5 flat (0.30); → 115.5 at 00:30 on the 4th: 0.5 flat + 0.5 valley (0.45).
      W2 10 → 11.5 on the 4th: 1.5 m³ (5.25).
    R1's statement of both days: flat 1 kWh, peak 10, valley 4.5, deductions −11.95; of the 4th
    alone: flat 0.5, valley 0.5. R2's of both days: water 1.5 m³. Each equals the sum of the
    quantities of the ledger's deduction lines in its range."""
    await billing.engine.tariffs.create("TOU", "tou", "electricity", TariffDefinition.model_validate({"tou": TOU}), CASHIER,
                                        effective_from=local(2026, 1, 1))
    await billing.engine.tariffs.create("W", "water", "water", TariffDefinition.model_validate({"price": "3.50"}), CASHIER,
                                        effective_from=local(2026, 1, 1))
    await billing.site.open("R1", opening=10_000, tariff="TOU")
    await billing.site.open("R2", opening=10_000, tariff="TOU", water="W")
    for room in ("R1", "R2"):
        await billing.move_in(room, local(2026, 11, 1))
    for meter, value, t in (("E1", "100", local(2026, 11, 3)), ("E1", "104", local(2026, 11, 3, 8)), ("E1", "114", local(2026, 11, 3, 18)),
                            ("E1", "114.5", local(2026, 11, 3, 23, 30)), ("E1", "115.5", local(2026, 11, 4, 0, 30)),
                            ("W2", "10", local(2026, 11, 4, 9)), ("W2", "11.5", local(2026, 11, 4, 11))):
        # posted a minute after the reading: the statement ranges over the ledger's times
        await billing.bill_readings([Reading(meter, Decimal(value), t)], now=(t + dt.timedelta(minutes=1)).astimezone(dt.UTC))

    async def statement(room: str, start: dt.datetime, end: dt.datetime) -> dict:
        return (await billing.svc.statement(room, start, end)).as_json(2)

    async def ledger_use(room: str, start: dt.datetime, end: dt.datetime) -> dict[tuple[str, str], Decimal]:
        """The quantities of the energy lines of the room's deductions posted in [start, end)."""
        out: dict[tuple[str, str], Decimal] = {}
        for e in await billing.entries(room, "deduction"):
            if start <= e.ts < end:
                commodity = "water" if e.meter_id.startswith("W") else "electricity"
                for ln in e.detail["lines"]:
                    if ln.get("kind", "energy") == "energy":
                        key = (commodity, ln.get("period") or "total")
                        out[key] = out.get(key, Decimal(0)) + Decimal(ln["quantity"])
        return out

    def use(st: dict) -> dict[tuple[str, str], Decimal]:
        return {(c["commodity"], c["period"]): Decimal(c["quantity"]) for c in st["consumption"]}

    both = (local(2026, 11, 3), local(2026, 11, 5))
    st = await statement("R1", *both)
    assert [(c["commodity"], c["period"], c["quantity"], c["unit"]) for c in st["consumption"]] == [
        ("electricity", "flat", "1", "kWh"), ("electricity", "peak", "10", "kWh"), ("electricity", "valley", "4.5", "kWh")]
    assert st["totals"]["deduction"] == "-11.95" and use(st) == await ledger_use("R1", *both)
    day4 = (local(2026, 11, 4), local(2026, 11, 5))
    st4 = await statement("R1", *day4)
    assert use(st4) == {("electricity", "flat"): Decimal("0.5"), ("electricity", "valley"): Decimal("0.5")} == await ledger_use("R1", *day4)
    assert st4["totals"]["deduction"] == "-0.45"
    st2 = await statement("R2", *both)
    assert [(c["commodity"], c["quantity"], c["unit"]) for c in st2["consumption"]] == [("water", "1.5", "m3")]
    assert use(st2) == await ledger_use("R2", *both) and st2["totals"]["deduction"] == "-5.25"
    # and the statement's own sums hold: opening + entries = closing = the ledger's balance at
    # ``to`` (the opening credit is posted today, after the range: 0.00 − 11.95)
    a = await billing.account("R1")
    async with billing.site.db.sessions() as s:
        again = await statement_of(s, a.id, "R1", *both, 2, billing.svc.ctx.commodity_of)
        at_to = await balance_at(s, a.id, both[1])
    assert again.opening_minor + sum(again.by_kind.values()) == again.closing_minor == at_to == -1_195
