"""Bounded inputs: every value that enters from outside (API bodies, query strings, path ids,
config files, OPC UA method arguments, WebSocket messages) is checked against fixed bounds
*before* anything is built from it.

- **Decimals** (:func:`parse_decimal`, :func:`BoundedDecimal`): the one decimal input type of
  the server. ASCII digits only (``"１０"`` and Arabic-Indic digits are refused), at most
  ``max_digits`` digits of which at most ``decimal_places`` after the point, checked on the text
  (or on the JSON token, see :func:`parse_json`) before a ``Decimal`` is formatted or used in
  arithmetic. Binary floats are refused (inexact); NaN and infinities too.
- **Ids** (:func:`parse_id`, :data:`Id64`): ASCII digits, 1 .. 2**63-1 (a database BIGINT).
- **Times** (:func:`check_time`, :func:`check_date`, :data:`AwareDateTime`, :data:`Date`):
  within :data:`tags.EARLIEST` .. :data:`tags.LATEST` (1970–2200).
- **Free text** (:func:`check_text`, :data:`Text`): no control characters (NUL breaks
  PostgreSQL's text; the others forge log lines and terminal output).
- **Phone numbers** (:func:`e164`, :data:`Phone`): E.164, ``+`` and 7 to 15 digits.
- **JSON documents** (:func:`parse_json`): bounded nesting depth, numbers of bounded length and
  exponent, strings without control characters — refused with the path of the offending value.

A refused value is quoted by at most a short prefix (:func:`quote`), so an error message or an
audit row never carries a megabyte of someone's input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic_core import CoreSchema, core_schema

from tags import EARLIEST, LATEST

__all__ = [
    "AwareDateTime",
    "BoundedDecimal",
    "Date",
    "Id64",
    "InputError",
    "JsonInputError",
    "MAX_DECIMAL_CHARS",
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "OversizedNumber",
    "Phone",
    "Text",
    "check_date",
    "check_text",
    "check_time",
    "has_control",
    "decimal_shape",
    "e164",
    "parse_decimal",
    "parse_id",
    "parse_json",
    "quote",
]

MAX_DECIMAL_CHARS = 64  # the longest decimal text looked at (digits, sign, point, exponent)
MAX_EXPONENT_DIGITS = 4  # "1E+9999" is read (and then refused by the digit bounds); longer exponents are not
MAX_ID = 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER_CHARS = 64
_QUOTE_CHARS = 24

# ASCII only: Python's \d also matches "１" (full width), "١" (Arabic-Indic), "¹" ...
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_EXPONENT = re.compile(r"[eE]([+-]?)([0-9]+)$", re.ASCII)
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
_ID_TEXT = re.compile(r"[0-9]{1,19}", re.ASCII)
# C0 controls but tab, newline and carriage return; DEL; C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
_PHONE_SEPARATORS = re.compile(r"[ \-().]")


class InputError(ValueError):
    """A value from outside that is refused; the message says why (and quotes little of it)."""


class JsonInputError(InputError):
    """A JSON document that is refused; ``path`` names the offending value (``a.b[2]``)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


def quote(value: object, limit: int = _QUOTE_CHARS) -> str:
    """A short, printable rendering of a refused value: at most ``limit`` characters of it."""
    if isinstance(value, OversizedNumber):
        return repr(value)
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        return repr(value)
    elif isinstance(value, int):
        if value.bit_length() > 64:  # str() of a huge int costs; its size says enough
            return f"<an integer of {value.bit_length()} bits>"
        text = str(value)
    elif isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int) or len(digits) > limit or abs(exponent) > limit:
            return "<a decimal out of range>"
        text = str(value)
    elif isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'JSON object'}"
    else:
        return type(value).__name__
    cut = text[:limit]
    shown = repr(cut)
    return shown + "…" if len(text) > limit else shown


class OversizedNumber:
    """A JSON number token too long (or with too large an exponent) to be read: kept as its
    length and a short prefix, so that the field it was given for can be named in the error."""

    __slots__ = ("length", "prefix")

    def __init__(self, token: str) -> None:
        self.length = len(token)
        self.prefix = token[:12]

    def __repr__(self) -> str:
        return f"<a number of {self.length} characters starting {self.prefix}>"

    __str__ = __repr__


# -- decimals -----------------------------------------------------------------------------------------
def decimal_shape(d: Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it) of a finite decimal, trailing zeros of the
    fraction not counted: ``123.4500`` → (3, 2), ``1E+5`` → (6, 0), ``0.001`` → (0, 3).
    Reads the decimal's tuple only: never formats or scales it."""
    _sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return 0, 0
    n = len(digits)
    while exponent < 0 and digits[n - 1] == 0:
        n -= 1
        exponent += 1
    return max(n + exponent, 0), max(-exponent, 0)


