"""Posting to the ledger, and the immutable views of accounts and entries handed out.

Every change of a balance goes through :func:`post` (or :func:`entry_row` for bulk inserts):
the account's balance moves by the entry's amount and the entry records the balance after it,
who posted it, through which channel, when and why.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from scada.alarms.notify.contacts import (
    Contact,  # the alarm engine's contact: what room_contact returns
)
from scada.prepaid.levels import LEVEL_NAMES, Threshold, thresholds_json
from scada.prepaid.models import Account, LedgerEntry
from scada.prepaid.money import format_minor
from scada.users.audit import Actor

__all__ = [
    "AccountView",
    "Contact",
    "EntryView",
    "KINDS",
    "MODES",
    "account_view",
    "entry_row",
    "entry_view",
    "post",
    "thresholds_column",
    "thresholds_from_column",
    "thresholds_of",
]

# credit (+) or debit (−) kinds; a reversal has the opposite sign of the entry it reverses.
# The back office (scada.billing) posts ``charge`` (custom charges, naming their rule),
# ``payment`` (a bill paid, credit), ``adjustment`` (a retroactive re-pricing or a credit note,
# either sign) and ``late_fee`` (debit); the meter topology (scada.topology) posts
# ``apportionment`` (a room's share of a common meter or a loss, debit).
KINDS = (
    "opening", "recharge", "refund", "deduction", "charge", "reversal", "settlement", "payment", "adjustment", "late_fee",
    "apportionment",
)
MODES = ("prepaid", "postpaid")


@dataclass(frozen=True)
class AccountView:
    id: int
    room_id: str
    state: str
    balance_minor: int
    credit_limit_minor: int
    emergency_credit_minor: int
    emergency_taken_at: dt.datetime | None
    alarm_level: int
    supply_state: str
    reconnect_pending: bool
    protected: bool
    friendly_credit: bool
    auto_reconnect: bool
    thresholds: tuple[Threshold, ...]
    contact: Contact
    electricity_tariff_id: str | None
    water_tariff_id: str | None
    capacity_kva: Decimal | None
    demand_kw: Decimal | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    remainder: Decimal
    mode: str = "prepaid"
    dunning_level: int = 0
    dunning_cut: bool = False

    @property
    def open(self) -> bool:
        return self.state == "open"

    @property
    def emergency_active_minor(self) -> int:
        return self.emergency_credit_minor if self.emergency_taken_at is not None else 0

    def as_json(self, minor_units: int, *, contact: bool = True) -> dict[str, Any]:
        """The account as JSON; ``contact=False`` leaves the tenant's contact details out
        (``"contact": null``) for users who may not see them."""
        m = minor_units
        return {
            "id": self.id, "room": self.room_id, "state": self.state,
            "balance": format_minor(self.balance_minor, m),
            "credit_limit": format_minor(self.credit_limit_minor, m),
            "emergency_credit": format_minor(self.emergency_credit_minor, m),
            "emergency_taken_at": self.emergency_taken_at.isoformat() if self.emergency_taken_at else None,
            "alarm_level": self.alarm_level, "alarm": LEVEL_NAMES[self.alarm_level],
            "supply_state": self.supply_state, "reconnect_pending": self.reconnect_pending,
            "protected": self.protected, "friendly_credit": self.friendly_credit, "auto_reconnect": self.auto_reconnect,
            "thresholds": thresholds_json(self.thresholds, m),
            "contact": {"name": self.contact.name, "phone": self.contact.phone, "email": self.contact.email,
                        "language": self.contact.language} if contact else None,
            "tariffs": {"electricity": self.electricity_tariff_id, "water": self.water_tariff_id},
            "capacity_kva": format(self.capacity_kva, "f") if self.capacity_kva is not None else None,
            "demand_kw": format(self.demand_kw, "f") if self.demand_kw is not None else None,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "mode": self.mode, "dunning": {"level": self.dunning_level, "cut": self.dunning_cut},
        }

    @property
    def postpaid(self) -> bool:
        return self.mode == "postpaid"


@dataclass(frozen=True)
class EntryView:
    id: int
    account_id: int
    ts: dt.datetime
    kind: str
    amount_minor: int
    balance_after_minor: int
    actor: str
    source: str
    reason: str
    channel: str | None
    reference: str | None
    reverses_id: int | None
    meter_id: str | None
    reading_from: Decimal | None
    reading_to: Decimal | None
    quantity: Decimal | None
    cost: Decimal | None
    detail: Any

    def as_json(self, minor_units: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "account": self.account_id, "ts": self.ts.isoformat(), "kind": self.kind,
            "amount": format_minor(self.amount_minor, minor_units),
            "balance_after": format_minor(self.balance_after_minor, minor_units),
            "actor": self.actor, "source": self.source, "reason": self.reason,
        }
        for key in ("channel", "reference", "reverses_id", "meter_id"):
            value = getattr(self, key)
            if value is not None:
                out[key.replace("_id", "") if key == "reverses_id" else key] = value
        for key in ("reading_from", "reading_to", "quantity", "cost"):
            value = getattr(self, key)
            if value is not None:
                out[key] = format(value, "f")
        if self.detail:
            out["detail"] = self.detail
        return out


def thresholds_of(account: Account) -> tuple[Threshold, ...]:
    return thresholds_from_column(account.thresholds)


_THRESHOLDS_BY_TEXT: dict[str, tuple[Threshold, ...]] = {}


def thresholds_from_column(column: list[dict[str, Any]] | str | None) -> tuple[Threshold, ...]:
    """The thresholds stored by :func:`thresholds_column`, from the column's value or its JSON
    text (the billing batch reads it as text: most accounts share a few texts, each decoded once)."""
    if isinstance(column, str):
        hit = _THRESHOLDS_BY_TEXT.get(column)
        if hit is None:
            if len(_THRESHOLDS_BY_TEXT) > 10_000:
                _THRESHOLDS_BY_TEXT.clear()
            hit = _THRESHOLDS_BY_TEXT[column] = _thresholds(json.loads(column))
        return hit
    return _thresholds(column)


def _thresholds(column: list[dict[str, Any]] | None) -> tuple[Threshold, ...]:
    out = []
    for t in column or []:
        if "money_minor" in t:
            out.append(Threshold(int(t["level"]), money_minor=int(t["money_minor"])))
        else:
            out.append(Threshold(int(t["level"]), days=Decimal(str(t["days"]))))
    return tuple(out)


def thresholds_column(thresholds: tuple[Threshold, ...] | list[Threshold]) -> list[dict[str, Any]]:
    return [
        {"level": t.level, "money_minor": t.money_minor} if t.money_minor is not None else {"level": t.level, "days": format(t.days, "f")}
        for t in thresholds
    ]


def account_view(a: Account, thresholds: tuple[Threshold, ...] | None = None) -> AccountView:
    """The view of ``a``; ``thresholds``: its thresholds if the caller has read them already."""
    return AccountView(
        a.id, a.room_id, a.state, a.balance_minor, a.credit_limit_minor, a.emergency_credit_minor,
        a.emergency_taken_at, a.alarm_level, a.supply_state, a.reconnect_pending, a.protected,
        a.friendly_credit, a.auto_reconnect, thresholds_of(a) if thresholds is None else thresholds,
        Contact(a.contact_name, a.contact_phone, a.contact_email, a.language),
        a.electricity_tariff_id, a.water_tariff_id, a.capacity_kva, a.demand_kw, a.opened_at, a.closed_at,
        a.remainder, a.mode or "prepaid", a.dunning_level or 0, bool(a.dunning_cut),
    )


def entry_view(e: LedgerEntry) -> EntryView:
    return EntryView(
        e.id, e.account_id, e.ts, e.kind, e.amount_minor, e.balance_after_minor, e.actor, e.source, e.reason,
        e.channel, e.reference, e.reverses_id, e.meter_id, e.reading_from, e.reading_to, e.quantity, e.cost, e.detail,
    )


def entry_row(account: Account, kind: str, amount_minor: int, actor: Actor, now: dt.datetime, *, reason: str = "", **cols: Any) -> dict[str, Any]:
    """Move the balance and return the entry as a row for a bulk insert."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    account.balance_minor = account.balance_minor + amount_minor
    account.updated_at = now
    return {
        "account_id": account.id, "ts": now, "kind": kind, "amount_minor": amount_minor,
        "balance_after_minor": account.balance_minor, "actor": actor.name, "source": actor.source,
        "reason": reason, **cols,
    }


def post(
    session: AsyncSession, account: Account, kind: str, amount_minor: int, actor: Actor, now: dt.datetime, *, reason: str = "", **cols: Any
) -> LedgerEntry:
    """Move the balance and add the entry to ``session`` (it commits with the caller's change)."""
    entry = LedgerEntry(**entry_row(account, kind, amount_minor, actor, now, reason=reason, **cols))
    session.add(entry)
    return entry
