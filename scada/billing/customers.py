"""Customers: a person or a company holding one or more rooms' accounts, with the contact and
language their bills and statements use, billed per account or once per customer."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from scada.billing.errors import BillingError
from scada.billing.models import Customer

__all__ = ["CUSTOMER_KINDS", "CustomerView", "check_customer", "customer_view"]

CUSTOMER_KINDS = ("person", "company")
BILL_PER = ("account", "customer")
LANGUAGES = ("en", "zh-CN")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


@dataclass(frozen=True)
class CustomerView:
    id: int
    name: str
    kind: str
    phone: str | None
    email: str | None
    language: str
    address: str
    tax_id: str | None
    bill_per: str
    created_at: dt.datetime
    created_by: str
    rooms: tuple[str, ...] = ()  # the rooms of its open accounts
    accounts: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "phone": self.phone, "email": self.email,
            "language": self.language, "address": self.address, "tax_id": self.tax_id, "bill_per": self.bill_per,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "rooms": list(self.rooms), "accounts": list(self.accounts),
        }


def customer_view(c: Customer, rooms: tuple[str, ...] = (), accounts: tuple[int, ...] = ()) -> CustomerView:
    return CustomerView(c.id, c.name, c.kind, c.phone, c.email, c.language, c.address, c.tax_id, c.bill_per, c.created_at,
                        c.created_by, rooms, accounts)


CONTACT_FIELDS = ("phone", "email", "address")
PERSON_FIELDS = ("name", "tax_id")  # a person's own; a company's name and tax id are not personal data
NOT_LOGGED = "(not logged)"


def for_audit(fields: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """``fields`` as the audit log keeps them: contact details (and a person's name and tax id)
    only as "given", never their values. The audit log is append-only, so what it held would
    outlive the erasure of the customer's personal data (``prepaid.personal_data_retention_days``)."""
    hidden = CONTACT_FIELDS + (PERSON_FIELDS if kind != "company" else ())
    return {k: (NOT_LOGGED if k in hidden and v not in (None, "") else v) for k, v in fields.items()}


def check_customer(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The customer's fields from outside, checked; a bad field is a 422 naming it."""
    out: dict[str, Any] = {}
    if "name" in body or not partial:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise BillingError("name: 1 to 200 characters", field="name")
        out["name"] = name.strip()
    if "kind" in body or not partial:
        kind = body.get("kind", "person")
        if kind not in CUSTOMER_KINDS:
            raise BillingError(f"kind: one of {', '.join(CUSTOMER_KINDS)}, found {kind!r}", field="kind")
        out["kind"] = kind
    if "bill_per" in body or not partial:
        per = body.get("bill_per", "account")
        if per not in BILL_PER:
            raise BillingError(f"bill_per: one of {', '.join(BILL_PER)}, found {per!r}", field="bill_per")
        out["bill_per"] = per
    if "language" in body or not partial:
        lang = body.get("language", "zh-CN")
        if lang not in LANGUAGES:
            raise BillingError(f"language: one of {', '.join(LANGUAGES)}, found {lang!r}", field="language")
        out["language"] = lang
    for key, limit in (("phone", 64), ("tax_id", 64), ("address", 500)):
        if key in body:
            v = body[key]
            if v is not None and (not isinstance(v, str) or len(v) > limit):
                raise BillingError(f"{key}: at most {limit} characters", field=key)
            out[key] = v if key != "address" else (v or "")
    if "email" in body:
        v = body["email"]
        if v is not None and v != "" and (not isinstance(v, str) or not _EMAIL.match(v)):
            raise BillingError(f"email: not an e-mail address: {v!r}", field="email")
        out["email"] = v or None
    return out