def parse_decimal(
    value: object,
    *,
    max_digits: int = 24,
    decimal_places: int = 8,
    negative: bool = False,
    what: str = "number",
) -> Decimal:
    """A finite decimal from a string, an integer or a Decimal (a JSON number read exactly),
    within ``max_digits`` digits, ``decimal_places`` of them after the point. Refuses floats,
    booleans, non-ASCII digits, NaN and infinities, and negative values unless ``negative``."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise InputError(f"expected the {what} as a decimal string, found {quote(value)}")
    if isinstance(value, float):
        raise InputError(f"expected the {what} as a decimal string (e.g. \"1.5\"), found a float")
    if isinstance(value, OversizedNumber):
        raise InputError(f"too many digits: at most {max_digits} digits, found {quote(value)}")
    if isinstance(value, int):
        if value.bit_length() > 4 * max_digits:  # > max_digits decimal digits for sure: no str() of it
            raise InputError(f"too many digits: at most {max_digits} digits, found {quote(value)}")
        d = Decimal(value)
    elif isinstance(value, Decimal):
        d = value
    elif isinstance(value, str):
        text = value.strip(" \t\r\n")
        if len(text) > MAX_DECIMAL_CHARS:
            raise InputError(f"not a decimal number: {len(text)} characters (at most {MAX_DECIMAL_CHARS}), found {quote(value)}")
        if text.lstrip("+-").lower() in _NOT_FINITE:
            raise InputError(f"must be a finite number, found {quote(value)}")
        if not _DECIMAL_TEXT.fullmatch(text):
            raise InputError(f"not a decimal number: {quote(value)} (ASCII digits, e.g. \"12.50\")")
        exponent = _EXPONENT.search(text)
        if exponent is not None and len(exponent.group(2).lstrip("0")) > MAX_EXPONENT_DIGITS:
            raise InputError(f"too large or too small: {quote(value)} (at most {max_digits} digits, {decimal_places} after the point)")
        d = Decimal(text)  # bounded text: cheap, and exact
    else:
        raise InputError(f"expected the {what} as a decimal string, found {type(value).__name__}")
    if not d.is_finite():
        raise InputError(f"must be a finite number, found {quote(value)}")
    if d.is_signed() and not negative and d != 0:
        raise InputError(f"must not be negative, found {quote(value)}")
    whole, fraction = decimal_shape(d)
    if fraction > decimal_places:
        raise InputError(
            f"more than {decimal_places} decimals in {quote(value)} (at most {decimal_places} decimals)"
            if decimal_places else f"must be a whole number, found {quote(value)}"
        )
    if whole > max_digits - decimal_places:
        raise InputError(f"too large: at most {max_digits - decimal_places} digits before the decimal point, found {quote(value)}")
    return d + 0 if d.is_zero() else d  # -0 → 0


def _decimal_schema(max_digits: int, decimal_places: int, negative: bool, description: str) -> dict[str, Any]:
    sign = "-?" if negative else ""
    whole = max_digits - decimal_places
    fraction = rf"(\.[0-9]{{0,{decimal_places}}})?" if decimal_places else ""
    return {
        "type": "string",
        "pattern": rf"^{sign}[0-9]{{1,{whole}}}{fraction}$",
        "maxLength": max_digits + 2 + (1 if negative else 0),
        "description": description or f"a decimal number as a string: at most {whole} digits before the point, {decimal_places} after",
    }


@dataclass(frozen=True, slots=True)
class BoundedDecimal:
    """The decimal field type of models (API bodies and config), see :func:`parse_decimal`::

        price: Annotated[Decimal, BoundedDecimal(18, 6, what="price")]

    The OpenAPI schema says a decimal string; a JSON number is accepted too (read exactly)."""

    max_digits: int
    decimal_places: int
    negative: bool = False
    what: str = "number"
    description: str = ""

    def parse(self, value: object) -> Decimal:
        return parse_decimal(
            value, max_digits=self.max_digits, decimal_places=self.decimal_places, negative=self.negative, what=self.what,
        )

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.parse, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return _decimal_schema(self.max_digits, self.decimal_places, self.negative, self.description)


# -- ids ----------------------------------------------------------------------------------------------
def parse_id(text: str, what: str = "id") -> int:
    """A positive 64-bit id from a path or query string: ASCII digits only."""
    if not _ID_TEXT.fullmatch(text):
        raise InputError(f"{what} must be a number 1..{MAX_ID}, found {quote(text)}")
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise InputError(f"{what} must be a number 1..{MAX_ID}, found {quote(text)}")
    return value


Id64 = Annotated[int, Field(ge=1, le=MAX_ID)]


# -- times --------------------------------------------------------------------------------------------
def check_time(value: datetime) -> datetime:
    """An aware moment within the supported range (1970 to 2200)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError("needs a UTC offset (e.g. 2024-05-01T00:00:00+08:00)")
    try:
        inside = EARLIEST <= value < LATEST
    except OverflowError:  # an offset that moves 0001-01-01 or 9999-12-31 off the calendar
        inside = False
    if not inside:
        raise InputError(f"must be from {EARLIEST.date()} to before {LATEST.date()}, found {value.isoformat()[:32]}")
    return value


