"""Property test of the finance report on random ledgers: its totals are the ledger's sums by kind
over the range, opening + net = closing, and each room's closing balance is its account's balance
(when the range ends after every entry). (The ``site`` fixture reconciles the ledger after it.)"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from scada.prepaid.ledger import post
from scada.prepaid.models import Account, LedgerEntry
from scada.users.audit import Actor

from .conftest import Reports, local

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# kind → sign of its amount, the column it lands in and the sign the column shows it with
KINDS = {"recharge": (1, "recharges", 1), "payment": (1, "payments", 1), "refund": (-1, "refunds", -1), "late_fee": (-1, "deductions_late_fees", -1),
         "adjustment": (0, "deductions_adjustments", -1), "settlement": (-1, "settlements", -1)}
ROOMS = ("R1", "R2", "R3")
CHANNELS = ("cash", "wechat", "alipay", None)
BASE = local(2026, 6, 1)

entry = st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from(ROOMS), st.integers(1, 1_000_000), st.integers(0, 60 * 24 * 20),
                  st.sampled_from(CHANNELS), st.booleans())


@SETTINGS
@given(entries=st.lists(entry, max_size=25), window=st.tuples(st.integers(0, 25), st.integers(1, 25)),
       group=st.sampled_from(["channel", "cashier", "room", "building"]), interval=st.sampled_from(["day", "week", "month"]))
async def test_finance_totals_are_the_ledger_sums(reports: Reports, entries: list, window: tuple[int, int], group: str, interval: str) -> None:
    site = reports.site
    if await site.engine.tariffs.get("FLAT") is None:
        await site.flat_tariff()
        await site.flat_tariff("FLAT_W", "3.5", "water")
        for room in ROOMS:
            await site.open(room, opening=0, water="FLAT_W" if room == "R2" else None)
    async with site.db.transaction() as s:
        accounts = {a.room_id: a for a in (await s.scalars(select(Account).where(Account.state == "open"))).all()}
        for kind, room, amount, minute, channel, negative in sorted(entries, key=lambda e: e[3]):
            sign = KINDS[kind][0] or (-1 if negative else 1)
            post(s, accounts[room], kind, sign * amount, Actor("u1" if negative else "u2", "api"), BASE + dt.timedelta(minutes=minute),
                 channel=channel)
    first = (BASE + dt.timedelta(days=window[0])).date()
    last = first + dt.timedelta(days=window[1])
    out = await reports.report("finance", **{"from": first.isoformat(), "to": last.isoformat(), "group": group, "interval": interval})
    start = dt.datetime.combine(first, dt.time(), reports.sources.tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), reports.sources.tz)
    async with site.db.sessions() as s:
        ledger = list((await s.scalars(select(LedgerEntry))).all())
        balances = {a.room_id: a.balance_minor for a in (await s.scalars(select(Account))).all()}
    inside = [e for e in ledger if start <= e.ts < end]
    expected: dict[str, int] = {}
    for e in inside:
        if e.kind in KINDS:
            column, shown = KINDS[e.kind][1], KINDS[e.kind][2]
            expected[column] = expected.get(column, 0) + shown * e.amount_minor
    t = out["totals"]
    for column in {c for _, c, _ in KINDS.values()}:
        assert t[column] == f"{expected.get(column, 0) / 100:.2f}", column
    net = sum(e.amount_minor for e in inside)
    opening = sum(e.amount_minor for e in ledger if e.ts < start)
    assert (t["net"], t["opening_balance"], t["closing_balance"]) == (f"{net / 100:.2f}", f"{opening / 100:.2f}", f"{(opening + net) / 100:.2f}")
    assert out["reconciled"] is True
    # the rows add up to the totals
    assert sum(int(r["net"].replace(".", "")) for r in out["rows"]) == net
    if group == "room" and all(e.ts < end for e in ledger):
        closing = {}
        for r in out["rows"]:
            closing[r["room"]] = r["closing_balance"]  # the last interval's
        assert closing == {room: f"{balances[room] / 100:.2f}" for room in ROOMS}
