"""Data retention on SQLite and PostgreSQL: a closed account's tenant contact details are erased
after the configured days, with their traces in approval requests and the notification log;
audited; the ledger untouched; open accounts and recent closings untouched. The back office's
customers whose accounts all closed that long ago, and prepared accounts done with, go too."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from scada.alarms.notify.models import DeliveryRow
from scada.approvals.models import ApprovalRequest
from scada.approvals.service import ApprovalService
from scada.billing.models import Customer
from scada.billing.service import BillingService
from scada.operations.models import PreparedAccountRow
from scada.operations.prepared import PreparedAccounts
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import Contact
from scada.prepaid.models import LedgerEntry
from scada.prepaid.retention import ERASED
from scada.users.audit import AuditLog

from .conftest import CASHIER, Site
from .conftest import test_config as site_config


async def ledger_rows(site: Site) -> list[tuple[object, ...]]:
    async with site.db.sessions() as s:
        rows = (await s.scalars(select(LedgerEntry).order_by(LedgerEntry.id))).all()
        return [(e.id, e.account_id, e.kind, e.amount_minor, e.balance_after_minor, e.actor, e.reason) for e in rows]


def delivery(recipient: str, created_at: dt.datetime) -> DeliveryRow:
    return DeliveryRow(
        created_at=created_at, alarm_id=None, alarm_key="balance_low:room:R1", event="raised", route="tenants", channel="sms",
        recipient=recipient, language="zh-CN", subject="Low balance", body="尊敬的Li Lei：余额不足", payload="{}",
        dedup_key=f"k-{recipient}", status="sent", reason="", attempts=1, next_attempt_at=None, sent_at=created_at,
    )


async def test_closed_accounts_lose_their_contact_details_after_the_retention(site: Site, tmp_path: object, db_url: str) -> None:
    await site.flat_tariff()
    lilei = Contact("Li Lei", "+8613800000000", "li@example.com", "zh-CN")
    await site.open("R1", opening=5_000, contact=lilei)
    await site.open("R3", opening=1_000, contact=Contact("Han Meimei", "+8613900000000", None, "zh-CN"))
    approvals = ApprovalService(site.db, expire_after=dt.timedelta(hours=1))

    async def nothing(*_: object) -> None:
        return None

    approvals.register("account.settings", nothing)
    request = await approvals.request("account.settings", "room:R1", {"room": "R1", "settings": {"contact": {"name": "Li Lei"}, "protected": True}}, CASHIER)
    _, closing = await site.engine.close_account("R1", actor=CASHIER, reason="moved out")
    view = await site.engine.account("R1")
    assert view is not None and view.closed_at is not None
    closed_at = view.closed_at
    async with site.db.transaction() as s:
        s.add(delivery("+8613800000000", closed_at - dt.timedelta(days=3)))
        s.add(delivery("li@example.com", closed_at - dt.timedelta(days=2)))
        s.add(delivery("+8613900000000", closed_at - dt.timedelta(days=1)))  # the other tenant's
    ledger_before = await ledger_rows(site)

    config = site_config(tmp_path, db_url, "[prepaid]\npersonal_data_retention_days = 30\n")  # type: ignore[arg-type]
    engine = PrepaidEngine(config, site.db, site.assets, site.tagdb)
    await engine.load()
    try:
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=29)) == 0  # not yet
        assert (await engine.account("R1")).contact == lilei  # type: ignore[union-attr]
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=30)) == 1
        erased = await engine.account("R1")
        assert erased is not None and erased.contact == Contact("", None, None, "zh-CN")
        assert engine.views["R1"].contact.name == ""
        assert (await engine.account("R3")).contact.name == "Han Meimei"  # type: ignore[union-attr]  # open: kept
        async with site.db.sessions() as s:
            payload = (await s.get(ApprovalRequest, request.id)).payload  # type: ignore[union-attr]
            recipients = sorted((d.recipient, d.body) for d in (await s.scalars(select(DeliveryRow))).all())
        assert payload == {"room": "R1", "settings": {"contact": {"erased": True}, "protected": True}}
        assert recipients == [(ERASED, ""), (ERASED, ""), ("+8613900000000", "尊敬的Li Lei：余额不足")]
        assert await ledger_rows(site) == ledger_before  # the ledger is untouched
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=400)) == 0  # once
    finally:
        engine.close()
    [audit] = await AuditLog(site.db).query(action="account.personal_data_erased")
    assert audit.actor == "system:retention" and audit.target_id == str(erased.id)
    assert audit.after["room"] == "R1" and audit.after["deliveries"] == 2 and audit.after["approval_requests"] == 1
    assert "Li Lei" not in repr((audit.after, audit.reason)) and "8613800000000" not in repr(audit.after)
    # nothing of the tenant is left in the audit log's account snapshots either
    for entry in await AuditLog(site.db).query(target_type="account"):
        assert "Li Lei" not in repr((entry.before, entry.after)), entry.action
    assert closing is not None


async def test_without_a_retention_setting_nothing_is_erased(site: Site) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=0, contact=Contact("Li Lei", "+8613800000000", None, "zh-CN"))
    await site.engine.close_account("R1", actor=CASHIER, reason="moved out")
    assert site.engine.cfg.personal_data_retention_days is None
    assert await site.engine.erase_personal_data(dt.datetime.now(dt.UTC) + dt.timedelta(days=10_000)) == 0
    assert (await site.engine.account("R1")).contact.name == "Li Lei"  # type: ignore[union-attr]


async def test_customers_and_prepared_accounts_are_erased_with_their_accounts(site: Site, tmp_path: object, db_url: str) -> None:
    """The back office's customers whose accounts are all closed past the retention, and the
    prepared accounts done with (opened for such an account, or withdrawn), lose their contact
    details in the same run as the accounts; each audited without personal data."""
    await site.flat_tariff()
    prepared = PreparedAccounts(site.db, site.engine, clock=lambda: dt.datetime.now(dt.UTC), billing=True)
    await prepared.load()
    rows = "customer,contact,room,tariff\nLi Lei,+8613800000001,R1,FLAT\nHan Meimei,han@example.com,R3,FLAT\n"
    imported = await prepared.import_file(rows.encode(), "text/csv", dry_run=False, actor=CASHIER, source="t.csv")
    assert imported.errors == [] and imported.new_customers == ["Li Lei", "Han Meimei"]
    by_room = {a["room"]: a["id"] for a in imported.created}
    for room in ("R1", "R3"):
        view = await site.open(room, opening=0, contact=Contact("Tenant " + room, None, None, "zh-CN"))
        await prepared.mark_opened(by_room[room], view.id, {}, CASHIER)
    await site.engine.close_account("R1", actor=CASHIER, reason="moved out")
    closed_at = (await site.engine.account("R1")).closed_at  # type: ignore[union-attr]
    assert closed_at is not None
    async with site.db.transaction() as s:
        # a prepared account withdrawn before it was opened (nothing in the API withdraws one yet)
        s.add(PreparedAccountRow(room_id="R2", pending_room_id=None, state="withdrawn", customer="Zhang San",
                                 contact_phone="+8613800000003", language="zh-CN", mode="prepaid", tariff_id="FLAT",
                                 opening_minor=0, source="t.csv:9", created_at=closed_at, created_by="t"))
        s.add(delivery("+8613800000001", closed_at - dt.timedelta(days=1)))

    config = site_config(tmp_path, db_url, "[prepaid]\npersonal_data_retention_days = 30\n")  # type: ignore[arg-type]
    engine = PrepaidEngine(config, site.db, site.assets, site.tagdb)
    await engine.load()
    billing = BillingService(config.billing, site.db, engine, site.assets)
    billing.attach()  # as the billing component does
    remove = engine.add_retention_eraser(PreparedAccounts(site.db, engine, clock=engine.clock, billing=True).erase_personal_data)

    async def customers() -> dict[int, tuple[str, str | None, str | None]]:
        async with site.db.sessions() as s:
            return {c.id: (c.name, c.phone, c.email) for c in (await s.scalars(select(Customer))).all()}

    async def contacts() -> dict[str, tuple[str, str | None, str | None]]:
        async with site.db.sessions() as s:
            return {r.room_id: (r.customer, r.contact_phone, r.contact_email) for r in (await s.scalars(select(PreparedAccountRow))).all()}

    try:
        before = await customers()
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=29)) == 0
        assert await customers() == before
        # the account, its customer, its prepared account and the withdrawn one
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=30)) == 4
        after = await customers()
        lilei, han = sorted(after)
        assert after[lilei] == ("", None, None)
        assert after[han] == ("Han Meimei", None, "han@example.com")  # her account is open
        assert await contacts() == {"R1": ("", None, None), "R2": ("", None, None), "R3": ("Han Meimei", None, "han@example.com")}
        async with site.db.sessions() as s:
            assert [d.recipient for d in (await s.scalars(select(DeliveryRow))).all()] == [ERASED]
        assert await engine.erase_personal_data(closed_at + dt.timedelta(days=400)) == 0  # once
        # her account closes too: past the retention she goes as well
        await engine.close_account("R3", actor=CASHIER, reason="moved out")
        closed_r3 = (await engine.account("R3")).closed_at  # type: ignore[union-attr]
        assert closed_r3 is not None
        assert await engine.erase_personal_data(closed_r3 + dt.timedelta(days=30)) == 3
        assert (await customers())[han] == ("", None, None) and (await contacts())["R3"] == ("", None, None)
    finally:
        remove()
        billing.detach()
        engine.close()
    audit = AuditLog(site.db)
    erased = await audit.query(action="customer.personal_data_erased")
    assert sorted(e.target_id for e in erased) == sorted([str(lilei), str(han)])
    assert all(e.actor == "system:retention" for e in erased)
    rows_erased = await audit.query(action="prepared_account.personal_data_erased")
    assert len(rows_erased) == 3
    # the audit log is append-only: it never held the customers' contact details to begin with
    for entry in [*erased, *rows_erased, *await audit.query(target_type="customer")]:
        assert not any(x in repr((entry.before, entry.after, entry.reason)) for x in ("Li Lei", "Han", "Zhang", "86138", "example.com")), entry.after


async def test_the_audit_log_keeps_no_customer_contact_details(site: Site) -> None:
    billing = BillingService(site.config.billing, site.db, site.engine, site.assets)
    person = await billing.create_customer({"name": "Wang Wu", "kind": "person", "phone": "+8613800000009", "email": "wu@example.com",
                                            "address": "1 River Road", "tax_id": "T-99"}, CASHIER)
    await billing.update_customer(person.id, {"phone": "+8613800000010", "address": "2 Hill Road"}, CASHIER)
    company = await billing.create_customer({"name": "Acme Ltd", "kind": "company", "phone": "+8613800000011", "tax_id": "91-ACME"}, CASHIER)
    entries = await AuditLog(site.db).query(target_type="customer")
    assert sorted(e.action for e in entries) == ["customer.create", "customer.create", "customer.update"]
    text = repr([(e.before, e.after) for e in entries])
    for value in ("Wang Wu", "8613800000009", "8613800000010", "8613800000011", "wu@example.com", "River", "Hill", "T-99"):
        assert value not in text, value
    [created] = [e for e in entries if e.action == "customer.create" and e.target_id == str(person.id)]
    assert created.after["phone"] == created.after["name"] == "(not logged)" and created.after["kind"] == "person"
    [acme] = [e for e in entries if e.target_id == str(company.id)]
    assert (acme.after["name"], acme.after["tax_id"], acme.after["phone"]) == ("Acme Ltd", "91-ACME", "(not logged)")  # not personal