def check_date(value: date) -> date:
    """A calendar date within the supported range (1970 to 2200)."""
    if not EARLIEST.date() <= value < LATEST.date():
        raise InputError(f"must be from {EARLIEST.date()} to before {LATEST.date()}, found {value.isoformat()}")
    return value


AwareDateTime = Annotated[AwareDatetime, AfterValidator(check_time)]
Date = Annotated[date, AfterValidator(check_date)]


# -- text ---------------------------------------------------------------------------------------------
def check_text(value: str, what: str = "text") -> str:
    """Free text without control characters (tab and line breaks are allowed)."""
    m = _CONTROL.search(value)
    if m is not None:
        raise InputError(f"{what} contains the control character U+{ord(m.group()):04X} at position {m.start()}")
    return value


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (see :func:`check_text`)."""
    return _CONTROL.search(text) is not None


Text = Annotated[str, AfterValidator(check_text)]


# -- phone numbers ------------------------------------------------------------------------------------
def e164(value: str) -> str:
    """A phone number in E.164 form (``+8613800000000``); spaces, hyphens, dots and brackets
    written between the digits are dropped. Anything else (letters, ``&``, ``#``, a missing
    country code) is refused."""
    if not isinstance(value, str) or len(value) > 40:
        raise InputError(f"expected a phone number in E.164 form (e.g. +8613800000000), found {quote(value)}")
    compact = _PHONE_SEPARATORS.sub("", value.strip())
    if not _E164.fullmatch(compact):
        raise InputError(f"expected a phone number in E.164 form (+, country code, 7 to 15 digits), found {quote(value)}")
    return compact


Phone = Annotated[
    str,
    AfterValidator(e164),
    WithJsonSchema({"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$", "description": "E.164, e.g. +8613800000000"}),
]


# -- JSON ---------------------------------------------------------------------------------------------
def _float_token(token: str) -> Decimal | OversizedNumber:
    # JSON numbers with a fraction or an exponent are read as exact decimals; a long token or a
    # large exponent is never constructed (int(Decimal("1E+200000000")) alone takes seconds)
    if len(token) > MAX_JSON_NUMBER_CHARS:
        return OversizedNumber(token)
    m = _EXPONENT.search(token)
    if m is not None and len(m.group(2)) > MAX_EXPONENT_DIGITS:
        return OversizedNumber(token)
    return Decimal(token)


def _int_token(token: str) -> int | OversizedNumber:
    # the interpreter refuses ints of more than 4,300 digits with a ValueError; ours stop at 40
    if len(token) > 40:
        return OversizedNumber(token)
    return int(token)


def _constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not allowed in JSON")


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON document read with bounds: numbers with a fraction or exponent become exact
    ``Decimal`` (or :class:`OversizedNumber` when too long to read), nesting deeper than
    ``max_depth`` and strings with control characters are refused naming where."""
    try:
        data = json.loads(raw, parse_float=_float_token, parse_int=_int_token, parse_constant=_constant)
    except RecursionError:
        raise JsonInputError(f"nested deeper than {max_depth} levels") from None
    except JsonInputError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise JsonInputError(f"not valid JSON: {str(exc)[:120]}") from None
    _check_tree(data, max_depth)
    return data


def _check_tree(data: Any, max_depth: int) -> None:
    """Depth and strings of a parsed document, without recursion (the depth is what is checked)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth >= max_depth:
                raise JsonInputError(f"nested deeper than {max_depth} levels", _path(path) or None)
            for key, value in node.items():
                _check_string(key, (*path, key), "a key")
                stack.append((value, depth + 1, (*path, key)))
        elif isinstance(node, list):
            if depth >= max_depth:
                raise JsonInputError(f"nested deeper than {max_depth} levels", _path(path) or None)
            for i, value in enumerate(node):
                stack.append((value, depth + 1, (*path, i)))
        elif isinstance(node, str):
            _check_string(node, path, "the text")


def _check_string(text: str, path: tuple[str | int, ...], what: str) -> None:
    m = _CONTROL.search(text)
    if m is not None:
        raise JsonInputError(f"{what} contains the control character U+{ord(m.group()):04X}", _path(path) or None)


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = quote(part, 40).strip("'") if _CONTROL.search(part) or len(part) > 40 else part
            out += f".{part}" if out else part
    return out

