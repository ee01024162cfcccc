"""Charge rules (rent, property fee, service fee, any named charge) and their ledger postings.

A rule is ``fixed`` or ``per_area`` (its amount × the room's m²), per period (monthly,
quarterly, yearly) or ``once``, for rooms, a floor, a building or all, from ``start`` until
``end`` (exclusive). Each (rule, account, period) is charged once: the entry's idempotency key
is ``rule:<rule>:<account>:<period>``, so neither a restart nor a second billing run posts it
twice. A part period (move in, move out, a rule starting or ending inside it) is charged pro
rata by days, rounded once. ``from_balance`` rules are deducted on the first day of the
period (or of the account's part of it); ``on_bill`` rules are posted by the billing run of
the month in which that first day lies. Both are ledger entries of kind ``charge`` naming
their rule; a move-out credits back what was charged for the days after it (kind
``adjustment``, keyed ``…:end``). Amounts are tax included; the tax part is shown on the bill.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing.errors import BillingError
from scada.billing.models import ChargeRule
from scada.billing.periods import PERIOD_KINDS, Period, period_of, periods_between, prorata
from scada.prepaid.ledger import post
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.pricing import plain, round_fraction
from scada.prepaid.tariff_definition import decimal_input
from scada.site.assets import AssetSnapshot, RoomInfo
from scada.users.audit import Actor

__all__ = [
    "Instance",
    "RuleInput",
    "RuleView",
    "due_instances",
    "instance_key",
    "parse_rule",
    "post_instances",
    "rule_view",
    "tax_part",
    "true_up",
]

log = logging.getLogger(__name__)

KINDS = ("fixed", "per_area")
SETTLE = ("from_balance", "on_bill")


@dataclass(frozen=True)
class RuleView:
    id: int
    name: str
    kind: str
    amount: Decimal
    period: str
    targets: Any
    settle: str
    tax_rate: Decimal | None
    start: dt.date
    end: dt.date | None
    reason: str
    created_at: dt.datetime
    created_by: str
    ended_at: dt.datetime | None = None
    ended_by: str | None = None

    def applies_to(self, room: RoomInfo) -> bool:
        t = self.targets
        if t == "all":
            return True
        if isinstance(t, dict):
            if "rooms" in t:
                return room.id in t["rooms"]
            if "floor" in t:
                return bool(room.floor_id == t["floor"])
            if "building" in t:
                return bool(room.building_id == t["building"])
        return False

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "amount": plain(self.amount), "period": self.period,
            "targets": self.targets, "settle": self.settle, "tax_rate": plain(self.tax_rate) if self.tax_rate is not None else None,
            "start": self.start.isoformat(), "end": self.end.isoformat() if self.end else None, "reason": self.reason,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "ended_by": self.ended_by,
        }


def rule_view(r: ChargeRule) -> RuleView:
    return RuleView(r.id, r.name, r.kind, r.amount, r.period, r.targets, r.settle, r.tax_rate, r.start, r.end, r.reason,
                    r.created_at, r.created_by, r.ended_at, r.ended_by)


@dataclass(frozen=True)
class RuleInput:
    """A rule as validated from outside (the API's body)."""

    name: str
    kind: str
    amount: Decimal
    period: str
    targets: Any
    settle: str
    tax_rate: Decimal | None
    start: dt.date
    end: dt.date | None
    reason: str = ""


def _decimal(value: Any, field: str, *, decimals: int) -> Decimal:
    try:
        return decimal_input(value, decimals=decimals, what=field)
    except ValueError as exc:
        raise BillingError(f"{field}: {exc}", field=field) from None


def parse_rule(body: dict[str, Any], snapshot: AssetSnapshot, *, today: dt.date, max_amount: Decimal) -> RuleInput:
    """Check a rule from outside; a bad field is a 422 naming it."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise BillingError("name: 1 to 200 characters", field="name")
    kind = body.get("kind")
    if kind not in KINDS:
        raise BillingError(f"kind: one of {', '.join(KINDS)}, found {kind!r}", field="kind")
    amount = _decimal(body.get("amount"), "amount", decimals=6)
    if amount == 0:
        raise BillingError("amount: must be greater than zero", field="amount")
    if amount > max_amount:
        raise BillingError(f"amount: {plain(amount)} is larger than the maximum {plain(max_amount)}", field="amount")
    period = body.get("period")
    if period not in PERIOD_KINDS:
        raise BillingError(f"period: one of {', '.join(PERIOD_KINDS)}, found {period!r}", field="period")
    settle = body.get("settle")
    if settle not in SETTLE:
        raise BillingError(f"settle: one of {', '.join(SETTLE)}, found {settle!r}", field="settle")
    targets = _targets(body.get("targets"), snapshot)
    tax_rate = None
    if body.get("tax_rate") is not None:
        tax_rate = _decimal(body["tax_rate"], "tax_rate", decimals=6)
        if tax_rate >= 1:
            raise BillingError(f"tax_rate: a fraction from 0 to 1 (0.09 = 9 %), found {plain(tax_rate)}", field="tax_rate")
    start = body.get("start") or today
    end = body.get("end")
    if not isinstance(start, dt.date):
        raise BillingError("start: expected a date YYYY-MM-DD", field="start")
    if end is not None and (not isinstance(end, dt.date) or end <= start):
        raise BillingError(f"end: must be a date after start ({start.isoformat()})", field="end")
    if kind == "per_area":
        rooms = [r for r in snapshot.rooms.values() if _match(targets, r)]
        without = sorted(r.id for r in rooms if r.area_m2 is None)
        if without:
            raise BillingError(f"targets: per_area needs each room's m²; room {without[0]} has none", field="targets")
    reason = body.get("reason") or ""
    return RuleInput(name.strip(), kind, amount, period, targets, settle, tax_rate, start, end, str(reason)[:500])


def _match(targets: Any, room: RoomInfo) -> bool:
    return RuleView(0, "", "", Decimal(0), "", targets, "", None, dt.date.min, None, "", dt.datetime.min, "").applies_to(room)


def _targets(value: Any, snapshot: AssetSnapshot) -> Any:
    if value == "all":
        return "all"
    if not isinstance(value, dict) or len(value) != 1:
        raise BillingError('targets: "all", {"rooms": [...]}, {"floor": ID} or {"building": ID}', field="targets")
    (key, item), = value.items()
    if key == "rooms":
        if not isinstance(item, list) or not item or len(item) > 100_000:
            raise BillingError("targets.rooms: a non-empty list of room ids", field="targets.rooms")
        for i, room in enumerate(item):
            if not isinstance(room, str) or room not in snapshot.rooms:
                raise BillingError(f"targets.rooms[{i}]: no room {room!r}", field=f"targets.rooms[{i}]")
        return {"rooms": sorted(set(item))}
    if key == "floor":
        if not isinstance(item, str) or item not in snapshot.floors:
            raise BillingError(f"targets.floor: no floor {item!r}", field="targets.floor")
        return {"floor": item}
    if key == "building":
        if not isinstance(item, str) or item not in snapshot.buildings:
            raise BillingError(f"targets.building: no building {item!r}", field="targets.building")
        return {"building": item}
    raise BillingError(f"targets.{key}: unknown target (rooms, floor or building)", field=f"targets.{key}")


# -- instances: what one rule charges one account for one period ---------------------------------
@dataclass(frozen=True)
class Instance:
    rule: RuleView
    period: Period
    active_start: dt.date
    active_end: dt.date  # exclusive
    amount_minor: int
    quantity: Decimal  # m² for per_area, 1 for fixed
    fraction: tuple[int, int]  # (active days, period days); (1, 1) for once

    @property
    def key_suffix(self) -> str:
        return self.period.key

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule.id, "name": self.rule.name, "period": self.period.key, "rule_kind": self.rule.kind,
            "quantity": plain(self.quantity), "unit_price": plain(self.rule.amount), "settle": self.rule.settle,
            "from": self.active_start.isoformat(),
        }
        if self.period.kind != "once":
            out["to"] = (self.active_end - dt.timedelta(days=1)).isoformat()
            out["days"] = list(self.fraction)
        if self.rule.tax_rate is not None:
            out["tax_rate"] = plain(self.rule.tax_rate)
        return out


def instance_key(rule_id: int, account_id: int, period_key: str) -> str:
    return f"rule:{rule_id}:{account_id}:{period_key}"


def _instance(rule: RuleView, room: RoomInfo, period: Period, start: dt.date, end: dt.date | None,
              minor_units: int, rounding: str) -> Instance | None:
    """The charge of ``rule`` for the part of ``period`` the account holds ``[start, end)``."""
    if rule.kind == "per_area":
        if room.area_m2 is None:
            log.warning("per_area charge skipped: the room has no area", extra={"room": room.id, "rule": rule.id})
            return None
        quantity = room.area_m2
    else:
        quantity = Decimal(1)
    base = rule.amount * quantity
    if rule.period == "once":
        day = max(rule.start, start)
        if end is not None and day >= end or rule.end is not None and day >= rule.end:
            return None
        return Instance(rule, period, day, day + dt.timedelta(days=1), prorata(base, 1, 1, minor_units, rounding), quantity, (1, 1))
    clipped = period.clip(max(rule.start, start), min(e for e in (rule.end, end) if e is not None) if (rule.end or end) else None)
    if clipped is None:
        return None
    a, b = clipped
    active = (b - a).days
    return Instance(rule, period, a, b, prorata(base, active, period.days, minor_units, rounding), quantity, (active, period.days))


def due_instances(
    rule: RuleView, room: RoomInfo, account_start: dt.date, account_end: dt.date | None, first: dt.date, last: dt.date,
    *, minor_units: int, rounding: str,
) -> list[Instance]:
    """The rule's charges for an account held ``[account_start, account_end)`` whose first
    charged day falls in ``[first, last]``."""
    if not rule.applies_to(room):
        return []
    if rule.period == "once":
        inst = _instance(rule, room, period_of("once", rule.start, rule.start), account_start, account_end, minor_units, rounding)
        return [inst] if inst is not None and first <= inst.active_start <= last else []
    out = []
    lo = max(first, account_start, rule.start)
    for p in periods_between(rule.period, period_of(rule.period, lo).start, last):
        inst = _instance(rule, room, p, account_start, account_end, minor_units, rounding)
        if inst is not None and first <= inst.active_start <= last and inst.amount_minor > 0:
            out.append(inst)
    return out


async def posted_keys(s: AsyncSession, keys: list[str]) -> dict[str, LedgerEntry]:
    if not keys:
        return {}
    out: dict[str, LedgerEntry] = {}
    for i in range(0, len(keys), 500):
        rows = (await s.scalars(select(LedgerEntry).where(LedgerEntry.idem_key.in_(keys[i:i + 500])))).all()
        out.update({e.idem_key: e for e in rows if e.idem_key is not None})
    return out


async def post_instances(s: AsyncSession, account: Account, instances: list[Instance], actor: Actor, ts: dt.datetime) -> list[LedgerEntry]:
    """Post each instance not posted yet (by its key); returns the new entries."""
    keys = [instance_key(i.rule.id, account.id, i.key_suffix) for i in instances]
    done = await posted_keys(s, keys)
    out = []
    for inst, key in zip(instances, keys, strict=True):
        if key in done or inst.amount_minor == 0:
            continue
        label = f"{inst.rule.name} {inst.period.key}" if inst.period.kind != "once" else inst.rule.name
        out.append(post(s, account, "charge", -inst.amount_minor, actor, ts, reason=label, idem_key=key, detail=inst.detail()))
    return out


async def true_up(
    s: AsyncSession, account: Account, rule: RuleView, room: RoomInfo, day: dt.date, end: dt.date,
    actor: Actor, ts: dt.datetime, *, minor_units: int, rounding: str, account_start: dt.date,
) -> LedgerEntry | None:
    """The account (or the rule) ends on ``end``: the period containing ``day`` is charged only
    for the days before ``end``. A charge already posted for more is credited back (kind
    ``adjustment``, key ``…:end``); one not posted yet is posted for the days held."""
    if not rule.applies_to(room) or rule.period == "once":
        return None
    period = period_of(rule.period, day)
    key = instance_key(rule.id, account.id, period.key)
    done = await posted_keys(s, [key, key + ":end"])
    if key + ":end" in done:
        return None
    inst = _instance(rule, room, period, account_start, end, minor_units, rounding)
    held = inst.amount_minor if inst is not None else 0
    first = done.get(key)
    if first is None:
        if inst is None or held == 0:
            return None
        label = f"{rule.name} {period.key}"
        return post(s, account, "charge", -held, actor, ts, reason=label, idem_key=key, detail=inst.detail())
    credit = -first.amount_minor - held
    if credit <= 0:
        return None
    return post(s, account, "adjustment", credit, actor, ts, reason=f"{rule.name} {period.key}: not charged after {end.isoformat()}",
                idem_key=key + ":end", detail={"rule": rule.id, "name": rule.name, "period": period.key, "end": end.isoformat(),
                                               "charged_minor": -first.amount_minor, "held_minor": held})


def tax_part(amount_minor: int, rate: Decimal | None, minor_units: int, rounding: str) -> int:
    """The tax included in a tax-inclusive amount: amount × rate ÷ (1 + rate), rounded once."""
    if not rate:
        return 0
    r = Fraction(rate)
    return round_fraction(Fraction(amount_minor, 10**minor_units) * r / (1 + r), minor_units, rounding)
