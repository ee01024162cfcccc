"""Bounded inputs (scada/core/inputs.py) and the decimal fields built on them: money, tariff
prices and quantities, config decimals. Every value from outside is checked on its text before a
Decimal is formatted or computed with, and a refusal quotes only a short prefix of the value."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from scada.core.configbase import ConfigModel, DecimalStr
from scada.core.inputs import (
    AwareDateTime,
    BoundedDecimal,
    Date,
    Id64,
    InputError,
    JsonInputError,
    OversizedNumber,
    check_text,
    e164,
    parse_decimal,
    parse_id,
    parse_json,
    quote,
)
from scada.prepaid.levels import parse_thresholds
from scada.prepaid.money import MoneyError, parse_money
from scada.prepaid.tariff_definition import TariffDefinition, decimal_input

HUGE = ("1E+100000", "1E+200000000", "-1e+50000000", "9" * 5000, "0." + "1" * 5000, "1E-200000000")
NON_ASCII_DIGITS = ("１０", "١٠", "۱۰", "१०", "¹", "10\u0660")  # full width, Arabic-Indic, Persian, Devanagari, superscript


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_only_ascii_digits_are_money(text: str) -> None:
    # Decimal("１０") is 10: a full-width amount was credited as 10.00
    with pytest.raises(MoneyError) as err:
        parse_money(text, "amount", 2)
    assert err.value.field == "amount" and "not a decimal number" in err.value.message
    with pytest.raises(ValueError):
        decimal_input(text, decimals=6, what="price")
    with pytest.raises(ValidationError):
        TariffDefinition.model_validate({"price": text})


@pytest.mark.parametrize("text", HUGE)
def test_huge_decimals_are_refused_with_a_short_message(text: str) -> None:
    # today's code formatted the rejected value into the message (and the audit row): 200 MB
    for value in (text, Decimal(text)):
        with pytest.raises(MoneyError) as err:
            parse_money(value, "amount", 2, maximum=Decimal("1000000"))
        assert len(str(err.value)) < 200, str(err.value)[:300]
        with pytest.raises(ValueError) as verr:
            decimal_input(value, decimals=6, what="quantity")
        assert len(str(verr.value)) < 200
        with pytest.raises(ValidationError) as perr:
            TariffDefinition.model_validate({"price": value})
        assert len(str(perr.value)) < 600


def test_money_without_a_maximum_never_overflows() -> None:
    # scaleb on 1E+200000000 raised decimal.Overflow: a 500 in money fields
    for value in (Decimal("1E+200000000"), "1E+999999", Decimal("-1E+999999")):
        with pytest.raises(MoneyError) as err:
            parse_money(value, "credit_limit", 2, allow_zero=True, allow_negative=True)
        assert "too large" in err.value.message


def test_money_bounds_keep_their_messages() -> None:
    assert parse_money("100.00", "amount", 2) == 10_000
    assert parse_money(Decimal("0.1"), "amount", 2) == 10
    assert parse_money("  7 ", "amount", 0) == 7
    assert parse_money(" 5 ", "amount", 2) == 500
    for value, message in (("-1", "must not be negative"), ("0", "greater than zero"), ("NaN", "finite"), ("-Infinity", "finite"),
                           ("1.001", "more than 2 decimals"), ("2e6", "larger than the maximum"), ("1_000", "not a decimal number"),
                           (True, "decimal string"), (1.5, "float"), ("0x10", "not a decimal number")):
        with pytest.raises(MoneyError, match=message):
            parse_money(value, "amount", 2, maximum=Decimal(1_000_000))
    # amounts whose minor units would not fit a 64-bit integer never pass
    with pytest.raises(MoneyError, match="too large"):
        parse_money("1" + "0" * 15, "amount", 4)


def test_thresholds_days_take_ascii_decimals_only() -> None:
    assert parse_thresholds([{"level": 1, "days": "1.5"}], 2)[0].days == Decimal("1.5")
    for days in ("１", "1E+200000000", "9" * 500):
        with pytest.raises(MoneyError) as err:
            parse_thresholds([{"level": 1, "days": days}], 2)
        assert err.value.field == "thresholds[0].days" and len(err.value.message) < 120


def test_config_decimals_are_bounded() -> None:
    class Section(ConfigModel):
        value: DecimalStr
        exact: Annotated[Decimal, BoundedDecimal(12, 3)] = Decimal(0)

    assert Section.model_validate({"value": "-3.5"}).value == Decimal("-3.5")
    for bad in ({"value": "１０"}, {"value": "1E+200000000"}, {"value": 0.5}, {"value": "12", "exact": "1.0001"}, {"value": "1", "exact": "1E+10"}):
        with pytest.raises(ValidationError) as err:
            Section.model_validate(bad)
        assert len(str(err.value)) < 600


def test_decimal_shape_per_field() -> None:
    assert parse_decimal("123.4500", max_digits=5, decimal_places=2) == Decimal("123.4500")
    assert parse_decimal("-0", max_digits=3, decimal_places=0) == 0
    assert parse_decimal(10**17, max_digits=18, decimal_places=0) == 10**17
    with pytest.raises(InputError, match="at most 3 digits before"):
        parse_decimal("1000", max_digits=5, decimal_places=2)
    with pytest.raises(InputError, match="whole number"):
        parse_decimal("1.5", max_digits=5, decimal_places=0)
    with pytest.raises(InputError, match="too many digits"):
        parse_decimal(10**400, max_digits=18, decimal_places=0)


def test_quote_shows_a_short_prefix() -> None:
    assert quote("x" * 10_000) == repr("x" * 24) + "…"
    assert quote(10**5000).startswith("<an integer of")
    assert quote(Decimal("1E+200000000")) == "<a decimal out of range>"
    assert quote(["a"]) == "a list"


def test_json_numbers_are_bounded_before_they_are_built() -> None:
    doc = parse_json(b'{"a": 1E+200000000, "b": 0.1, "c": ' + b"9" * 5000 + b', "d": 12}')
    assert isinstance(doc["a"], OversizedNumber) and isinstance(doc["c"], OversizedNumber)
    assert doc["b"] == Decimal("0.1") and doc["d"] == 12
    assert "5000 characters" in repr(doc["c"])
    # an int field is never handed a Decimal with a huge exponent (int() of it takes seconds)
    class Body(BaseModel):
        n: int = 1

    with pytest.raises(ValidationError):
        Body.model_validate(parse_json(b'{"n": 1E+200000000}'))


def test_json_depth_and_control_characters() -> None:
    with pytest.raises(JsonInputError, match="nested deeper than 32"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)  # json.loads alone raises RecursionError
    with pytest.raises(JsonInputError, match="nested deeper than 32"):
        parse_json(b'{"a":' * 40 + b"1" + b"}" * 40)
    assert parse_json(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(JsonInputError) as err:
        parse_json(b'{"reason": "ok\\u0000then"}')
    assert err.value.path == "reason" and "U+0000" in err.value.message
    with pytest.raises(JsonInputError) as err:
        parse_json(b'{"items": [{"note": "a\\u001b[2J"}]}')
    assert err.value.path == "items[0].note"
    assert parse_json(b'{"reason": "line one\\nline two\\ttab"}')["reason"] == "line one\nline two\ttab"
    for raw in (b'{"a": NaN}', b'{"a": Infinity}', b"{", b"\xff"):
        with pytest.raises(JsonInputError):
            parse_json(raw)


def test_ids_are_ascii_and_64_bit() -> None:
    assert parse_id("42") == 42 and parse_id(str(2**63 - 1)) == 2**63 - 1
    for bad in ("¹", "٣", "１", "0", "-1", "1e3", " 1", str(2**63), "9" * 5000, ""):
        with pytest.raises(InputError) as err:
            parse_id(bad, "alarm id")
        assert len(str(err.value)) < 120

    class Ids(BaseModel):
        ids: list[Id64]

    with pytest.raises(ValidationError):
        Ids.model_validate({"ids": [2**64]})


def test_times_within_the_supported_range() -> None:
    class When(BaseModel):
        at: AwareDateTime | None = None
        day: Date | None = None

    assert When.model_validate({"at": "2024-05-01T00:00:00+08:00"}).at is not None
    for bad in ({"at": "9999-12-31T23:59:59Z"}, {"at": "0001-01-01T00:00:00+14:00"}, {"at": "1969-12-31T23:59:59Z"},
                {"at": "2024-05-01T00:00:00"}, {"day": "9999-12-31"}, {"day": "0001-01-01"}, {"day": "2200-01-01"}):
        with pytest.raises(ValidationError):
            When.model_validate(bad)
    assert When.model_validate({"day": "2199-12-31"}).day == date(2199, 12, 31)
    assert When.model_validate({"at": datetime(1970, 1, 1, tzinfo=UTC)}).at is not None
    with pytest.raises(ValidationError):
        When.model_validate({"at": datetime(1970, 1, 1, tzinfo=timezone(timedelta(hours=1)))})


def test_free_text_refuses_control_characters() -> None:
    assert check_text("a reason\nwith two lines") == "a reason\nwith two lines"
    for bad in ("nul\x00", "bell\x07", "esc\x1b[31m", "del\x7f", "c1\x85"):
        with pytest.raises(InputError, match="control character"):
            check_text(bad)


def test_phone_numbers_are_e164() -> None:
    assert e164("+8613800000000") == "+8613800000000"
    assert e164("+86 138-0000-0000") == "+8613800000000"
    for bad in ("123&to=+1999000000", "+8613800000000#", "13800000000", "+0123456789", "+1 (555) 0100 call me", "+" + "1" * 16, "", "+86１３８00000000"):
        with pytest.raises(InputError, match="E.164"):
            e164(bad)
