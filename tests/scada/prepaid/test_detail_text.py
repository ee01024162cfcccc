"""The billing batch's ledger detail, built as JSON text (``Biller.charge(raw=True)``), is byte
for byte what encoding the dict of the other paths gives (``json.dumps``, as SQLAlchemy's JSON
type stores it), for time-of-use and flat tariffs, one version or a price change inside the
interval, tiers, period registers or none, multipliers; and the rest of the row, the cursor
and the account move alike. The cursor's registers, which the batch path writes and reads back
as text, are the same bytes as well."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scada.db.bulk import RawJSON
from scada.prepaid.deduction import Biller, Row, registers_json, registers_text
from scada.prepaid.ledger import thresholds_column, thresholds_from_column
from scada.prepaid.levels import Threshold
from scada.prepaid.money import Rounding, exact
from scada.prepaid.pricing import Line, Quote, TariffTimeline, TariffVersion
from scada.prepaid.tariff_definition import TariffDefinition

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TOU = {
    "periods": [{"name": "sharp", "price": "1.20"}, {"name": "peak", "price": "1.0"},
                {"name": "flat", "price": "0.6"}, {"name": "valley", "price": "0.3137"}],
    "seasons": [{"name": "all", "workday": [["00:00", "valley"], ["08:00", "peak"], ["11:00", "flat"], ["19:00", "sharp"]]}],
}
V1 = TariffVersion("T", 1, T0, TariffDefinition.model_validate({"tou": TOU}))
V2 = TariffVersion("T", 2, T0 + dt.timedelta(days=2), TariffDefinition.model_validate({"tou": {**TOU, "periods": [
    {"name": "sharp", "price": "1.3"}, {"name": "peak", "price": "1.1"}, {"name": "flat", "price": "0.7"}, {"name": "valley", "price": "0.4"}]}}))
TIERED = TariffVersion("T", 1, T0, TariffDefinition.model_validate(
    {"tou": TOU, "tiers": {"cycle": "monthly", "blocks": [{"up_to": "1", "adder": "0"}, {"adder": "0.05"}]}}))
FLAT = TariffVersion("T", 1, T0, TariffDefinition.model_validate({"price": "0.5"}))
TIMELINES = {"one": [V1], "two": [V1, V2], "tiered": [TIERED], "flat": [FLAT], "flat_then_tou": [FLAT, V2]}


class _Directory:
    def meter(self, meter_id: str) -> None:
        return None

    def predecessor(self, meter_id: str) -> None:
        return None


class _Info:
    kind = "electricity"
    max_power_kw = None

    def __init__(self, multiplier: D) -> None:
        self.multiplier = multiplier


def _pair(last_regs: dict[str, str] | None, stored: str = "dict") -> tuple[Row, Row]:
    registers: Any = dict(last_regs) if last_regs else last_regs
    if registers and stored == "text":  # as the batch reads it (STATES_BY_ID: the column's text)
        registers = RawJSON(json.dumps(registers))
    state = Row({"meter_id": "E1", "segment": 2, "last_reading": D("100.00"), "last_ts": T0 + dt.timedelta(days=1, hours=23),
                 "last_registers": registers, "updated_at": T0})
    account = Row({"id": 7, "room_id": "R1", "electricity_tariff_id": "T", "water_tariff_id": None, "remainder": D("0.004"),
                   "balance_minor": 10_000, "updated_at": T0})
    return state, account


steps = st.decimals(min_value=0, max_value=50, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    versions=st.sampled_from(sorted(TIMELINES)),
    minutes=st.integers(1, 60 * 30),
    deltas=st.fixed_dictionaries({"sharp": steps, "peak": steps, "flat": steps, "valley": steps}),
    registers=st.sampled_from(["none", "matching", "off_by_steps", "unknown_period"]),
    multiplier=st.sampled_from([D(1), D("1.0"), D(40), D("2.5")]),
    stored=st.sampled_from(["dict", "text"]),
)
def test_the_detail_text_is_what_encoding_the_dict_gives(
    versions: str, minutes: int, deltas: dict[str, D], registers: str, multiplier: D, stored: str
) -> None:
    timelines = {"T": TariffTimeline(TIMELINES[versions])}
    last = {"sharp": D("10.00"), "peak": D("20.00"), "flat": D("30.00"), "valley": D("40.00")}
    total = sum(deltas.values(), D(0))
    if total == 0:
        total = D("0.01")
    regs: dict[str, D] | None = None
    if registers != "none":
        regs = {k: last[k] + d for k, d in deltas.items()}
        if registers == "off_by_steps":
            total += D("0.02")
        if registers == "unknown_period":
            regs = {("shoulder" if k == "valley" else k): v for k, v in regs.items()}
    value = D("100.00") + total
    ts = T0 + dt.timedelta(days=1, hours=23, minutes=minutes)
    now = T0 + dt.timedelta(days=3)
    last_json = {k: format(v, "f") for k, v in last.items()}
    out: list[tuple[dict[str, Any] | None, Row, Row]] = []
    for raw in (False, True):
        biller = Biller(None, Rounding(2), TZ, _Directory())  # type: ignore[arg-type]
        state, account = _pair(last_json, stored)
        with exact():
            row = biller.charge(state, account, value, ts, regs, _Info(multiplier), timelines, {}, now, raw=raw)  # type: ignore[arg-type]
        out.append((row, state, account))
    (dict_row, st1, a1), (raw_row, st2, a2) = out
    assert dict_row is not None and raw_row is not None
    assert isinstance(raw_row["detail"], RawJSON) and isinstance(dict_row["detail"], dict)
    assert raw_row["detail"] == json.dumps(dict_row["detail"])
    assert json.loads(raw_row["detail"]) == dict_row["detail"]
    assert {k: v for k, v in raw_row.items() if k != "detail"} == {k: v for k, v in dict_row.items() if k != "detail"}
    assert [str(v) for v in (raw_row["quantity"], raw_row["cost"])] == [str(v) for v in (dict_row["quantity"], dict_row["cost"])]
    assert st1.__dict__ == st2.__dict__ and a1.__dict__ == a2.__dict__
    assert str(a1.remainder) == str(a2.remainder)
    if regs is not None:
        assert isinstance(st2.last_registers, RawJSON)
        assert st2.last_registers == json.dumps(registers_json(regs))
    else:
        assert st2.last_registers is None


def test_the_cursor_registers_text_is_what_encoding_the_dict_gives() -> None:
    odd = 'pe"ak\\é\n夜'
    for regs in ({"sharp": D("1.50"), "peak": D("0"), "flat": D("12345678.12345678"), "valley": D("-0.01")},
                 {odd: D("1E+2"), "flat": D("0.000")}, {}, None):
        text = registers_text(regs)
        assert text == (json.dumps(registers_json(regs)) if regs else None)


def test_the_cursor_registers_are_decoded_unless_they_are_the_text_written_last() -> None:
    biller = Biller(None, Rounding(2), TZ, _Directory())  # type: ignore[arg-type]
    written = {"sharp": D("1.00"), "peak": D("2.00")}
    biller._remember_registers("E1", json.dumps(registers_json(written)), written)
    state, _account = _pair({"sharp": "1.00", "peak": "2.00"}, "text")
    assert biller._last_registers(state) is written  # the same text: not decoded again
    other, _account = _pair({"sharp": "1.00", "peak": "2.50"}, "text")  # e.g. a rolled-back write
    assert biller._last_registers(other) == {"sharp": D("1.00"), "peak": D("2.50")}
    plain_dict, _account = _pair({"sharp": "1.00", "peak": "2.00"}, "dict")
    assert biller._last_registers(plain_dict) == written


def test_names_that_need_escaping_are_encoded_as_json_encodes_them() -> None:
    # tariff definitions only take lower-case period names today; the text must not rely on it
    odd = 'pe"ak\\é\n夜'
    lines = [Line("energy", 1, odd, None, D("1.50"), D("1.0"), D("1.500")),
             Line("tier", 2, None, 2, D("0.5"), D("0.05"), D("0.025"), cycle=f"monthly:{odd}")]
    quote = Quote(lines, D("1.525"), D("2"), False)
    biller = Biller(None, Rounding(2), TZ, _Directory())  # type: ignore[arg-type]
    text = biller._detail_text(quote, True, {odd: D("1.50"), "flat": D("0.50")}, D("1.5"))
    assert text == json.dumps({"lines": [ln.compact(version=True) for ln in lines],
                               "registers": {odd: "1.5", "flat": "0.5"}, "multiplier": "1.5"})


def test_exact_traps_inexact_nests_and_restores_the_context() -> None:
    import decimal

    import pytest

    outer = decimal.getcontext()
    with exact() as ctx:
        assert ctx.prec == 80 and ctx.traps[decimal.Inexact] and decimal.getcontext() is ctx
        with pytest.raises(decimal.Inexact):
            D(1) / D(3)
        with exact() as inner:
            assert inner is ctx  # nested: the same context
        assert decimal.getcontext() is ctx
        D(1) / D(4)
    assert decimal.getcontext() is outer and not outer.traps[decimal.Inexact]
    assert D(1) / D(3) == D("0.3333333333333333333333333333")  # the outer context again
    with pytest.raises(decimal.InvalidOperation), exact():
        D(0) / D(0)
    assert decimal.getcontext() is outer  # restored after an error too
    with exact() as a:
        a.flags[decimal.Rounded] = True
    with exact() as b:
        assert not b.flags[decimal.Rounded]  # a fresh copy each time: flags do not leak


def _carry_before(rounding: Rounding, remainder: D, cost: D) -> tuple[int, D]:
    """Rounding.carry as it was written before it gave each step its context."""
    import decimal

    from scada.prepaid.money import EXACT, minor_to_decimal

    with decimal.localcontext(EXACT):
        total = remainder + cost
        minor = rounding.to_minor(total)
        return minor, total - minor_to_decimal(minor, rounding.minor_units)


@settings(max_examples=500, deadline=None)
@given(
    remainder=st.decimals(min_value=-1, max_value=1, places=20, allow_nan=False, allow_infinity=False),
    cost=st.decimals(min_value=0, max_value=10**9, places=20, allow_nan=False, allow_infinity=False),
    minor_units=st.integers(0, 4),
    mode=st.sampled_from(["half_up", "half_even", "half_down", "up", "down"]),
)
def test_carry_rounds_and_carries_as_before(remainder: D, cost: D, minor_units: int, mode: Any) -> None:
    rounding = Rounding(minor_units, mode)
    got, expected = rounding.carry(remainder, cost), _carry_before(rounding, remainder, cost)
    assert got == expected and str(got[1]) == str(expected[1])


def test_thresholds_read_as_text_are_those_of_the_decoded_column() -> None:
    column = thresholds_column((Threshold(1, money_minor=2000), Threshold(2, days=D("1.5")), Threshold(3, money_minor=0)))
    text = json.dumps(column)
    assert thresholds_from_column(text) == thresholds_from_column(column) == thresholds_from_column(json.loads(text))
    assert thresholds_from_column(RawJSON(text)) is thresholds_from_column(text)  # decoded once per text
    assert thresholds_from_column("null") == thresholds_from_column(None) == ()
