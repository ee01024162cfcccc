"""Worked examples computed by hand (the arithmetic is in each docstring), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from scada.prepaid.tariff_definition import TariffDefinition

from ...harness import write_lock_held
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


async def test_year_on_year_by_month_with_a_missing_month(reports: Reports) -> None:
    """R1's electricity by month, January to April 2026, against 2025 (March 2025 has no data)
    and against September to December 2025 (the previous four months):

      month  2026  2025 (yoy)                 previous (pop)
      Jan    100    80  +20, 20/80  = 25.00 %   Sep  50  +50, 100.00 %
      Feb    110    90  +20, 20/90  = 22.22 %   Oct 100  +10,  10.00 %
      Mar    120     —  missing: no change      Nov 100  +20,  20.00 %
      Apr     90   120  −30, −30/120 = −25.00 % Dec   0  +90, no per cent (from zero)

    R1 over the range: 420 kWh; a year earlier 80 + 90 + 120 = 290 with one month missing, so no
    year-on-year change; the previous range 50 + 100 + 100 + 0 = 250: +170, 170/250 = 68.00 %.
    R2 and R3 have no data in any range: marked current, year_ago and previous."""
    for (y, m), kwh in {(2026, 1): 100, (2026, 2): 110, (2026, 3): 120, (2026, 4): 90, (2025, 1): 80, (2025, 2): 90, (2025, 4): 120,
                        (2025, 9): 50, (2025, 10): 100, (2025, 11): 100, (2025, 12): 0}.items():
        await reports.intervals("E1", local(y, m, 15, 12), [{"energy_total": kwh}])
    out = await reports.report("compare", **{"from": "2026-01-01", "to": "2026-04-30", "interval": "month", "group": "room"})
    assert out["year_ago"]["from"].startswith("2025-01-01") and out["previous"]["from"].startswith("2025-09-01")
    rows = {(r["month"], r["room"]): r for r in out["rows"]}
    got = [(m, rows[(m, "R1")]["consumption"], rows[(m, "R1")]["year_ago"], rows[(m, "R1")]["yoy_change"], rows[(m, "R1")]["yoy_pct"],
            rows[(m, "R1")]["previous"], rows[(m, "R1")]["pop_change"], rows[(m, "R1")]["pop_pct"], rows[(m, "R1")]["missing"])
           for m in ("2026-01", "2026-02", "2026-03", "2026-04")]
    assert got == [
        ("2026-01", "100", "80", "20", "25.00", "50", "50", "100.00", ""),
        ("2026-02", "110", "90", "20", "22.22", "100", "10", "10.00", ""),
        ("2026-03", "120", None, None, None, "100", "20", "20.00", "year_ago"),
        ("2026-04", "90", "120", "-30", "-25.00", "0", "90", None, ""),
    ]
    assert rows[("2026-02", "R2")]["missing"] == "current,year_ago,previous"
    report = await reports.service.report("compare", {"from": "2026-01-01", "to": "2026-04-30", "interval": "month"})
    r1 = {c.name: report.text(c, v) for c, v in zip(report.values, report.aggregate(["room"]).set_index("room").loc["R1"], strict=True)}
    assert (r1["consumption"], r1["year_ago"], r1["yoy_change"], r1["yoy_pct"], r1["year_ago_missing"], r1["missing"]) == (
        "420", "290", None, None, "1", "year_ago")
    assert (r1["previous"], r1["pop_change"], r1["pop_pct"]) == ("250", "170", "68.00")


async def test_finance_day_with_three_channels_a_refund_and_a_reversal(reports: Reports) -> None:
    """Today, three accounts opened with nothing, then:
      cashier1: R1 100.00 cash, R2 50.00 WeChat, a refund of 10.00 cash to R2;
      cashier2: R1 20.00 cash, R3 30.00 Alipay, which cashier2 then reverses (−30.00).
    By channel: cash recharges 100 + 20 = 120.00, refunds 10.00, net 110.00; WeChat 50.00;
    Alipay 30.00 recharged and −30.00 reversed (the reversal counts in the channel it undoes): net 0.00.
    By cashier: cashier1 recharges 150.00, refunds 10.00, net 140.00; cashier2 recharges 50.00,
    reversals −30.00, net 20.00.
    Totals: recharges 200.00, refunds 10.00, reversals −30.00, net 160.00; the accounts held 0.00
    before and 160.00 after (R1 120.00, R2 40.00, R3 0.00): reconciled with the ledger."""
    from scada.users.audit import Actor

    site = reports.site
    c1, c2 = Actor("cashier1", "api", "cashier"), Actor("cashier2", "api", "cashier")
    await site.flat_tariff()
    await site.flat_tariff("FLAT_W", "3.5", "water")
    for room in ("R1", "R2", "R3"):
        await site.open(room, opening=0, water="FLAT_W" if room == "R2" else None)
    await site.engine.recharge("R1", 10_000, channel="cash", reference="c-1", actor=c1)
    await site.engine.recharge("R2", 5_000, channel="wechat", reference="w-1", actor=c1)
    await site.engine.refund("R2", 1_000, actor=c1, reason="overpaid", channel="cash")
    await site.engine.recharge("R1", 2_000, channel="cash", reference="c-2", actor=c2)
    ali = await site.engine.recharge("R3", 3_000, channel="alipay", reference="a-1", actor=c2)
    await site.engine.reverse(ali.entry.id, actor=c2, reason="wrong room")
    today = dt.datetime.now(dt.UTC).astimezone(reports.sources.tz).date()
    span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat(), "interval": "year"}
    out = await reports.report("finance", group="channel", **span)
    by = {r["channel"]: r for r in out["rows"]}
    assert {k: (v["recharges"], v["refunds"], v["reversals"], v["net"]) for k, v in by.items() if v["net"] != "0.00" or k} == {
        "cash": ("120.00", "10.00", "0.00", "110.00"), "wechat": ("50.00", "0.00", "0.00", "50.00"),
        "alipay": ("30.00", "0.00", "-30.00", "0.00")}
    t = out["totals"]
    assert (t["recharges"], t["refunds"], t["reversals"], t["deductions"], t["net"]) == ("200.00", "10.00", "-30.00", "0.00", "160.00")
    assert (t["opening_balance"], t["closing_balance"], out["reconciled"]) == ("0.00", "160.00", True)
    cashiers = {r["cashier"]: r for r in (await reports.report("finance", group="cashier", **span))["rows"]}
    assert (cashiers["cashier1"]["recharges"], cashiers["cashier1"]["refunds"], cashiers["cashier1"]["net"]) == ("150.00", "10.00", "140.00")
    assert (cashiers["cashier2"]["recharges"], cashiers["cashier2"]["reversals"], cashiers["cashier2"]["net"]) == ("50.00", "-30.00", "20.00")
    rooms = {r["room"]: r for r in (await reports.report("finance", group="room", **span))["rows"]}
    assert {k: (v["opening_balance"], v["closing_balance"]) for k, v in rooms.items()} == {
        "R1": ("0.00", "120.00"), "R2": ("0.00", "40.00"), "R3": ("0.00", "0.00")}


async def test_finance_fails_loudly_when_the_ledger_does_not_reconcile(reports: Reports) -> None:
    """An account whose balance is one fen off its entries (a write outside the ledger): the report
    is refused naming the account, not answered with totals that do not add up."""
    import pytest
    from sqlalchemy import update

    from scada.prepaid.models import Account
    from scada.reports.finance import LedgerMismatch

    site = reports.site
    await site.flat_tariff()
    await site.open("R1", opening=0)
    await site.engine.recharge("R1", 5_000, channel="cash", reference="c-9", actor=CASHIER)
    today = dt.datetime.now(dt.UTC).astimezone(reports.sources.tz).date()
    span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}
    assert (await reports.report("finance", **span))["reconciled"] is True
    async with site.db.transaction() as s:
        await s.execute(update(Account).where(Account.room_id == "R1").values(balance_minor=Account.balance_minor + 1))
    try:
        with pytest.raises(LedgerMismatch) as err:
            await reports.report("finance", **span)
        assert "account 1: its entries add up to 50.00, its last entry's running balance is 50.00, its balance is 50.01" in str(err.value)
    finally:
        async with site.db.transaction() as s:
            await s.execute(update(Account).where(Account.room_id == "R1").values(balance_minor=Account.balance_minor - 1))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_money_reports_read_without_the_write_lock(reports: Reports, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finance report reads the whole ledger's sums: on the read-only connection, so that it
    neither waits for billing's write lock nor holds it while it reads."""
    site = reports.site
    await site.flat_tariff()
    await site.open("R1", opening=0)
    await site.engine.recharge("R1", 10_000, channel="cash", reference="c-1", actor=CASHIER)
    today = dt.datetime.now(dt.UTC).astimezone(reports.sources.tz).date()
    span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat(), "interval": "year"}
    with write_lock_held(site.db.url.database or "", monkeypatch):  # a report that took the lock fails soon
        finance = await reports.report("finance", group="channel", **span)
        ledger = await site.engine.ledger("R1", limit=10)
    assert finance["totals"]["recharges"] == "100.00" and finance["reconciled"] is True
    assert [e.kind for e in ledger[1]] == ["recharge", "opening"]
