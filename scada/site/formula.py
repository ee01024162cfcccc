"""Virtual meters: a formula of other meters, their sum and difference.

A formula is written with spaces around the operators (meter ids may contain ``-``)::

    E-B1-101 + E-B1-102 - C-B1-01

A virtual meter is never polled; its consumption over a period is the signed sum of its terms'
consumption, each with its own multiplier applied (:func:`expand` resolves nested virtual
meters down to the physical ones and gives each its coefficient).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["FormulaError", "Term", "expand", "format_formula", "parse_formula"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TERMS = 200


class FormulaError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Term:
    sign: int  # +1 or -1
    meter_id: str


def parse_formula(text: str) -> tuple[Term, ...]:
    """``"A + B - C"`` → terms; a :class:`FormulaError` says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("a formula names at least one meter, e.g. \"E-1 + E-2 - C-1\"")
    tokens = text.split()
    terms: list[Term] = []
    sign = 1
    expect_meter = True
    if tokens[0] in ("+", "-"):
        sign = -1 if tokens[0] == "-" else 1
        tokens = tokens[1:]
    for token in tokens:
        if expect_meter:
            if token in ("+", "-"):
                raise FormulaError(f"two operators in a row at {token!r}")
            if not _ID.match(token):
                raise FormulaError(
                    f"{token!r} is not a meter id (letters, digits, '_' and '-'; put spaces around + and -)"
                )
            terms.append(Term(sign, token))
            expect_meter = False
        else:
            if token not in ("+", "-"):
                raise FormulaError(f"expected + or - before {token!r} (put spaces around + and -)")
            sign = -1 if token == "-" else 1
            expect_meter = True
    if expect_meter:
        raise FormulaError("the formula ends with an operator")
    if len(terms) > MAX_TERMS:
        raise FormulaError(f"at most {MAX_TERMS} terms, found {len(terms)}")
    seen: set[str] = set()
    for t in terms:
        if t.meter_id in seen:
            raise FormulaError(f"meter {t.meter_id} appears twice")
        seen.add(t.meter_id)
    return tuple(terms)


def format_formula(terms: tuple[Term, ...]) -> str:
    out = []
    for i, t in enumerate(terms):
        if i == 0:
            out.append(t.meter_id if t.sign > 0 else f"- {t.meter_id}")
        else:
            out.append(f"{'+' if t.sign > 0 else '-'} {t.meter_id}")
    return " ".join(out)


def expand(
    meter_id: str, formulas: Mapping[str, tuple[Term, ...]], multipliers: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    """The physical meters a virtual meter is made of, each with its coefficient (the signs
    along the way times the meter's multiplier). Raises on a loop or an unknown meter."""
    out: dict[str, Decimal] = {}

    def walk(mid: str, sign: int, path: tuple[str, ...]) -> None:
        if mid in path:
            raise FormulaError(f"formulas loop: {' → '.join((*path, mid))}")
        terms = formulas.get(mid)
        if terms is None:
            if mid not in multipliers:
                raise FormulaError(f"unknown meter {mid!r}")
            out[mid] = out.get(mid, Decimal(0)) + sign * multipliers[mid]
            return
        for t in terms:
            walk(t.meter_id, sign * t.sign, (*path, mid))

    walk(meter_id, 1, ())
    return {m: c for m, c in sorted(out.items()) if c != 0}
