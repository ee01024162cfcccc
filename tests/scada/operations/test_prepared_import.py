"""The pre-set account import's contact column: a phone number passes the project's one E.164
check (``scada.core.inputs.e164``) before it can reach a billing customer or a prepared account;
a bad number is a row error naming its line and column, and nothing is created."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from scada.billing.models import Customer
from scada.operations.models import PreparedAccountRow
from scada.operations.prepared import PreparedAccounts

from ..prepaid.conftest import CASHIER, Site, site  # noqa: F401 - the fixture

HEADER = "customer,contact,room,tariff\n"


def prepared(s: Site) -> PreparedAccounts:
    return PreparedAccounts(s.db, s.engine, clock=lambda: dt.datetime.now(dt.UTC), billing=True)


async def test_a_phone_number_not_in_e164_form_is_a_row_error(site: Site) -> None:  # noqa: F811
    await site.flat_tariff()
    accounts = prepared(site)
    await accounts.load()
    bad = (HEADER + "Li Lei,13800000001,R1,FLAT\n"  # no country code
           "Han Meimei,+8613800000002&to=+19995550000,R2,FLAT\n"  # a second recipient at the SMS gateway
           "Zhang San,+86 138 0000 0003#,R3,FLAT\n")
    result = await accounts.import_file(bad.encode(), "text/csv", dry_run=False, actor=CASHIER, source="t.csv")
    assert [(e.line, e.column) for e in result.errors] == [(2, "contact"), (3, "contact"), (4, "contact")], result.errors
    assert all("E.164" in e.error for e in result.errors), result.errors
    assert result.created == []
    async with site.db.sessions() as s:
        assert (await s.scalars(select(Customer))).all() == []
        assert (await s.scalars(select(PreparedAccountRow))).all() == []


async def test_a_written_e164_number_is_stored_compact(site: Site) -> None:  # noqa: F811
    await site.flat_tariff()
    accounts = prepared(site)
    await accounts.load()
    good = HEADER + "Li Lei,+86 138-0000-0001,R1,FLAT\nHan Meimei,han@example.com,R3,FLAT\n"
    result = await accounts.import_file(good.encode(), "text/csv", dry_run=False, actor=CASHIER, source="t.csv")
    assert result.errors == [] and len(result.created) == 2
    assert {a["room"]: a["phone"] for a in result.created} == {"R1": "+8613800000001", "R3": None}
    async with site.db.sessions() as s:
        phones = {c.name: c.phone for c in (await s.scalars(select(Customer))).all()}
    assert phones == {"Li Lei": "+8613800000001", "Han Meimei": None}
