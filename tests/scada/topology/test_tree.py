"""The effective-dated meter tree and virtual-meter formulas (pure logic)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scada.site.formula import FormulaError, Term, expand, format_formula, parse_formula
from scada.site.tree import ALWAYS, ChildSpan, MeterTree, ParentChange

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 11, tzinfo=UTC)
T2 = datetime(2026, 11, 21, tzinfo=UTC)
T3 = datetime(2026, 12, 1, tzinfo=UTC)


def tree() -> MeterTree:
    # E1 below S1 since always; moved to S2 on the 11th; E2 below S1 from the 21st only
    return MeterTree([
        ParentChange("S1", "U", ALWAYS), ParentChange("S2", "U", ALWAYS),
        ParentChange("E1", "S1", ALWAYS), ParentChange("E1", "S2", T1), ParentChange("E2", "S1", T2),
    ])


def test_parent_at_keeps_the_past() -> None:
    t = tree()
    assert t.parent_at("E1", T0) == "S1" and t.parent_at("E1", T1) == "S2" and t.parent_at("E1", T3) == "S2"
    assert t.parent_at("E2", T0) is None and t.parent_at("E2", T2) == "S1"
    assert t.parent_at("nobody", T0) is None
    assert t.children_at("S1", T0) == ["E1"] and t.children_at("S1", T2) == ["E2"]
    assert t.parents_at(T0) == {"S1": "U", "S2": "U", "E1": "S1"}


def test_child_spans_cut_the_period_at_changes() -> None:
    t = tree()
    assert t.child_spans("S1", T0, T3) == [ChildSpan("E1", T0, T1), ChildSpan("E2", T2, T3)]
    assert t.child_spans("S2", T0, T3) == [ChildSpan("E1", T1, T3)]
    assert t.child_spans("S2", T0, T1) == []
    assert t.parents_within(T0, T1) == {"U", "S1"}
    assert t.parents_within(T1, T3) == {"U", "S1", "S2"}


def test_loops_are_found_at_any_moment() -> None:
    t = tree()
    assert t.loop() is None
    # U below E1 from the 21st: E1 → S2 → U → E1
    looped = t.with_change(ParentChange("U", "E1", T2))
    assert looped.loop() == ["E1", "S2", "U", "E1"]
    # before the 11th E1 hung below S1, so U below E1 then loops through S1
    assert t.with_change(ParentChange("U", "E1", T0)).loop() == ["E1", "S1", "U", "E1"]


def test_formula_parse_format_expand() -> None:
    terms = parse_formula("E-B1-101 + E-B1-102 - C-B1-01")
    assert terms == (Term(1, "E-B1-101"), Term(1, "E-B1-102"), Term(-1, "C-B1-01"))
    assert format_formula(terms) == "E-B1-101 + E-B1-102 - C-B1-01"
    assert parse_formula("- A + B") == (Term(-1, "A"), Term(1, "B"))
    formulas = {"V": parse_formula("A + W"), "W": parse_formula("B - C")}
    multipliers = {"A": Decimal(1), "B": Decimal(40), "C": Decimal(1)}
    # V = A + (B - C), B behind a 40:1 current transformer
    assert expand("V", formulas, multipliers) == {"A": Decimal(1), "B": Decimal(40), "C": Decimal(-1)}
    assert expand("A", formulas, multipliers) == {"A": Decimal(1)}


@pytest.mark.parametrize(("text", "why"), [
    ("", "at least one meter"),
    ("A +", "ends with an operator"),
    ("A + + B", "two operators"),
    ("A B", "expected + or -"),
    ("A+B", "not a meter id"),
    ("A + A", "appears twice"),
])
def test_bad_formulas(text: str, why: str) -> None:
    with pytest.raises(FormulaError, match=re.escape(why)):
        parse_formula(text)


def test_formula_loops_and_unknown_meters() -> None:
    with pytest.raises(FormulaError, match="loop"):
        expand("V", {"V": parse_formula("A + W"), "W": parse_formula("V")}, {"A": Decimal(1)})
    with pytest.raises(FormulaError, match="unknown meter 'X'"):
        expand("V", {"V": parse_formula("X")}, {})
