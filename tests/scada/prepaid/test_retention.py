"""Data retention on SQLite and PostgreSQL: a closed account's tenant contact details are erased
after the configured days, with their traces in approval requests and the notification log;
audited; the ledger untouched; open accounts and recent closings untouched."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from scada.alarms.notify.models import DeliveryRow
from scada.approvals.models import ApprovalRequest
from scada.approvals.service import ApprovalService
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
