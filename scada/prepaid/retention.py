"""Data retention: a closed account's tenant contact details are erased once it has been closed
for ``prepaid.personal_data_retention_days``.

What is erased, in one transaction per account: the account's contact name, phone and e-mail;
the contact in the payloads of the room's approval requests made while the account was open;
and, in the notification delivery log, the tenant's address and the messages' texts (they greet
the tenant by name) of what was sent to that address until the account closed. Each erasure is
audited (which account, when it closed, under which setting — no personal data). The ledger is
not touched: its entries name no tenant, and money history must stay whole.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update

from scada.alarms.notify.models import DeliveryRow
from scada.approvals.models import ApprovalRequest
from scada.db import Database
from scada.prepaid.models import Account
from scada.users.audit import Actor, AuditLog

__all__ = ["ERASED", "Erased", "erase_personal_data"]

log = logging.getLogger(__name__)

ERASED = "(erased)"  # what an erased address reads as in the delivery log
_ACTOR = Actor.system("retention")


@dataclass(frozen=True)
class Erased:
    """One account whose tenant's personal data was erased."""

    account_id: int
    room_id: str
    closed_at: dt.datetime
    approvals: int  # approval requests whose payload named the contact
    deliveries: int  # notification log rows to the tenant's addresses


def _without_contact(value: Any) -> tuple[Any, bool]:
    """``value`` (JSON) with every ``contact`` key's value replaced by ``{"erased": true}``."""
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "contact" and v is not None and v != {"erased": True}:
                out[k] = {"erased": True}
                changed = True
            else:
                out[k], sub = _without_contact(v)
                changed = changed or sub
        return out, changed
    if isinstance(value, list):
        items = [_without_contact(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


async def erase_personal_data(db: Database, *, retention_days: int, now: dt.datetime, batch: int = 100) -> Sequence[Erased]:
    """Erase the contact details of accounts closed at least ``retention_days`` before ``now``
    (that still hold any); returns what was erased."""
    cutoff = now - dt.timedelta(days=retention_days)
    async with db.sessions() as s:
        due = (await s.scalars(
            select(Account.id).where(
                Account.state == "closed", Account.closed_at.is_not(None), Account.closed_at <= cutoff,
                or_(Account.contact_name != "", Account.contact_phone.is_not(None), Account.contact_email.is_not(None)),
            ).order_by(Account.id).limit(batch)
        )).all()
    done: list[Erased] = []
    for account_id in due:
        async with db.transaction() as s:
            a = await s.scalar(select(Account).where(Account.id == account_id).with_for_update())
            if a is None or a.state != "closed" or a.closed_at is None:
                continue
            addresses = [x for x in (a.contact_phone, a.contact_email) if x]
            a.contact_name, a.contact_phone, a.contact_email, a.updated_at = "", None, None, now
            approvals = 0
            for row in (await s.scalars(select(ApprovalRequest).where(
                    ApprovalRequest.target == f"room:{a.room_id}", ApprovalRequest.requested_at <= a.closed_at))).all():
                payload, changed = _without_contact(row.payload)
                if changed:
                    row.payload = payload
                    approvals += 1
            deliveries = 0
            if addresses:
                result = await s.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.recipient.in_(addresses), DeliveryRow.created_at <= a.closed_at)
                    .values(recipient=ERASED, body="")
                )
                deliveries = int(result.rowcount or 0)  # type: ignore[attr-defined]
            AuditLog.record(
                s, _ACTOR, "account.personal_data_erased", "account", str(a.id),
                reason=f"closed for {retention_days} days or more (prepaid.personal_data_retention_days)",
                after={"room": a.room_id, "closed_at": a.closed_at, "approval_requests": approvals, "deliveries": deliveries},
            )
            done.append(Erased(a.id, a.room_id, a.closed_at, approvals, deliveries))
    for e in done:
        log.info("personal data erased", extra={"account": e.account_id, "room": e.room_id})
    return done
