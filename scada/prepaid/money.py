"""Exact money: ``Decimal`` arithmetic, integer minor units, rounding with a carried remainder.

Ledger amounts are integers in the currency's minor unit (fen for CNY). Prices and consumption
are exact decimals; a deduction's exact cost is rounded to the minor unit once, and the
difference (the remainder) is carried to the account's next deduction, so that the
deductions of any period add up to the period's exact cost rounded once.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Literal

from scada.core.inputs import InputError, parse_decimal, quote

__all__ = [
    "EXACT",
    "MONEY_WHOLE_DIGITS",
    "ROUNDING_MODES",
    "MoneyError",
    "Rounding",
    "RoundingMode",
    "exact",
    "format_minor",
    "minor_to_decimal",
    "parse_money",
    "to_minor",
]

# whole digits of an amount: 10**14 currency units in 10**4 minor units still fit a 64-bit integer
MONEY_WHOLE_DIGITS = 14

RoundingMode = Literal["half_up", "half_even", "half_down", "up", "down"]

ROUNDING_MODES: dict[str, str] = {
    "half_up": decimal.ROUND_HALF_UP,
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
}

# Enough digits that products of readings (<= 12 integer + 10 decimal digits) and prices
# (<= 6 decimals) never round: every arithmetic step on money runs inside this context.
EXACT = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.Inexact, decimal.InvalidOperation])


# the same precision without the Inexact trap: for deliberate rounding (quantize)
ROUNDING_CONTEXT = decimal.Context(prec=80, traps=[decimal.InvalidOperation])


class _Exact:
    """The context manager of :func:`exact`: a class, not a generator (``@contextmanager``),
    because billing enters it several times per reading and the generator's set-up cost more
    than the arithmetic inside."""

    __slots__ = ("_saved",)

    def __enter__(self) -> decimal.Context:
        current = decimal.getcontext()
        if current.prec == EXACT.prec and current.traps[decimal.Inexact]:
            self._saved = None  # already exact (nested): entering a new context costs more than the work
            return current
        self._saved = current
        ctx = EXACT.copy()  # as decimal.localcontext(EXACT) does: flags set inside stay inside
        decimal.setcontext(ctx)
        return ctx

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            decimal.setcontext(self._saved)
            self._saved = None


def exact() -> _Exact:
    """Arithmetic that raises ``decimal.Inexact`` instead of silently rounding."""
    return _Exact()


class MoneyError(ValueError):
    """A money value that is not acceptable; ``field`` names where it came from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Rounding:
    """Rounds exact amounts to a currency's minor units with a configured mode."""

    def __init__(self, minor_units: int, mode: RoundingMode = "half_up") -> None:
        if not 0 <= minor_units <= 4:
            raise ValueError(f"minor_units must be 0..4, got {minor_units}")
        if mode not in ROUNDING_MODES:
            raise ValueError(f"unknown rounding mode {mode!r}; one of {', '.join(ROUNDING_MODES)}")
        self.minor_units = minor_units
        self.mode = mode
        self._quantum = Decimal(1).scaleb(-minor_units)
        self._rounding = ROUNDING_MODES[mode]
        self._exact = EXACT.copy()
        self._rounding_ctx = ROUNDING_CONTEXT.copy()

    def to_minor(self, amount: Decimal) -> int:
        """``amount`` (currency units, any precision) rounded to an integer of minor units."""
        with decimal.localcontext(ROUNDING_CONTEXT):
            q = amount.quantize(self._quantum, rounding=self._rounding)
            return int(q.scaleb(self.minor_units))

    def carry(self, remainder: Decimal, cost: Decimal) -> tuple[int, Decimal]:
        """Round ``remainder + cost``; returns (amount in minor units, new remainder)."""
        # the steps of ``to_minor`` inside ``localcontext(EXACT)``, each given its context
        # instead of switching the thread's context three times per deduction (the contexts
        # are this object's own copies: the flags they collect are never read)
        exact_ctx, rounding_ctx = self._exact, self._rounding_ctx
        total = exact_ctx.add(remainder, cost)
        q = total.quantize(self._quantum, rounding=self._rounding, context=rounding_ctx)
        minor = int(q.scaleb(self.minor_units, context=rounding_ctx))
        return minor, exact_ctx.subtract(total, Decimal(minor).scaleb(-self.minor_units, context=exact_ctx))

    def from_minor(self, minor: int) -> Decimal:
        return minor_to_decimal(minor, self.minor_units)


def minor_to_decimal(minor: int, minor_units: int) -> Decimal:
    return Decimal(minor).scaleb(-minor_units)


def to_minor(amount: Decimal, minor_units: int) -> int:
    """An amount with at most ``minor_units`` decimals as an integer; raises otherwise."""
    with decimal.localcontext(EXACT):
        scaled = amount.scaleb(minor_units)
        if scaled != scaled.to_integral_value():
            raise MoneyError("amount", f"more than {minor_units} decimals")
        return int(scaled)


def format_minor(minor: int, minor_units: int) -> str:
    """``12345`` → ``"123.45"`` (always with the currency's decimals)."""
    return format(minor_to_decimal(minor, minor_units), "f")


def parse_money(
    value: object,
    field: str,
    minor_units: int,
    *,
    allow_zero: bool = False,
    allow_negative: bool = False,
    maximum: Decimal | None = None,
) -> int:
    """A money value from outside (decimal string, integer or Decimal) → minor units.

    The bounds of :func:`scada.core.inputs.parse_decimal` apply first (ASCII digits, at most
    :data:`MONEY_WHOLE_DIGITS` digits before the point and no more decimals than the currency
    has, checked before anything is computed), then sign, zero and ``maximum``.
    """
    try:
        d = parse_decimal(
            value, max_digits=MONEY_WHOLE_DIGITS + minor_units, decimal_places=minor_units,
            negative=allow_negative, what="amount",
        )
    except InputError as exc:
        raise MoneyError(field, str(exc)) from None
    if maximum is not None and abs(d) > maximum:
        raise MoneyError(field, f"{quote(value)} is larger than the maximum {format(maximum, 'f')}")
    if d == 0 and not allow_zero:
        raise MoneyError(field, "must be greater than zero")
    with decimal.localcontext(ROUNDING_CONTEXT):
        return int(d.scaleb(minor_units))  # exact: no more decimals than minor_units
