"""Property tests of the back office, on random ledgers, readings and charge rules:
  - a statement's closing balance is the ledger's balance at its end (opening + entries = closing);
  - re-pricing billed readings under the version they were billed with posts 0.00 for every account;
  - a billing run of the same month twice posts nothing the second time;
  - the lines of a bill add up to its total, and opening − total = closing.
(The ``site`` fixture reconciles the ledger after each test.)"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from scada.billing.statements import bill_lines, statement_of
from scada.prepaid.ledger import post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_definition import TariffDefinition
from scada.site.models import Meter, Room

from ..prepaid.conftest import CASHIER, register_meter_tags
from .conftest import MANAGER, SUPERVISOR, TZ8, Billing

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_ids = itertools.count(1)
SIGNED = {"recharge": (1, 1), "payment": (1, 1), "refund": (-1, -1), "charge": (-1, -1), "late_fee": (-1, -1), "adjustment": (-1, 1)}


async def new_room(billing: Billing, *, area: str = "20", meter: bool = True) -> tuple[str, str]:
    n = next(_ids)
    room, meter_id = f"PR{n}", f"PE{n}"
    async with billing.site.db.transaction() as s:
        s.add(Room(id=room, floor_id="B-F1", name=room, area_m2=Decimal(area)))
        await s.flush()
        if meter:
            s.add(Meter(id=meter_id, kind="electricity", role="tenant", room_id=room, building_id="B", profile="p", link="gw",
                        unit_id=100 + n % 100, multiplier=Decimal(1), initial_reading=Decimal(0), max_power_kw=Decimal(10) ** 6, active=True))
    await billing.site.assets.load()
    register_meter_tags(billing.site.tagdb, [meter_id])
    return room, meter_id


entry = st.tuples(st.sampled_from(sorted(SIGNED)), st.integers(1, 10_000_000), st.integers(0, 60 * 24 * 90))


@SETTINGS
@given(entries=st.lists(entry, max_size=30), cut=st.tuples(st.integers(-100, 60 * 24 * 95), st.integers(0, 60 * 24 * 100)))
async def test_statement_closing_is_the_ledger_balance(billing: Billing, entries: list[tuple[str, int, int]], cut: tuple[int, int]) -> None:
    if await billing.engine.tariffs.get("FLAT") is None:
        await billing.site.flat_tariff()
    room, _ = await new_room(billing)
    await billing.site.open(room, opening=0)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with billing.site.db.transaction() as s:
        a = await s.scalar(select(Account).where(Account.open_room_id == room))
        assert a is not None
        for kind, amount, minute in entries:
            lo, hi = SIGNED[kind]
            sign = hi if amount % 2 or lo == hi else lo
            post(s, a, kind, sign * amount, CASHIER, base + dt.timedelta(minutes=minute), reason=kind)
        account_id, balance = a.id, a.balance_minor
    start, end = sorted(base + dt.timedelta(minutes=m) for m in cut)
    end += dt.timedelta(minutes=1)
    async with billing.site.db.sessions() as s:
        st_ = await statement_of(s, account_id, room, start, end, 2, billing.svc.ctx.commodity_of)
        total_to = await s.scalar(select(func.sum(LedgerEntry.amount_minor)).where(LedgerEntry.account_id == account_id, LedgerEntry.ts < end))
    moved = sum(int(Decimal(e["amount"]) * 100) for e in st_.entries)
    assert st_.opening_minor + moved == st_.closing_minor == int(total_to or 0)
    st_all = None
    async with billing.site.db.sessions() as s:
        st_all = await statement_of(s, account_id, room, base - dt.timedelta(days=1), dt.datetime.now(dt.UTC) + dt.timedelta(days=1), 2,
                                    billing.svc.ctx.commodity_of)
    assert st_all.opening_minor == 0 and st_all.closing_minor == balance


PERIODS = ("sharp", "peak", "flat", "valley")
reading = st.tuples(st.integers(60, 6 * 3600), st.tuples(*[st.integers(0, 3000)] * 4))


@SETTINGS
@given(readings=st.lists(reading, min_size=1, max_size=25), tou_registers=st.booleans())
async def test_repricing_under_the_same_version_is_zero(billing: Billing, readings: list[tuple[int, tuple[int, ...]]], tou_registers: bool) -> None:
    """Random readings (with or without period registers, across days, tier blocks and a
    month's end) billed live under a TOU tariff with monthly tiers and an odd price, then
    re-priced under that same version: every account's difference is exactly 0.00."""
    if await billing.engine.tariffs.get("PROP") is None:
        definition = {"tou": {"periods": [{"name": "sharp", "price": "1.2347"}, {"name": "peak", "price": "0.9871"},
                                          {"name": "flat", "price": "0.5683"}, {"name": "valley", "price": "0.3011"}],
                              "seasons": [{"workday": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["19:00", "sharp"], ["21:00", "flat"]]}]},
                      "tiers": {"cycle": "monthly", "blocks": [{"up_to": "50", "adder": "0"}, {"up_to": "120", "adder": "0.0513"}, {"adder": "0.3077"}]}}
        await billing.engine.tariffs.create("PROP", "prop", "electricity", TariffDefinition.model_validate(definition), CASHIER,
                                            effective_from=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    room, meter = await new_room(billing)
    await billing.site.open(room, opening=10_000_000, tariff="PROP")
    t = dt.datetime(2026, 3, 30, 20, tzinfo=TZ8)
    await billing.move_in(room, t - dt.timedelta(days=1))
    regs = [0, 0, 0, 0]
    await billing.bill_readings([Reading(meter, Decimal(0), t, {p: Decimal(0) for p in PERIODS} if tou_registers else None)])
    for seconds, deltas in readings:
        t += dt.timedelta(seconds=seconds)
        regs = [r + d for r, d in zip(regs, deltas, strict=True)]
        total = Decimal(sum(regs)) / 100
        registers = {p: Decimal(r) / 100 for p, r in zip(PERIODS, regs, strict=True)} if tou_registers else None
        await billing.bill_readings([Reading(meter, total, t, registers)])
    draft = await billing.svc.draft_adjustment(tariff="PROP", version=1, start=dt.datetime(2026, 3, 29, 20, tzinfo=TZ8),
                                               end=t + dt.timedelta(seconds=1), rooms=[room], apply="ledger", reason="", actor=MANAGER)
    assert [a["difference"] for a in draft["accounts"]] in ([], ["0.00"]) and draft["total"]["difference"] == "0.00"
    assert all(a["charged"] == a["repriced"] for a in draft["accounts"])
    before = await billing.account(room)
    await billing.svc.approve_adjustment(draft["id"], SUPERVISOR)
    after = await billing.account(room)
    assert after.balance_minor == before.balance_minor and await billing.entries(room, "adjustment") == []


rule = st.fixed_dictionaries({
    "kind": st.sampled_from(["fixed", "per_area"]),
    "amount": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2).map(str),
    "period": st.sampled_from(["monthly", "quarterly", "yearly", "once"]),
    "settle": st.sampled_from(["from_balance", "on_bill"]),
    "tax_rate": st.one_of(st.none(), st.sampled_from(["0.06", "0.09", "0.13"])),
    "start_day": st.integers(0, 120),
})


