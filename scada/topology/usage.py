"""Consumption of meters over periods: the numbers losses and apportionment are made of.

- A polled meter's consumption is the exact sum of its interval deltas in the historian (whole
  days from the day rollups), times its multiplier.
- A meter read by hand has readings days or weeks apart; its consumption over ``[a, b)`` is its
  cumulative consumption at ``b`` minus that at ``a``, each read off its readings and, between
  two readings, interpolated linearly in time (constant load: the only honest assumption). A
  period the readings do not cover on both sides is unknown; one whose ends fall between
  readings is ``estimated``.
- A virtual meter's is the signed sum of its physical meters' (see :mod:`scada.site.formula`).

Quantities are exact ``Decimal`` in the unit of the meter (kWh, m³), multipliers applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select

from scada.db import Database
from scada.history.service import RegisterSource
from scada.site.assets import AssetSnapshot, MeterInfo
from scada.site.formula import FormulaError
from scada.topology.models import ManualReading

__all__ = ["ChainPoint", "ReadingChain", "Span", "Usage", "UsageSource", "coefficients", "point_of", "to_decimal"]

POINT_OF_KIND = {"electricity": "energy_total", "water": "volume_total"}
UNIT_OF_KIND = {"electricity": "kWh", "water": "m3"}


def point_of(kind: str) -> str:
    """The cumulative register point of a meter kind."""
    return POINT_OF_KIND.get(kind, "energy_total")


def to_decimal(value: Fraction) -> Decimal:
    """An exact fraction as a Decimal when it is one (denominator 2^a·5^b); otherwise rounded to
    20 decimals (interpolated values only)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        n = 0
        while (value * 10**n).denominator != 1:
            n += 1
        return Decimal(int(value * 10**n)).scaleb(-n)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("1e-20"))


@dataclass(frozen=True, slots=True)
class Span:
    """A meter over ``[start, end)``."""

    meter_id: str
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Usage:
    """A meter's consumption over a span; ``quantity`` None when it is not known."""

    meter_id: str
    quantity: Decimal | None
    estimated: bool = False  # between manual readings: interpolated
    intervals: int = 0  # polled: stored intervals with a value (a virtual meter: its least covered term's)
    expected: int = 0  # polled: intervals the span holds
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.quantity is not None

    def as_json(self) -> dict[str, object]:
        return {
            "quantity": format(self.quantity, "f") if self.quantity is not None else None,
            "estimated": self.estimated, "intervals": self.intervals, "expected": self.expected,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class ChainPoint:
    ts: dt.datetime
    cumulative: Fraction  # register units consumed since the chain's first reading


@dataclass
class ReadingChain:
    """A manual meter's readings as cumulative consumption (register units, no multiplier),
    across resets: a reset reading adds the old register's last step and the new one's start."""

    points: list[ChainPoint] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Sequence[ManualReading]) -> ReadingChain:
        chain = cls()
        previous: ManualReading | None = None
        total = Fraction(0)
        for r in sorted(rows, key=lambda r: r.ts):
            if previous is not None:
                if r.reset:
                    final = r.final if r.final is not None else previous.value
                    initial = r.initial if r.initial is not None else Decimal(0)
                    total += Fraction(final - previous.value) + Fraction(r.value - initial)
                else:
                    total += Fraction(r.value - previous.value)
            chain.points.append(ChainPoint(r.ts, total))
            previous = r
        return chain

    def at(self, t: dt.datetime) -> tuple[Fraction, bool] | None:
        """Cumulative consumption at ``t`` and whether it is interpolated; None outside the readings."""
        pts = self.points
        if not pts or t < pts[0].ts or t > pts[-1].ts:
            return None
        lo, hi = 0, len(pts) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if pts[mid].ts <= t:
                lo = mid
            else:
                hi = mid
        for p in (pts[lo], pts[hi]):
            if p.ts == t:
                return p.cumulative, False
        a, b = pts[lo], pts[hi]
        elapsed = Fraction(_micros(t - a.ts), _micros(b.ts - a.ts))
        return a.cumulative + (b.cumulative - a.cumulative) * elapsed, True

    def between(self, start: dt.datetime, end: dt.datetime) -> tuple[Fraction, bool] | None:
        a, b = self.at(start), self.at(end)
        if a is None or b is None:
            return None
        return b[0] - a[0], a[1] or b[1]


