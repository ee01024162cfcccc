"""The four-eyes rule of the prepaid engine on SQLite and PostgreSQL: each operation that
creates value waits for another user's approval, then runs once with both users recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, update

from scada.approvals.config import ApprovalsConfig
from scada.approvals.models import ApprovalRequest
from scada.approvals.service import ApprovalError, ApprovalService, ApprovalView
from scada.prepaid.accounts import AccountSettings, OpenRequest
from scada.prepaid.approvals import ApprovalRule, PrepaidApprovals
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import Contact
from scada.prepaid.models import LedgerEntry
from scada.users.audit import AuditLog
from scada.users.auth import Role, UserInfo

from .conftest import CASHIER, T0, Site

CASHIER_USER = UserInfo(1, "cashier1", Role.CASHIER, True, "en", None)
SUPERVISOR = UserInfo(2, "super1", Role.SUPERVISOR, True, "en", None)


@pytest.fixture
async def gate(site: Site) -> AsyncIterator[PrepaidApprovals]:
    service = ApprovalService(site.db, expire_after=dt.timedelta(hours=24))
    g = PrepaidApprovals(site.engine, service, ApprovalRule.from_config(ApprovalsConfig(), 2))
    try:
        yield g
    finally:
        g.close()


async def balance(site: Site, room: str = "R1") -> int:
    view = await site.engine.account(room)
    assert view is not None
    return view.balance_minor


async def entries(site: Site) -> int:
    async with site.db.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


async def four_eyes(gate: PrepaidApprovals, pending: object) -> ApprovalView:
    """The requester may not approve; the supervisor does. Returns the executed request."""
    assert isinstance(pending, ApprovalView) and pending.state == "pending", pending
    with pytest.raises(ApprovalError) as err:
        await gate.service.approve(pending.id, CASHIER_USER, source="api")
    assert err.value.status == 403
    done = await gate.service.approve(pending.id, SUPERVISOR, source="api", reason="receipt seen")
    assert done.state == "executed", done.result
    return done


async def run_again(site: Site, gate: PrepaidApprovals, view: ApprovalView) -> None:
    """As if the server had stopped between the approval and the end of the action: the request
    is run again at the next start, and must not act twice."""
    async with site.db.transaction() as s:
        await s.execute(update(ApprovalRequest).where(ApprovalRequest.id == view.id).values(state="approved"))
    assert await gate.service.resume(gate.kinds) == 1
    again = await gate.service.get(view.id)
    assert again is not None and again.state == "executed", again


async def test_refunds_within_the_limit_go_at_once_above_it_wait(site: Site, gate: PrepaidApprovals) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=200_000)
    small = await gate.refund("R1", 50_000, actor=CASHIER, reason="overpaid")
    assert not isinstance(small, ApprovalView) and small.account.balance_minor == 150_000
    with pytest.raises(PrepaidError, match="more than the balance"):
        await gate.refund("R1", 150_001, actor=CASHIER, reason="too much")  # refused at once: no request
    big = await gate.refund("R1", 60_000, actor=CASHIER, reason="tenant leaves")
    assert isinstance(big, ApprovalView) and big.rule == ["refund 600.00 above 500.00"] and big.kind == "account.refund"
    assert await balance(site) == 150_000  # nothing moved
    count = await entries(site)
    done = await four_eyes(gate, big)
    assert await balance(site) == 90_000 and await entries(site) == count + 1
    async with site.db.sessions() as s:
        entry = (await s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "refund").order_by(LedgerEntry.id.desc()))).first()
    assert entry is not None and entry.amount_minor == -60_000 and entry.actor == "cashier1"
    assert entry.reference == f"approval-{done.id}"
    assert f"[approval #{done.id}: requested by cashier1, approved by super1]" in entry.reason and entry.reason.startswith("tenant leaves")
    await run_again(site, gate, done)
    assert await balance(site) == 90_000 and await entries(site) == count + 1
    refund_audit = (await AuditLog(site.db).query(action="account.refund"))[0]
    assert refund_audit.actor == "cashier1" and "approved by super1" in refund_audit.reason


async def test_reversals_that_credit_wait_the_others_go_at_once(site: Site, gate: PrepaidApprovals) -> None:
    await site.flat_tariff(price="1")
    await site.open("R1", opening=10_000)
    await site.feed("E1", [(T0, "100"), (T0 + dt.timedelta(hours=1), "110")])  # a 10.00 deduction
    recharge = await site.engine.recharge("R1", 5_000, channel="cash", reference="R-1", actor=CASHIER)
    _, ledger = await site.engine.ledger("R1")
    deduction = next(e for e in ledger if e.kind == "deduction")
    assert await balance(site) == 14_000
    # reversing the recharge takes money away: the cashier corrects it alone
    undone = await gate.reverse(recharge.entry.id, actor=CASHIER, reason="wrong room")
    assert not isinstance(undone, ApprovalView) and undone.account.balance_minor == 9_000
    pending = await gate.reverse(deduction.id, actor=CASHIER, reason="meter misread")
    assert isinstance(pending, ApprovalView) and pending.kind == "ledger.reverse" and pending.target == f"ledger:{deduction.id}"
    assert pending.rule == ["a reversal of a deduction credits 10.00"]
    assert await balance(site) == 9_000
    with pytest.raises(PrepaidError, match="cannot be reversed"):
        await gate.reverse(undone.entry.id, actor=CASHIER, reason="undo the undo")
    count = await entries(site)
    done = await four_eyes(gate, pending)
    assert await balance(site) == 10_000 and await entries(site) == count + 1
    await run_again(site, gate, done)
    assert await balance(site) == 10_000 and await entries(site) == count + 1
    _, ledger = await site.engine.ledger("R1")
    assert ledger[0].kind == "reversal" and ledger[0].reverses_id == deduction.id and "approved by super1" in ledger[0].reason


async def test_opening_with_a_balance_waits(site: Site, gate: PrepaidApprovals) -> None:
    await site.flat_tariff()
    defaults = site.engine.defaults()

    def request(room: str, opening: int) -> OpenRequest:
        return OpenRequest(room, defaults, electricity_tariff_id="FLAT", opening_minor=opening, reason="new tenant")

    opened = await gate.open_account(request("R3", 0), AccountSettings(), CASHIER)
    assert not isinstance(opened, ApprovalView) and opened.balance_minor == 0
    pending = await gate.open_account(request("R1", 100_000_000), AccountSettings(), CASHIER)
    assert isinstance(pending, ApprovalView) and pending.rule == ["opening balance 1000000.00 above 0.00"]
    assert await site.engine.account("R1") is None
    with pytest.raises(PrepaidError, match="tariffs.water"):  # what the opening would refuse is refused at once
        await gate.open_account(request("R2", 100), AccountSettings(), CASHIER)
    done = await four_eyes(gate, pending)
    assert await balance(site) == 100_000_000
    _, ledger = await site.engine.ledger("R1")
    assert [(e.kind, e.actor, e.reference) for e in ledger] == [("opening", "cashier1", f"approval-{done.id}")]
    await run_again(site, gate, done)
    _, ledger = await site.engine.ledger("R1")
    assert len(ledger) == 1 and await balance(site) == 100_000_000


async def test_credit_limit_emergency_credit_and_protection_wait(site: Site, gate: PrepaidApprovals) -> None:
    await site.flat_tariff()
    await site.open("R1", opening=0)
    contact = Contact("Li Lei", "+8613800000000", None, "zh-CN")
    plain = await gate.update_settings("R1", AccountSettings(contact=contact, friendly_credit=False), actor=CASHIER)
    assert not isinstance(plain, ApprovalView) and plain.contact == contact
    for settings, rule in (
        (AccountSettings(credit_limit_minor=100_000_000), "credit limit 1000000.00 above 0.00"),
        (AccountSettings(emergency_credit_minor=100_000_000), "emergency credit 1000000.00 above 0.00"),
        (AccountSettings(protected=True), "protection (never cut off)"),
    ):
        pending = await gate.update_settings("R1", settings, actor=CASHIER, reason="asked for")
        assert isinstance(pending, ApprovalView) and pending.rule == [rule], pending
    view = await site.engine.account("R1")
    assert view is not None and view.credit_limit_minor == 0 and view.emergency_credit_minor == 0 and not view.protected
    for pending in await gate.service.list(state="pending"):
        await four_eyes(gate, pending)
    view = await site.engine.account("R1")
    assert view is not None and view.credit_limit_minor == 100_000_000 and view.emergency_credit_minor == 100_000_000
    assert view.protected and view.contact == contact  # the approved change left the rest alone
    # lowering a limit, or the same value again, needs nobody else
    lowered = await gate.update_settings("R1", AccountSettings(credit_limit_minor=5_000, protected=True), actor=CASHIER)
    assert not isinstance(lowered, ApprovalView) and lowered.credit_limit_minor == 5_000
    executed = await AuditLog(site.db).query(action="approval.execute")
    assert len(executed) == 3 and all(e.after["requested_by"] == "cashier1" and e.after["approved_by"] == "super1" for e in executed)
