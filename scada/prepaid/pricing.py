"""Pricing: a consumption delta → priced lines and an exact total. Pure functions, no I/O.

A reading interval ``[start, end]`` with a consumption ``quantity`` is cut

- at the effective time of every tariff version inside it (a price change applies from its
  effective time, not from the next reading),
- at billing-cycle starts (local midnight on the 1st) when tiers apply,
- at time-of-use switch points, when the meter gives no per-period registers,

and the quantity is spread over the pieces in proportion to their duration (constant power
between two readings is the only honest assumption). The spreading is exact: quantities are
split in integer quanta (1e-6 of the unit, or the reading's own resolution if finer) by the
largest-remainder method, so the pieces add up to the quantity exactly. With per-period
registers, each period's quantity is spread over the version/cycle pieces only.

Each piece is priced at its period's price of the version in force; tiers add their block's
``adder`` to the quantity that falls in each block of the cycle's cumulative consumption. Line
amounts are exact (unrounded); only the caller rounds the total (with the carried remainder).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from scada.prepaid.money import ROUNDING_MODES, exact
from scada.prepaid.tariff_definition import TariffDefinition

__all__ = [
    "Line",
    "PricingError",
    "Quote",
    "TariffTimeline",
    "TariffVersion",
    "allocate",
    "plain",
    "cycle_key",
    "price_consumption",
    "price_direct",
    "prorata_minor",
    "round_fraction",
]

ZERO = Decimal(0)
MIN_QUANTUM_EXP = -6


class PricingError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TariffVersion:
    tariff_id: str
    version: int
    effective_from: dt.datetime
    definition: TariffDefinition


class TariffTimeline:
    """The versions of one tariff in effective order; ``at(t)`` is the version in force."""

    def __init__(self, versions: Sequence[TariffVersion]) -> None:
        if not versions:
            raise PricingError("a tariff needs at least one version")
        self.versions = sorted(versions, key=lambda v: (v.effective_from, v.version))
        self._starts = [v.effective_from for v in self.versions]
        self.tariff_id = self.versions[0].tariff_id

    def at(self, t: dt.datetime) -> TariffVersion:
        # before the first version's effective time the first version applies (nothing else can)
        i = bisect.bisect_right(self._starts, t) - 1
        return self.versions[max(i, 0)]

    def changes_within(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        return [s for s in self._starts if start < s < end]

    def spans(self, start: dt.datetime, end: dt.datetime) -> list[TariffVersion]:
        """Every version in force at some moment of [start, end]."""
        out = [self.at(start)]
        for v in self.versions:
            if start < v.effective_from <= end and v is not out[-1]:
                out.append(v)
        return out


@dataclass(frozen=True, slots=True)
class Line:
    """One priced piece: ``quantity`` × ``unit_price`` = ``amount`` (exact)."""

    kind: str  # "energy" | "tier" | "capacity" | "demand"
    version: int
    period: str | None
    block: int | None  # tier block index (1-based) for "tier" lines
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    cycle: str | None = None

    def compact(self, *, version: bool = False) -> dict[str, object]:
        """The line for a ledger entry's detail (the entry itself has the times)."""
        out: dict[str, object] = {"quantity": plain(self.quantity), "price": plain(self.unit_price), "amount": plain(self.amount)}
        if self.period is not None:
            out["period"] = self.period
        if self.kind != "energy":
            out["kind"] = self.kind
            out["block"] = self.block
            out["cycle"] = self.cycle
        if version:
            out["version"] = self.version
        return out

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind, "version": self.version, "quantity": plain(self.quantity),
            "unit_price": plain(self.unit_price), "amount": plain(self.amount),
        }
        if self.period is not None:
            out["period"] = self.period
        if self.block is not None:
            out["block"] = self.block
        if self.cycle is not None:
            out["cycle"] = self.cycle
        if self.start is not None and self.end is not None:
            out["start"] = self.start.isoformat()
            out["end"] = self.end.isoformat()
        return out


@dataclass(slots=True)
class _EnergyAcc:
    """The energy of one (version, period) being summed up over the portions."""

    start: dt.datetime
    end: dt.datetime
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True)
class Quote:
    lines: list[Line]
    total: Decimal  # exact, unrounded
    quantity: Decimal
    by_registers: bool  # True when priced from per-period registers
    usage_added: dict[str, Decimal] = field(default_factory=dict)  # cycle key → quantity