def _micros(d: dt.timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def coefficients(snapshot: AssetSnapshot, meter_id: str) -> dict[str, Decimal]:
    """The physical meters behind ``meter_id`` with their coefficients (see :meth:`AssetSnapshot.terms`)."""
    return snapshot.terms(meter_id)


class UsageSource:
    """Consumption of any meter over any span, from the historian and the manual readings."""

    def __init__(
        self,
        db: Database,
        snapshot: AssetSnapshot,
        history: RegisterSource | None,
        *,
        resolution: dict[str, Decimal] | None = None,
        manual_resolution: Decimal = Decimal("0.01"),
    ) -> None:
        self.db = db
        self.snapshot = snapshot
        self.history = history
        self._resolution = resolution or {}
        self.manual_resolution = manual_resolution
        self._chains: dict[str, ReadingChain] = {}

    def resolution(self, meter_id: str) -> Decimal:
        """The step of a meter's consumption: its register's step × its multiplier (a virtual
        meter: the finest of its terms')."""
        try:
            coefs = coefficients(self.snapshot, meter_id)
        except FormulaError:
            return self.manual_resolution
        steps = []
        for leaf, coef in coefs.items():
            info = self.snapshot.meters.get(leaf)
            step = self._resolution.get(leaf) if info is not None and info.polled else None
            steps.append((step or self.manual_resolution) * abs(coef))
        # normalised: a multiplier read back as 1.0000 must not make the step 0.010000
        return min(steps).normalize() if steps else self.manual_resolution

    async def chain(self, meter_id: str) -> ReadingChain:
        cached = self._chains.get(meter_id)
        if cached is None:
            async with self.db.reads() as s:
                rows = (await s.scalars(select(ManualReading).where(ManualReading.meter_id == meter_id))).all()
            cached = self._chains[meter_id] = ReadingChain.of(rows)
        return cached

    async def usage(self, spans: Sequence[Span]) -> list[Usage]:
        """The consumption of each span (in the order given)."""
        plans: list[dict[str, Decimal] | str] = []
        polled: dict[tuple[dt.datetime, dt.datetime], dict[str, str]] = {}
        for span in spans:
            try:
                coefs = coefficients(self.snapshot, span.meter_id)
            except FormulaError as exc:
                plans.append(str(exc))
                continue
            plans.append(coefs)
            for leaf in coefs:
                info = self.snapshot.meters.get(leaf)
                if info is not None and info.polled:
                    polled.setdefault((span.start, span.end), {})[leaf] = point_of(info.kind)
        sums: dict[tuple[dt.datetime, dt.datetime], dict[str, tuple[int | None, int, int]]] = {}
        if self.history is not None:
            for (start, end), meters in polled.items():
                result = await self.history.register_sums(meters, start, end)
                sums[(start, end)] = {m: (r.micro, r.intervals, r.expected) for m, r in result.items()}
        out: list[Usage] = []
        for span, plan in zip(spans, plans, strict=True):
            if isinstance(plan, str):
                out.append(Usage(span.meter_id, None, notes=(plan,)))
                continue
            out.append(await self._combine(span, plan, sums.get((span.start, span.end), {})))
        return out

    async def _combine(
        self, span: Span, coefs: dict[str, Decimal], sums: dict[str, tuple[int | None, int, int]]
    ) -> Usage:
        total = Fraction(0)
        known = True
        estimated = False
        intervals = expected = 0
        notes: list[str] = []
        for leaf, coef in coefs.items():
            info: MeterInfo | None = self.snapshot.meters.get(leaf)
            if info is None:
                known = False
                notes.append(f"unknown meter {leaf}")
                continue
            if info.polled:
                if self.history is None:
                    known = False
                    notes.append("the historian is not running")
                    continue
                micro, n, exp = sums.get(leaf, (None, 0, 0))
                # a virtual meter's coverage is its least covered term's: the period has as many
                # intervals for every term, so adding them up would count each interval twice
                if exp and (not expected or n * expected < intervals * exp):
                    intervals, expected = n, exp
                if micro is None:
                    known = False
                    notes.append(f"{leaf}: no history in the period")
                    continue
                total += Fraction(micro, 1_000_000) * Fraction(coef)
            else:
                chain = await self.chain(leaf)
                got = chain.between(span.start, span.end)
                if got is None:
                    known = False
                    notes.append(f"{leaf}: its readings do not cover the period (a reading at or before its start and one at or after its end are needed)")
                    continue
                total += got[0] * Fraction(coef)
                estimated = estimated or got[1]
        return Usage(
            span.meter_id, to_decimal(total) if known else None, estimated, intervals, expected, tuple(notes),
        )
