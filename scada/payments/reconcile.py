"""The daily reconciliation of a provider's statement against our orders and our ledger.

For one local day and one provider:

- **paid, not credited**: a payment on the provider's statement with no recharge in our ledger
  (channel = provider, reference = its transaction id), unless we refunded it at the provider;
- **credited, not paid**: a recharge of the day through the provider whose transaction the
  provider does not know as paid (asked with :meth:`PaymentProvider.query` when it is not on the
  day's statement: a payment just before midnight is credited just after);
- **amount differs**: both sides know the payment, with different amounts;
- **refunded, not booked**: a refund on the statement whose order is not ``refunded`` here.

The report is kept (``payment_reconciliations``), logged, and answered by
``scada payments reconcile`` and ``GET /api/v1/payments/reconciliations``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from scada.db import Database
from scada.payments.models import PaymentOrder, Reconciliation
from scada.payments.orders import order_no as order_number
from scada.payments.orders import parse_order_no
from scada.payments.provider import PaymentProvider
from scada.prepaid.models import LedgerEntry
from scada.prepaid.money import format_minor
from tags import utcnow

__all__ = ["ReconcileReport", "day_bounds", "reconcile_day", "reports"]

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    provider: str
    day: dt.date
    payments: int = 0  # on the statement
    refunds: int = 0
    credited: int = 0  # recharges through the provider in our ledger that day
    paid_not_credited: list[dict[str, Any]] = field(default_factory=list)
    credited_not_paid: list[dict[str, Any]] = field(default_factory=list)
    amount_differs: list[dict[str, Any]] = field(default_factory=list)
    refunded_not_booked: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.paid_not_credited or self.credited_not_paid or self.amount_differs or self.refunded_not_booked)

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider, "day": self.day.isoformat(), "ok": self.ok, "payments": self.payments, "refunds": self.refunds,
            "credited": self.credited, "paid_not_credited": self.paid_not_credited, "credited_not_paid": self.credited_not_paid,
            "amount_differs": self.amount_differs, "refunded_not_booked": self.refunded_not_booked,
        }


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz).astimezone(dt.UTC)
    return start, end


async def reconcile_day(
    db: Database, provider: PaymentProvider, day: dt.date, *, tz: ZoneInfo, minor_units: int, now: dt.datetime | None = None,
    save: bool = True,
) -> ReconcileReport:
    """Reconcile one provider's statement of one local day (see the module docstring)."""
    provider_name = provider.name

    def fmt(minor: int) -> str:
        return format_minor(minor, minor_units)

    start, end = day_bounds(day, tz)
    lines = await provider.statement(start, end)
    payments = {line.transaction_id: line for line in lines if line.kind == "payment"}
    refunds = [line for line in lines if line.kind == "refund"]
    report = ReconcileReport(provider_name, day, payments=len(payments), refunds=len(refunds))
    async with db.sessions() as s:
        credits = {e.reference: e for e in (await s.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "recharge", LedgerEntry.channel == provider_name,
            LedgerEntry.reference.in_(list(payments)) if payments else LedgerEntry.id < 0))).all()}
        of_day = (await s.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "recharge", LedgerEntry.channel == provider_name, LedgerEntry.ts >= start, LedgerEntry.ts < end))).all()
        order_ids = [i for i in (parse_order_no(line.order_no) for line in lines) if i is not None]
        orders = {o.id: o for o in (await s.scalars(select(PaymentOrder).where(PaymentOrder.id.in_(order_ids)))).all()} if order_ids else {}
    report.credited = len(of_day)
    for txn, line in payments.items():
        entry = credits.get(txn)
        order = orders.get(parse_order_no(line.order_no) or 0)
        if entry is None:
            if order is not None and order.state == "refunded" and order.entry_id is None:
                continue  # a late payment, or one for a closed account: refunded at the provider, never credited
            report.paid_not_credited.append({
                "order_no": line.order_no, "transaction_id": txn, "amount": fmt(line.amount_minor), "paid_at": line.ts.isoformat(),
                "order_state": order.state if order is not None else None})
        elif entry.amount_minor != line.amount_minor:
            report.amount_differs.append({"order_no": line.order_no, "transaction_id": txn, "statement": fmt(line.amount_minor),
                                          "ledger": fmt(entry.amount_minor), "entry": entry.id})
    for entry in of_day:
        if entry.reference in payments:
            continue
        order_no = await _order_no_of(db, provider_name, entry.reference or "")
        known = await provider.query(order_no) if order_no else None
        if known is None or known.transaction_id != entry.reference or known.state not in ("paid", "refunded"):
            report.credited_not_paid.append({"entry": entry.id, "transaction_id": entry.reference, "amount": fmt(entry.amount_minor),
                                             "account": entry.account_id, "ts": entry.ts.isoformat(),
                                             "provider_state": known.state if known is not None else None})
        elif known.amount_minor != entry.amount_minor:
            report.amount_differs.append({"order_no": order_no, "transaction_id": entry.reference, "statement": fmt(known.amount_minor),
                                          "ledger": fmt(entry.amount_minor), "entry": entry.id})
    for line in refunds:
        order = orders.get(parse_order_no(line.order_no) or 0)
        if order is None or order.state != "refunded":
            report.refunded_not_booked.append({"order_no": line.order_no, "transaction_id": line.transaction_id,
                                               "amount": fmt(line.amount_minor), "order_state": order.state if order is not None else None})
    if save:
        async with db.transaction() as s:
            s.add(Reconciliation(provider=provider_name, day=day, ran_at=now or utcnow(), ok=report.ok, report=report.as_json()))
    if report.ok:
        log.info("payments reconciled", extra={"provider": provider_name, "day": day.isoformat(), "payments": report.payments,
                                                "credited": report.credited})
    else:
        log.warning("payments do not reconcile", extra={
            "provider": provider_name, "day": day.isoformat(), "paid_not_credited": len(report.paid_not_credited),
            "credited_not_paid": len(report.credited_not_paid), "amount_differs": len(report.amount_differs),
            "refunded_not_booked": len(report.refunded_not_booked)})
    return report


async def _order_no_of(db: Database, provider: str, transaction_id: str) -> str | None:
    async with db.sessions() as s:
        order_id = await s.scalar(select(PaymentOrder.id).where(PaymentOrder.provider == provider,
                                                                PaymentOrder.transaction_id == transaction_id))
    return order_number(order_id) if order_id is not None else None


async def reports(db: Database, *, day: dt.date | None = None, limit: int = 30) -> list[dict[str, Any]]:
    """The kept reports, newest first (of one day, or the last ``limit``)."""
    stmt = select(Reconciliation).order_by(Reconciliation.id.desc()).limit(limit)
    if day is not None:
        stmt = stmt.where(Reconciliation.day == day)
    async with db.sessions() as s:
        return [{**r.report, "id": r.id, "ran_at": r.ran_at.isoformat()} for r in (await s.scalars(stmt)).all()]
