"""Pure decision logic: cutoff/reconnect policy, friendly-credit calendar, supply states,
balance alarm levels and reading plausibility."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from scada.prepaid.levels import Threshold, level_for, next_level, parse_thresholds
from scada.prepaid.money import MoneyError
from scada.prepaid.policy import (
    Action,
    FriendlyCalendar,
    FriendlyWindow,
    IllegalTransition,
    SupplyFacts,
    SupplyState,
    decide,
    transition,
)
from scada.prepaid.readings import Reading, Verdict, assess

TZ = ZoneInfo("Asia/Shanghai")
ON, CUTTING, OFF, RESTORING = SupplyState.ON, SupplyState.CUTTING, SupplyState.OFF, SupplyState.RESTORING

BASE = SupplyFacts(open=True, balance_minor=100, credit_limit_minor=0, emergency_active_minor=0, protected=False,
                   friendly_credit=True, auto_reconnect=True, state=ON)


def test_cut_when_at_or_below_minus_the_credit_limit() -> None:
    assert decide(BASE, friendly_now=False).action is Action.NONE
    assert decide(replace(BASE, balance_minor=0), friendly_now=False).action is Action.CUT
    assert decide(replace(BASE, balance_minor=-500, credit_limit_minor=1000), friendly_now=False).action is Action.NONE
    assert decide(replace(BASE, balance_minor=-1000, credit_limit_minor=1000), friendly_now=False).action is Action.CUT
    # emergency credit taken moves the threshold by its amount
    assert decide(replace(BASE, balance_minor=-300, emergency_active_minor=500), friendly_now=False).action is Action.NONE
    assert decide(replace(BASE, balance_minor=-500, emergency_active_minor=500), friendly_now=False).action is Action.CUT


def test_never_inside_a_friendly_window_or_for_protected_accounts() -> None:
    due = replace(BASE, balance_minor=-1)
    waiting = decide(due, friendly_now=True)
    assert waiting.action is Action.NONE and waiting.waiting == "friendly_credit"
    assert decide(replace(due, friendly_credit=False), friendly_now=True).action is Action.CUT  # account without friendly credit
    protected = decide(replace(due, protected=True), friendly_now=False)
    assert protected.action is Action.NONE and protected.waiting == "protected"
    # a protected account that was cut before being protected is reconnected
    assert decide(replace(due, protected=True, state=OFF), friendly_now=False).action is Action.CONNECT
    # a cut already under way continues (retries) even if a window has begun
    assert decide(replace(due, state=CUTTING), friendly_now=True).action is Action.CUT


def test_reconnect_automatically_or_after_an_operator() -> None:
    off = replace(BASE, state=OFF, balance_minor=5_000)
    assert decide(off, friendly_now=False).action is Action.CONNECT
    manual = replace(off, auto_reconnect=False)
    d = decide(manual, friendly_now=False)
    assert d.action is Action.NONE and d.waiting == "operator"
    assert decide(replace(manual, operator_release=True), friendly_now=False).action is Action.CONNECT
    assert decide(replace(off, balance_minor=0), friendly_now=False).action is Action.NONE  # still exhausted
    assert decide(replace(BASE, state=RESTORING), friendly_now=False).action is Action.CONNECT  # retry a restore


def test_closed_account_is_cut() -> None:
    closed = replace(BASE, open=False)
    assert decide(closed, friendly_now=True).action is Action.CUT
    assert decide(replace(closed, protected=True), friendly_now=False).action is Action.CUT
    assert decide(replace(closed, state=OFF), friendly_now=False).action is Action.NONE


def test_supply_state_machine() -> None:
    assert transition(ON, CUTTING) is CUTTING
    assert transition(CUTTING, OFF) is OFF
    assert transition(OFF, RESTORING) is RESTORING
    assert transition(RESTORING, ON) is ON
    assert transition(CUTTING, RESTORING) is RESTORING
    assert transition(RESTORING, CUTTING) is CUTTING
    for a, b in ((ON, OFF), (OFF, ON), (OFF, CUTTING), (ON, RESTORING)):
        with pytest.raises(IllegalTransition, match=f"from {a.value} to {b.value}"):
            transition(a, b)


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def test_friendly_calendar() -> None:
    cal = FriendlyCalendar(
        TZ, (FriendlyWindow(frozenset(range(1, 8)), 18 * 60, 8 * 60),), weekends=True,
        holidays=frozenset({dt.date(2026, 10, 1)}),
    )
    assert not cal.active(local(2026, 3, 2, 12))  # Monday noon
    assert cal.active(local(2026, 3, 2, 18))  # Monday 18:00
    assert cal.active(local(2026, 3, 3, 7, 59))  # Tuesday before 08:00 (the window began Monday)
    assert not cal.active(local(2026, 3, 3, 8))
    assert cal.active(local(2026, 3, 7, 12))  # Saturday
    assert cal.active(local(2026, 10, 1, 12))  # a public holiday (Thursday)
    assert cal.ends_after(local(2026, 3, 2, 12)) == local(2026, 3, 2, 12)
    assert cal.ends_after(local(2026, 3, 2, 20)) == local(2026, 3, 3, 8)
    # Friday evening: the window runs into the weekend and ends Monday 08:00
    assert cal.ends_after(local(2026, 3, 6, 19)) == local(2026, 3, 9, 8)
    weekday_evenings = FriendlyCalendar(TZ, (FriendlyWindow(frozenset({1, 2, 3, 4, 5}), 20 * 60, 23 * 60),))
    assert weekday_evenings.active(local(2026, 3, 6, 21)) and not weekday_evenings.active(local(2026, 3, 7, 21))


def test_levels_fire_once_and_clear_on_credit() -> None:
    t = [Threshold(1, money_minor=2000), Threshold(2, money_minor=500), Threshold(3, money_minor=0)]
    assert [level_for(b, t, None) for b in (2001, 2000, 501, 500, 1, 0, -5)] == [0, 1, 1, 2, 2, 3, 3]
    assert next_level(1, 2, credited=False) == 2
    assert next_level(2, 1, credited=False) == 2  # a debit never lowers the level
    assert next_level(3, 0, credited=True) == 0
    days = [Threshold(1, days=D(3))]
    assert level_for(1000, days, None) == 0  # no history: unknown
    assert level_for(1000, days, D(400)) == 1 and level_for(1300, days, D(400)) == 0


def test_threshold_parsing() -> None:
    assert parse_thresholds([{"level": 1, "money": "20"}, {"level": 2, "days": "1.5"}], 2) == [
        Threshold(1, money_minor=2000), Threshold(2, days=D("1.5"))]
    for bad, field in (
        ([{"level": 4, "money": "1"}], "thresholds[0].level"),
        ([{"level": 1}], "thresholds[0]"),
        ([{"level": 1, "money": "1", "days": "1"}], "thresholds[0]"),
        ([{"level": 1, "money": "1.234"}], "thresholds[0].money"),
        ([{"level": 1, "days": "x"}], "thresholds[0].days"),
        ([{"level": 1, "money": "1"}, {"level": 1, "money": "2"}], "thresholds"),
    ):
        with pytest.raises(MoneyError) as err:
            parse_thresholds(bad, 2)
        assert err.value.field == field, bad


T = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def r(value: str, minutes: float) -> Reading:
    return Reading("E", D(value), T + dt.timedelta(minutes=minutes))


def test_reading_plausibility() -> None:
    kw = {"max_power_kw": D(6)}
    assert assess(None, None, r("5", 0), **kw).verdict is Verdict.BASELINE
    assert assess(D("10"), T, r("10", 5), **kw).verdict is Verdict.SKIP
    assert assess(D("10"), T, r("11", 0), **kw).verdict is Verdict.SKIP  # not newer
    ok = assess(D("10.00"), T, r("10.50", 5), **kw)  # 0.5 kWh in 5 min ≤ 6 kW × 1/12 h + 0.02
    assert ok.verdict is Verdict.BILL and ok.delta == D("0.50")
    jump = assess(D("10.00"), T, r("10.53", 5), **kw)
    assert jump.verdict is Verdict.HOLD and jump.kind == "jump"
    # the multiplier (CT ratio) counts: 0.05 × 40 = 2.0 kWh in 5 minutes > 0.5 + 2 steps (0.8)
    assert assess(D("10.00"), T, r("10.05", 5), max_power_kw=D(6), multiplier=D(40)).kind == "jump"
    assert assess(D("10.00"), T, r("10.03", 5), max_power_kw=D(6), multiplier=D(40)).verdict is Verdict.BILL
    back = assess(D("500.00"), T, r("3.00", 60), **kw)
    assert back.kind == "backwards"
    roll = assess(D("655.30"), T, r("0.10", 60), **kw)  # a 16-bit count of 0.01 wraps at 655.36
    assert roll.kind == "rollover" and roll.delta == D("0.16")
    assert assess(D("99999.9"), T, r("0.4", 60), **kw).kind == "rollover"  # a 5-digit display
    assert assess(D("10"), T, r("1000000", 1), max_power_kw=None).verdict is Verdict.BILL  # no limit known
