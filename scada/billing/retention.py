"""Data retention for the back office's customers (``prepaid.personal_data_retention_days``).

A customer whose accounts are all closed, the last of them at least the retention ago, loses its
contact details: phone, e-mail and address, and for a person also the name and tax id (a
company's name and tax id are not personal data, and its bills stay readable). The notification
log's rows to its addresses up to that last closing lose the address and the text, as for a
tenant. A customer with no account, or one a prepared account still waits for, is kept. One
transaction and one audit row (``customer.personal_data_erased``, no personal data) per customer;
bills and the ledger are not touched.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, column, exists, or_, select, table, update

from scada.alarms.notify.models import DeliveryRow
from scada.billing.models import AccountBilling, Customer
from scada.db import Database
from scada.prepaid.models import Account
from scada.prepaid.retention import ERASED
from scada.users.audit import Actor, AuditLog

__all__ = ["erase_customer_data"]

log = logging.getLogger(__name__)

_ACTOR = Actor.system("retention")
# the operations feature's prepared accounts (a layer above this one, so named here by table):
# a customer a prepared account still waits for keeps its contact details
_PREPARED = table("prepared_accounts", column("customer_id"), column("state"))


async def erase_customer_data(db: Database, retention_days: int, now: dt.datetime, *, batch: int = 100) -> int:
    """Erase the contact details of customers whose accounts all closed at least
    ``retention_days`` before ``now`` (that still hold any); returns how many customers."""
    cutoff = now - dt.timedelta(days=retention_days)
    link_of = AccountBilling.customer_id == Customer.id
    still_held = (
        select(AccountBilling.account_id).join(Account, Account.id == AccountBilling.account_id)
        .where(link_of, or_(Account.state != "closed", Account.closed_at.is_(None), Account.closed_at > cutoff))
    )
    holds_contact = or_(Customer.phone.is_not(None), Customer.email.is_not(None), Customer.address != "",
                        and_(Customer.kind == "person", or_(Customer.name != "", Customer.tax_id.is_not(None))))
    async with db.sessions() as s:
        due = (await s.scalars(
            select(Customer.id).where(
                exists(select(AccountBilling.account_id).where(link_of)), ~exists(still_held),
                ~exists(select(_PREPARED.c.customer_id).where(_PREPARED.c.customer_id == Customer.id, _PREPARED.c.state == "prepared")),
                holds_contact,
            ).order_by(Customer.id).limit(batch)
        )).all()
    done = 0
    for customer_id in due:
        async with db.transaction() as s:
            c = await s.scalar(select(Customer).where(Customer.id == customer_id).with_for_update())
            if c is None:
                continue
            closings = (await s.execute(
                select(Account.id, Account.state, Account.closed_at).join(AccountBilling, AccountBilling.account_id == Account.id)
                .where(AccountBilling.customer_id == c.id)
            )).all()
            if not closings or any(st != "closed" or at is None or at > cutoff for _, st, at in closings):
                continue  # an account was opened or reopened since the look-up
            last_closed = max(at for _, _, at in closings if at is not None)
            addresses = [x for x in (c.phone, c.email) if x]
            c.phone, c.email, c.address, c.updated_at = None, None, "", now
            if c.kind == "person":
                c.name, c.tax_id = "", None
            deliveries = 0
            if addresses:
                result = await s.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.recipient.in_(addresses), DeliveryRow.created_at <= last_closed)
                    .values(recipient=ERASED, body="")
                )
                deliveries = int(result.rowcount or 0)  # type: ignore[attr-defined]
            AuditLog.record(
                s, _ACTOR, "customer.personal_data_erased", "customer", str(c.id),
                reason=f"all accounts closed for {retention_days} days or more (prepaid.personal_data_retention_days)",
                after={"kind": c.kind, "accounts": sorted(a for a, _, _ in closings), "last_closed_at": last_closed,
                       "deliveries": deliveries},
            )
            done += 1
            log.info("personal data erased", extra={"customer": c.id})
    return done