def plain(d: Decimal) -> str:
    """A decimal as text without an exponent or trailing zeros: ``10.500`` → ``10.5``."""
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def allocate(quantity: Decimal, weights: Sequence[int]) -> list[Decimal]:
    """Split ``quantity`` in proportion to integer ``weights``, exactly (largest remainder).

    The parts are multiples of a quantum (1e-6, or finer if ``quantity`` is finer) and add up
    to ``quantity``; ties go to the earlier part. All-zero weights put everything in the last.
    """
    if not weights:
        raise PricingError("nothing to allocate to")
    total_w = sum(weights)
    if any(w < 0 for w in weights):
        raise PricingError("negative weight")
    if len(weights) == 1:
        return [quantity]
    with exact():
        raw_exp = quantity.as_tuple().exponent
        assert isinstance(raw_exp, int)
        exp = min(raw_exp, MIN_QUANTUM_EXP)
        units = int(quantity.scaleb(-exp))
        if total_w == 0:
            return [Decimal(0)] * (len(weights) - 1) + [quantity]
        else:
            parts = [units * w // total_w for w in weights]
            rest = units - sum(parts)
            order = sorted(range(len(weights)), key=lambda i: (-((units * weights[i]) % total_w), i))
            for i in order[:rest]:
                parts[i] += 1
        return [Decimal(p).scaleb(exp) for p in parts]


def cycle_key(cycle: str, local_day: dt.date) -> str:
    if cycle == "monthly":
        return f"monthly:{local_day:%Y-%m}"
    return f"yearly:{local_day:%Y}"


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(dt.UTC)


def _month_starts(start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> list[dt.datetime]:
    local = start.astimezone(tz).date().replace(day=1)
    out: list[dt.datetime] = []
    while True:
        local = (local + dt.timedelta(days=32)).replace(day=1)
        t = _local_midnight(local, tz)
        if t >= end:
            return out
        if t > start:
            out.append(t)


def _tou_switches(defn: TariffDefinition, start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> list[tuple[dt.datetime, str]]:
    """(moment, period) switch points of the TOU schedule from before ``start`` to ``end``."""
    assert defn.tou is not None
    out: list[tuple[dt.datetime, str]] = []
    day = start.astimezone(tz).date() - dt.timedelta(days=1)
    last = end.astimezone(tz).date()
    while day <= last:
        for minute, period in defn.tou.switches(day):
            local = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
            out.append((local.astimezone(dt.UTC), period))
        day += dt.timedelta(days=1)
    return out


@dataclass
class _Piece:
    start: dt.datetime
    end: dt.datetime
    version: TariffVersion
    period: str | None = None

    @property
    def micros(self) -> int:
        d = self.end - self.start
        return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _coarse(timeline: TariffTimeline, start: dt.datetime, end: dt.datetime, tz: ZoneInfo) -> list[_Piece]:
    versions = timeline.spans(start, end)
    cuts = set(timeline.changes_within(start, end))
    if any(v.definition.tiers is not None for v in versions):
        cuts.update(_month_starts(start, end, tz))
    points = [start, *sorted(cuts), end]
    return [_Piece(a, b, timeline.at(a)) for a, b in zip(points, points[1:], strict=False)]


def _fine(piece: _Piece, tz: ZoneInfo) -> list[_Piece]:
    defn = piece.version.definition
    if defn.tou is None:
        return [piece]
    switches = _tou_switches(defn, piece.start, piece.end, tz)
    times = [t for t, _ in switches]
    i = bisect.bisect_right(times, piece.start) - 1
    out: list[_Piece] = []
    t = piece.start
    while True:
        period = switches[i][1]
        nxt = switches[i + 1][0] if i + 1 < len(switches) else piece.end
        seg_end = min(nxt, piece.end)
        if seg_end > t or not out:
            out.append(_Piece(t, max(seg_end, t), piece.version, period))
        if seg_end >= piece.end:
            return out
        t = seg_end
        i += 1


def price_consumption(
    timeline: TariffTimeline,
    tz: ZoneInfo,
    start: dt.datetime,
    end: dt.datetime,
    quantity: Decimal,
    *,
    registers: Mapping[str, Decimal] | None = None,
    cycle_usage: Mapping[str, Decimal] | None = None,
) -> Quote:
    """Price ``quantity`` consumed over ``[start, end]`` (aware datetimes).

    ``registers`` maps TOU periods to their share of ``quantity`` (they must add up to it);
    they are used when every period with consumption is a period of each version in force,
    otherwise the quantity is split by time. ``cycle_usage`` is the consumption already billed
    in each tier cycle (by :func:`cycle_key`); the quote says what it adds to each cycle.
    """
    start, end = _interval(start, end, quantity)
    if registers is not None:
        quote = _by_registers_one_version(timeline, start, end, quantity, registers)
        if quote is not None:
            return quote
    return _price_general(timeline, tz, start, end, quantity, registers, cycle_usage)


def _interval(start: dt.datetime, end: dt.datetime, quantity: Decimal) -> tuple[dt.datetime, dt.datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise PricingError("start and end must be aware datetimes")
    if quantity < 0:
        raise PricingError(f"negative quantity {quantity}")
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if end < start:
        start = end
    return start, end


# (period, quantity, unit price, amount) of one energy line of the common case
DirectLine = tuple[str, Decimal, Decimal, Decimal]


def price_direct(
    timeline: TariffTimeline, start: dt.datetime, end: dt.datetime, quantity: Decimal, registers: Mapping[str, Decimal]
) -> tuple[TariffVersion, Decimal, list[DirectLine]] | None:
    """The common case of :func:`price_consumption` (per-period registers, one time-of-use
    version over the whole interval, no tiers) without building its :class:`Line` and
    :class:`Quote` objects: (the version, the exact total, the energy lines), the very values
    of the quote's lines; None when the case does not apply (price the general way then)."""
    start, end = _interval(start, end, quantity)
    return _direct(timeline, start, end, quantity, registers)


def _price_general(
    timeline: TariffTimeline,
    tz: ZoneInfo,
    start: dt.datetime,
    end: dt.datetime,
    quantity: Decimal,
    registers: Mapping[str, Decimal] | None,
    cycle_usage: Mapping[str, Decimal] | None,
) -> Quote:
    coarse = _coarse(timeline, start, end, tz)
    use_registers = False
    if registers is not None:
        with exact():
            if sum(registers.values(), ZERO) != quantity:
                raise PricingError("register quantities do not add up to the quantity")
        if any(v < 0 for v in registers.values()):
            raise PricingError("negative register quantity")
        used = {p for p, q in registers.items() if q > 0}
        use_registers = all(
            p.version.definition.tou is not None and used <= set(p.version.definition.periods) for p in coarse
        )
    # (piece, period, quantity) in time order
    portions: list[tuple[_Piece, str | None, Decimal]] = []
    if use_registers:
        assert registers is not None
        weights = [p.micros for p in coarse]
        for period, q in registers.items():
            if q == 0:
                continue
            for piece, part in zip(coarse, allocate(q, weights), strict=False):
                portions.append((piece, period, part))
        portions.sort(key=lambda x: x[0].start)
    else:
        fine = [f for p in coarse for f in _fine(p, tz)]
        for piece, part in zip(fine, allocate(quantity, [f.micros for f in fine]), strict=False):
            portions.append((piece, piece.period if piece.version.definition.tou is not None else None, part))
    lines: list[Line] = []
    usage = dict(cycle_usage or {})
    added: dict[str, Decimal] = {}
    with exact():
        # (version, period) -> [start, end, quantity, unit price], in first-seen order
        energy: dict[tuple[int, str | None], _EnergyAcc] = {}
        for piece, portion_period, portion_q in portions:
            if portion_q == 0:
                continue
            energy_key = (piece.version.version, portion_period)
            if energy_key not in energy:
                energy[energy_key] = _EnergyAcc(
                    piece.start, piece.end, ZERO, piece.version.definition.energy_price(portion_period)
                )
            acc = energy[energy_key]
            acc.end = piece.end
            acc.quantity = acc.quantity + portion_q
        for (version, energy_period), acc in energy.items():
            lines.append(
                Line("energy", version, energy_period, None, acc.quantity, acc.price, acc.quantity * acc.price, acc.start, acc.end)
            )
        for piece, _period, q in portions:
            tiers = piece.version.definition.tiers
            if tiers is None or q == 0:
                continue
            key = cycle_key(tiers.cycle, piece.start.astimezone(tz).date())
            before = usage.get(key, ZERO)
            position, remaining = before, q
            for index, block in enumerate(tiers.blocks, start=1):
                upper = block.up_to
                if upper is not None and position >= upper:
                    continue
                take = remaining if upper is None else min(remaining, upper - position)
                if take > 0 and block.adder != 0:
                    lines.append(Line("tier", piece.version.version, None, index, take, block.adder, take * block.adder, piece.start, piece.end, key))
                position += take
                remaining -= take
                if remaining == 0:
                    break
            usage[key] = before + q
            added[key] = added.get(key, ZERO) + q
        lines = _merge_tier_lines(lines)
        total = sum((line.amount for line in lines), ZERO)
    return Quote(lines, total, quantity, use_registers, added)


def _by_registers_one_version(
    timeline: TariffTimeline, start: dt.datetime, end: dt.datetime, quantity: Decimal, registers: Mapping[str, Decimal]
) -> Quote | None:
    """The common case priced directly: per-period registers, one time-of-use version in force
    over the whole interval, no tiers. The quote is the one the general path builds (one energy
    line per period with consumption, in the registers' order); None when the case does not apply."""
    direct = _direct(timeline, start, end, quantity, registers)
    if direct is None:
        return None
    version, total, items = direct
    lines = [Line("energy", version.version, period, None, q, price, amount, start, end) for period, q, price, amount in items]
    return Quote(lines, total, quantity, True, {})


def _direct(
    timeline: TariffTimeline, start: dt.datetime, end: dt.datetime, quantity: Decimal, registers: Mapping[str, Decimal]
) -> tuple[TariffVersion, Decimal, list[DirectLine]] | None:
    version = timeline.at(start)
    defn = version.definition
    tou = defn.tou
    if tou is None or defn.tiers is not None or timeline.changes_within(start, end):
        return None
    prices = _period_prices(defn)
    items: list[DirectLine] = []
    with exact():
        total = ZERO
        for period, q in registers.items():
            if q < 0:
                raise PricingError("negative register quantity")
            if q == 0:
                continue
            price = prices.get(period)
            if price is None:
                return None  # a period the version does not know: split by time instead
            q = ZERO + q  # the general path's sum of portions (same exponent, not just same value)
            amount = q * price
            total += amount
            items.append((period, q, price, amount))
        if sum(registers.values(), ZERO) != quantity:
            raise PricingError("register quantities do not add up to the quantity")
    return version, total, items


_PRICES: dict[int, tuple[TariffDefinition, dict[str, Decimal]]] = {}


def _period_prices(defn: TariffDefinition) -> dict[str, Decimal]:
    """The version's price per period (cached by definition: definitions are not changed)."""
    hit = _PRICES.get(id(defn))
    if hit is not None and hit[0] is defn:
        return hit[1]
    assert defn.tou is not None
    prices = {p.name: p.price for p in defn.tou.periods}
    if len(_PRICES) > 1000:
        _PRICES.clear()
    _PRICES[id(defn)] = (defn, prices)
    return prices


def _merge_tier_lines(lines: list[Line]) -> list[Line]:
    out: list[Line] = []
    index: dict[tuple[int, int | None, str | None], int] = {}
    for line in lines:
        if line.kind != "tier":
            out.append(line)
            continue
        key = (line.version, line.block, line.cycle)
        if key in index:
            prev = out[index[key]]
            q = prev.quantity + line.quantity
            out[index[key]] = Line("tier", prev.version, None, prev.block, q, prev.unit_price, prev.amount + line.amount, prev.start, line.end, prev.cycle)
        else:
            index[key] = len(out)
            out.append(line)
    return out


def round_fraction(value: Fraction, minor_units: int, mode: str) -> int:
    """An exact fraction of currency units rounded to minor units with ``mode``."""
    if mode not in ROUNDING_MODES:
        raise PricingError(f"unknown rounding mode {mode!r}")
    scaled: Fraction = value * 10**minor_units
    sign = -1 if scaled < 0 else 1
    a = abs(scaled)
    floor = a.numerator // a.denominator
    frac = a - floor
    if frac == 0:
        return sign * floor
    if mode == "down":
        up = False
    elif mode == "up":
        up = True
    elif frac != Fraction(1, 2):
        up = frac > Fraction(1, 2)
    elif mode == "half_up":
        up = True
    elif mode == "half_down":
        up = False
    else:  # half_even
        up = floor % 2 == 1
    return sign * (floor + 1 if up else floor)


def prorata_minor(monthly: Decimal, day: int, days_in_month: int, minor_units: int, mode: str) -> int:
    """The charge for day ``day`` (1-based) of a month charged daily pro rata, in minor units.

    Cumulative rounding: day d gets round(M·d/D) − round(M·(d−1)/D), so a whole month adds up
    to round(M) exactly, with no remainder drifting between days.
    """
    if not 1 <= day <= days_in_month:
        raise PricingError(f"day {day} outside 1..{days_in_month}")
    m = Fraction(monthly)
    return round_fraction(m * day / days_in_month, minor_units, mode) - round_fraction(
        m * (day - 1) / days_in_month, minor_units, mode
    )