@SETTINGS
@given(rules=st.lists(rule, min_size=1, max_size=4), moved_in=st.integers(0, 150), area=st.sampled_from(["12.5", "45.5", "100"]))
async def test_a_run_twice_posts_nothing_the_second_time_and_lines_add_up(billing: Billing, rules: list[dict[str, object]], moved_in: int,
                                                                         area: str) -> None:
    if await billing.engine.tariffs.get("FLAT") is None:
        await billing.site.flat_tariff()
    room, _ = await new_room(billing, area=area, meter=False)
    await billing.site.open(room, opening=0)
    origin = dt.date(2026, 6, 1)
    await billing.move_in(room, dt.datetime.combine(origin + dt.timedelta(days=moved_in), dt.time(9), TZ8))
    for r in rules:
        await billing.svc.create_rule({**{k: v for k, v in r.items() if k != "start_day"}, "name": "R", "targets": {"rooms": [room]},
                                       "start": origin + dt.timedelta(days=int(r["start_day"]))}, MANAGER)  # type: ignore[call-overload]
    billing.at(dt.datetime(2026, 12, 1, 1, tzinfo=TZ8))
    for month in ("2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"):
        first = await billing.svc.run(month, [room], actor=MANAGER)
        async with billing.site.db.sessions() as s:
            count = await s.scalar(select(func.count()).select_from(LedgerEntry))
        again = await billing.svc.run(month, [room], actor=MANAGER)
        async with billing.site.db.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(LedgerEntry)) == count
        assert again.posted == 0 and again.issued == 0 and [b["id"] for b in again.bills] == [b["id"] for b in first.bills]
        for bill in first.bills:
            cents = sum(int(Decimal(ln["amount"]) * 100) for ln in bill["lines"])
            assert cents == int(Decimal(bill["total"]) * 100)
            assert Decimal(bill["opening_balance"]) - Decimal(bill["total"]) == Decimal(bill["closing_balance"])
    # the bills chain: each month opens where the last one closed, and the last closes at the balance
    bills = sorted(await billing.svc.bills(room=room), key=lambda b: b["period"])
    for a, b in itertools.pairwise(bills):
        assert a["closing_balance"] == b["opening_balance"]
    assert int(Decimal(bills[-1]["closing_balance"]) * 100) == (await billing.account(room)).balance_minor


line = st.tuples(st.sampled_from(["peak", "valley", None]), st.decimals(min_value=0, max_value=500, places=3), st.sampled_from(["0.3011", "0.9871", "1.2"]))


@settings(max_examples=200, deadline=None)
@given(deductions=st.lists(st.lists(line, min_size=1, max_size=3), max_size=12), others=st.lists(st.tuples(st.sampled_from(sorted(SIGNED)),
       st.integers(-100_000, 100_000)), max_size=8), remainder=st.decimals(min_value=Decimal("-0.005"), max_value=Decimal("0.005"), places=4))
def test_bill_lines_add_up_to_the_ledger_movement(deductions: list[list[tuple[str | None, Decimal, str]]], others: list[tuple[str, int]],
                                                  remainder: Decimal) -> None:
    """Whatever the entries, the lines add up exactly to what they moved (energy's rounded total
    spread over its lines by largest remainder)."""
    from scada.prepaid.money import Rounding

    rounding = Rounding(2)
    r = remainder
    rows: list[LedgerEntry] = []
    for lines in deductions:
        cost = sum((q * Decimal(p) for _, q, p in lines), Decimal(0))
        billed, r = rounding.carry(r, cost)
        detail = {"lines": [{"quantity": str(q), "price": p, "amount": str(q * Decimal(p)), **({"period": per} if per else {})} for per, q, p in lines]}
        rows.append(LedgerEntry(id=len(rows) + 1, kind="deduction", amount_minor=-billed, meter_id="E1", tariff_id="T", detail=detail, cost=cost,
                                quantity=sum((q for _, q, _ in lines), Decimal(0))))
    for kind, amount in others:
        rows.append(LedgerEntry(id=len(rows) + 1, kind=kind, amount_minor=amount, reason=kind, detail=None))
    got = bill_lines(rows, 2, "half_up", lambda m, t: "electricity", {"electricity": Decimal("0.13")})
    assert sum(ln["amount_minor"] for ln in got) == -sum(e.amount_minor for e in rows)
