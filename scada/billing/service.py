"""The back office as one object: :class:`BillingService` (``ctx[BILLING]``), what the API and
the pages talk to. It ties customers, charge rules, billing runs, bills, payments, credit
notes, statements, adjustments, dunning and arrears to the prepaid engine, and runs their
periodic work (``tick``): the period's ``from_balance`` charges, statuses, late fees, dunning."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scada.billing import adjustments, bills, dunning
from scada.billing.bills import BILLING, RunResult
from scada.billing.charges import RuleView, due_instances, parse_rule, post_instances, rule_view, true_up
from scada.billing.config import BillingConfig
from scada.billing.context import BillingContext, PendingLines
from scada.billing.customers import CustomerView, check_customer, customer_view, for_audit
from scada.billing.errors import BillingError
from scada.billing.models import AccountBilling, Bill, BillSection, ChargeRule, Customer
from scada.billing.retention import erase_customer_data
from scada.billing.statements import Statement, statement_of
from scada.core.context import Key
from scada.db import Database
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.ledger import AccountView, account_view
from scada.prepaid.models import Account
from scada.prepaid.money import MoneyError, parse_money
from scada.prepaid.tariff_definition import decimal_input
from scada.site.assets import AssetRegistry
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["BILLING_SERVICE", "BillingService"]

log = logging.getLogger(__name__)


class BillingService:
    """The back office (customers, charges, billing runs, bills, payments, dunning) over the prepaid engine."""

    def __init__(self, config: BillingConfig, db: Database, engine: PrepaidEngine, assets: AssetRegistry) -> None:
        self.ctx = BillingContext(db, engine, assets, config)
        self.db = db
        self.engine = engine
        self.cfg = config
        self.clock = utcnow  # tests drive it
        self._last_tick_day: dt.date | None = None
        self._remove_eraser: Callable[[], None] | None = None

    @property
    def minor_units(self) -> int:
        return self.ctx.minor_units

    def attach(self) -> None:
        """Take part in account closing (the part periods of a move-out) and in the engine's
        data retention (customers whose accounts all closed long ago)."""
        if self._on_close not in self.engine.accounts.close_hooks:
            self.engine.accounts.close_hooks.append(self._on_close)
        if self._remove_eraser is None:
            self._remove_eraser = self.engine.add_retention_eraser(self._erase_customers)

    def detach(self) -> None:
        """Leave account closing and data retention again."""
        if self._on_close in self.engine.accounts.close_hooks:
            self.engine.accounts.close_hooks.remove(self._on_close)
        if self._remove_eraser is not None:
            self._remove_eraser()
            self._remove_eraser = None

    async def _erase_customers(self, retention_days: int, now: dt.datetime) -> int:
        return await erase_customer_data(self.db, retention_days, now)

    def add_pending(self, source: PendingLines) -> None:
        """Let every billing run post what ``source`` keeps waiting for the bill (see
        :class:`PendingLines`)."""
        if source not in self.ctx.pending:
            self.ctx.pending.append(source)

    def remove_pending(self, source: PendingLines) -> None:
        if source in self.ctx.pending:
            self.ctx.pending.remove(source)

    def _changed(self, views: list[AccountView]) -> None:
        for v in views:
            self.engine.account_changed(v)

    # -- customers ---------------------------------------------------------------------------------
    async def create_customer(self, body: dict[str, Any], actor: Actor) -> CustomerView:
        fields = check_customer(body)
        rooms = bills.check_rooms(self.ctx, body.get("rooms") or [])
        now = self.clock()
        async with self.db.transaction() as s:
            c = Customer(created_at=now, created_by=actor.name, updated_at=now, **{"address": "", **fields})
            s.add(c)
            await s.flush()
            await self._link_rooms(s, c, rooms or [], now)
            AuditLog.record(s, actor, "customer.create", "customer", str(c.id), after={**for_audit(fields, c.kind), "rooms": rooms})
        return await self.customer(c.id)

    async def update_customer(self, customer_id: int, body: dict[str, Any], actor: Actor) -> CustomerView:
        fields = check_customer(body, partial=True)
        rooms = bills.check_rooms(self.ctx, body["rooms"]) if "rooms" in body and body["rooms"] is not None else None
        now = self.clock()
        async with self.db.transaction() as s:
            c = await s.get(Customer, customer_id)
            if c is None:
                raise BillingError(f"no customer {customer_id}", status=404)
            before = for_audit(customer_view(c).as_json(), c.kind)
            for k, v in fields.items():
                setattr(c, k, v)
            c.updated_at = now
            if rooms is not None:
                await self._link_rooms(s, c, rooms, now, replace=True)
            AuditLog.record(s, actor, "customer.update", "customer", str(c.id), before=before, after={**for_audit(fields, c.kind), "rooms": rooms})
        return await self.customer(customer_id)

    async def _link_rooms(self, s: AsyncSession, c: Customer, rooms: list[str], now: dt.datetime, *, replace: bool = False) -> None:
        if replace:
            for b in (await s.scalars(select(AccountBilling).where(AccountBilling.customer_id == c.id))).all():
                b.customer_id, b.updated_at = None, now
        for i, room in enumerate(rooms):
            a = await s.scalar(select(Account).where(Account.open_room_id == room))
            if a is None:
                raise BillingError(f"rooms[{i}]: room {room} has no open account", field=f"rooms[{i}]")
            existing = await s.get(AccountBilling, a.id)
            if existing is None:
                s.add(AccountBilling(account_id=a.id, customer_id=c.id, updated_at=now))
            else:
                existing.customer_id, existing.updated_at = c.id, now

    async def customer(self, customer_id: int) -> CustomerView:
        async with self.db.reads() as s:
            c = await s.get(Customer, customer_id)
            if c is None:
                raise BillingError(f"no customer {customer_id}", status=404)
            return await self._view(s, c)

    async def _view(self, s: AsyncSession, c: Customer) -> CustomerView:
        rows = (await s.execute(select(Account.id, Account.room_id, Account.state).join(AccountBilling, AccountBilling.account_id == Account.id)
                                .where(AccountBilling.customer_id == c.id).order_by(Account.room_id))).all()
        return customer_view(c, tuple(r[1] for r in rows if r[2] == "open"), tuple(r[0] for r in rows))

    async def customers(self) -> list[CustomerView]:
        async with self.db.reads() as s:
            return [await self._view(s, c) for c in (await s.scalars(select(Customer).order_by(Customer.name, Customer.id))).all()]

    async def account_billing(self, room: str, body: dict[str, Any], actor: Actor) -> dict[str, Any]:
        """An account's customer and its dunning / late-fee overrides (null: the configured default)."""
        now = self.clock()
        async with self.db.transaction() as s:
            a = await s.scalar(select(Account).where(Account.open_room_id == room))
            if a is None:
                if room not in self.ctx.snapshot.rooms:
                    raise BillingError(f"no room {room!r}", status=404)
                raise BillingError(f"room {room} has no open account", status=404)
            b = await s.get(AccountBilling, a.id)
            if b is None:
                b = AccountBilling(account_id=a.id, updated_at=now)
                s.add(b)
            if "customer" in body:
                cid = body["customer"]
                if cid is not None and (not isinstance(cid, int) or await s.get(Customer, cid) is None):
                    raise BillingError(f"customer: no customer {cid!r}", field="customer")
                b.customer_id = cid
            if "grace_days" in body:
                g = body["grace_days"]
                if g is not None and (not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= 365):
                    raise BillingError("grace_days: 0 to 365, or null for the default", field="grace_days")
                b.grace_days = g
            if "cut_when_overdue" in body:
                v = body["cut_when_overdue"]
                if v is not None and not isinstance(v, bool):
                    raise BillingError("cut_when_overdue: true, false or null", field="cut_when_overdue")
                b.cut_when_overdue = v
            if "late_fee_rate" in body:
                b.late_fee_rate = _rate(body["late_fee_rate"], "late_fee_rate")
            if "late_fee_cap" in body:
                cap = body["late_fee_cap"]
                b.late_fee_cap_minor = None if cap is None else _money(self.ctx, cap, "late_fee_cap")
            b.updated_at = now
            out = _billing_json(self.ctx, a, b)
            AuditLog.record(s, actor, "account.billing", "account", str(a.id), after=out)
            return out

    # -- charge rules ------------------------------------------------------------------------------
    async def create_rule(self, body: dict[str, Any], actor: Actor) -> RuleView:
        now = self.clock()
        r = parse_rule(body, self.ctx.snapshot, today=self.ctx.today(now), max_amount=self.cfg.max_amount)
        async with self.db.transaction() as s:
            row = ChargeRule(name=r.name, kind=r.kind, amount=r.amount, period=r.period, targets=r.targets, settle=r.settle,
                             tax_rate=r.tax_rate, start=r.start, end=r.end, reason=r.reason, created_at=now, created_by=actor.name)
            s.add(row)
            await s.flush()
            view = rule_view(row)
            AuditLog.record(s, actor, "charge_rule.create", "charge_rule", str(row.id), reason=r.reason, after=view.as_json())
        log.info("charge rule created", extra={"rule": view.id, "rule_name": view.name})
        return view

    async def rules(self) -> list[RuleView]:
        async with self.db.reads() as s:
            return [rule_view(r) for r in (await s.scalars(select(ChargeRule).order_by(ChargeRule.id))).all()]

    async def end_rule(self, rule_id: int, end: Any, reason: str, actor: Actor) -> RuleView:
        """The rule no longer applies from ``end`` (a date, today or later); a period charge
        already posted for days after it is credited back."""
        now = self.clock()
        today = self.ctx.today(now)
        if end is None:
            end = today
        if not isinstance(end, dt.date):
            raise BillingError("end: expected a date YYYY-MM-DD", field="end")
        if end < today:
            raise BillingError(f"end: {end.isoformat()} is in the past; a rule ends today or later", field="end")
        changed: list[AccountView] = []
        async with self.db.transaction() as s:
            row = await s.scalar(select(ChargeRule).where(ChargeRule.id == rule_id).with_for_update())
            if row is None:
                raise BillingError(f"no charge rule {rule_id}", status=404)
            if row.end is not None and row.end <= end:
                raise BillingError(f"end: the rule already ends on {row.end.isoformat()}", status=409, field="end")
            if end < row.start:
                end = row.start
            before = rule_view(row).as_json()
            row.end, row.ended_at, row.ended_by = end, now, actor.name
            view = rule_view(row)
            snap = self.ctx.snapshot
            for a in (await s.scalars(select(Account).where(Account.state == "open").order_by(Account.id).with_for_update())).all():
                room = snap.rooms.get(a.room_id)
                if room is None or not view.applies_to(room) or end <= max(view.start, self.ctx.local_date(a.opened_at)):
                    continue
                e = await true_up(s, a, view, room, end, end, actor, now, minor_units=self.minor_units, rounding=self.ctx.rounding,
                                  account_start=self.ctx.local_date(a.opened_at))
                if e is not None:
                    changed.append(account_view(a))
            AuditLog.record(s, actor, "charge_rule.end", "charge_rule", str(rule_id), reason=reason, before=before, after=view.as_json())
        self._changed(changed)
        return view

    async def post_period_charges(self, now: dt.datetime | None = None) -> int:
        """Post every ``from_balance`` charge due by today (on its period's first day, or the
        account's first day in it); idempotent."""
        now = now or self.clock()
        today = self.ctx.today(now)
        snap = self.ctx.snapshot
        posted = 0
        changed: list[AccountView] = []
        async with self.db.transaction() as s:
            rules = [rule_view(r) for r in (await s.scalars(select(ChargeRule).where(ChargeRule.settle == "from_balance"))).all()]
            rules = [r for r in rules if r.start <= today and (r.end is None or r.end > today - dt.timedelta(days=400))]
            if not rules:
                return 0
            for a in (await s.scalars(select(Account).where(Account.state == "open").order_by(Account.id).with_for_update())).all():
                room = snap.rooms.get(a.room_id)
                if room is None:
                    continue
                acc_start = self.ctx.local_date(a.opened_at)
                first = max(acc_start, today - dt.timedelta(days=400))
                instances = [i for r in rules for i in due_instances(r, room, acc_start, None, first, today,
                                                                     minor_units=self.minor_units, rounding=self.ctx.rounding)]
                new = await post_instances(s, a, instances, BILLING, now)
                if new:
                    posted += len(new)
                    self.engine.biller.update_level(a, credited=False)
                    changed.append(account_view(a))
        self._changed(changed)
        if posted:
            log.info("period charges posted", extra={"entries": posted})
        return posted

    async def _on_close(self, s: AsyncSession, a: Account, now: dt.datetime, actor: Actor) -> None:
        """A move-out: every charge due up to today is posted for the days held, and a period
        charge posted for days after today is credited back (before the balance is settled)."""
        room = self.ctx.snapshot.rooms.get(a.room_id)
        if room is None:
            return
        today = self.ctx.today(now)
        acc_start = self.ctx.local_date(a.opened_at)
        rules = [rule_view(r) for r in (await s.scalars(select(ChargeRule).order_by(ChargeRule.id))).all()]
        first = max(acc_start, today - dt.timedelta(days=400))
        instances = [i for r in rules for i in due_instances(r, room, acc_start, today, first, today,
                                                             minor_units=self.minor_units, rounding=self.ctx.rounding)]
        await post_instances(s, a, instances, actor, now)
        for r in rules:
            if r.period != "once" and r.start < today and (r.end is None or r.end > today):
                await true_up(s, a, r, room, today, today, actor, now, minor_units=self.minor_units, rounding=self.ctx.rounding,
                              account_start=acc_start)

    # -- runs, bills, payments, credit notes ---------------------------------------------------------
    async def run(self, period: str, rooms: Any = None, *, preview: bool = False, actor: Actor) -> RunResult:
        return await bills.run_period(self.ctx, period, rooms, preview=preview, actor=actor, now=self.clock())

    async def bills(self, *, room: str | None = None, customer: int | None = None, period: str | None = None,
                    status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        async with self.db.reads() as s:
            q = select(Bill).order_by(Bill.id.desc()).limit(limit)
            if room is not None:
                q = q.where(Bill.id.in_(select(BillSection.bill_id).where(BillSection.room_id == room)))
            if customer is not None:
                q = q.where(Bill.customer_id == customer)
            if period is not None:
                q = q.where(Bill.period == period)
            if status is not None:
                q = q.where(Bill.status == status)
            out = []
            for b in (await s.scalars(q)).all():
                out.append(await bills.load_bill_json(self.ctx, s, b.id))
            return out

    async def bill(self, bill_id: int) -> dict[str, Any]:
        async with self.db.reads() as s:
            return await bills.load_bill_json(self.ctx, s, bill_id)

    async def pay(self, bill_id: int, amount_minor: int, *, reference: str, channel: str, actor: Actor) -> tuple[dict[str, Any], bool]:
        bill, replayed, posted = await bills.pay_bill(self.ctx, bill_id, amount_minor, reference=reference, channel=channel, actor=actor,
                                                      now=self.clock())
        self._changed([p.account for p in posted])
        if not replayed:
            await self.dunning()
        for p in posted:  # after the commit: the tenant's payment message, where one is sent
            self.engine.payment_posted(p.account.room_id, p)
        return bill, replayed

    async def credit_note(self, bill_id: int, amount_minor: int, reason: str, actor: Actor) -> dict[str, Any]:
        return await bills.create_credit_note(self.ctx, bill_id, amount_minor, reason, actor=actor, now=self.clock())

    async def approve_credit_note(self, note_id: int, actor: Actor, reason: str = "") -> dict[str, Any]:
        note, views = await bills.approve_credit_note(self.ctx, note_id, actor=actor, reason=reason, now=self.clock())
        self._changed(views)
        await self.dunning()
        return note

    async def reject_credit_note(self, note_id: int, actor: Actor, reason: str) -> dict[str, Any]:
        return await bills.reject_credit_note(self.ctx, note_id, actor=actor, reason=reason, now=self.clock())

    # -- statements --------------------------------------------------------------------------------
    async def statement(self, room: str, start: dt.datetime, end: dt.datetime) -> Statement:
        if end <= start:
            raise BillingError("to: must be after from", field="to")
        async with self.db.reads() as s:
            a = await s.scalar(select(Account).where(Account.room_id == room)
                               .order_by((Account.state == "open").desc(), Account.id.desc()).limit(1))
            if a is None:
                if room not in self.ctx.snapshot.rooms:
                    raise BillingError(f"no room {room!r}", status=404)
                raise BillingError(f"room {room} has no account", status=404)
            return await statement_of(s, a.id, a.room_id, start, end, self.minor_units, self.ctx.commodity_of)

    async def statement_of_account(self, account_id: int, start: dt.datetime, end: dt.datetime) -> Statement:
        if end <= start:
            raise BillingError("to: must be after from", field="to")
        async with self.db.reads() as s:
            a = await s.get(Account, account_id)
            if a is None:
                raise BillingError(f"no account {account_id}", status=404)
            return await statement_of(s, a.id, a.room_id, start, end, self.minor_units, self.ctx.commodity_of)

    async def document_language(self, account_id: int) -> str:
        """The language of an account's printed documents: its customer's where it has one
        (contact details and language live on the customer, as for its bills), else the
        language of the account's contact."""
        async with self.db.reads() as s:
            a = await s.get(Account, account_id)
            if a is None:
                raise BillingError(f"no account {account_id}", status=404)
            b = await s.get(AccountBilling, account_id)
            c = await s.get(Customer, b.customer_id) if b is not None and b.customer_id is not None else None
            return c.language if c is not None else a.language

    # -- adjustments -------------------------------------------------------------------------------
    async def draft_adjustment(self, *, tariff: str, version: int, start: Any, end: Any, rooms: Any, apply: str, reason: str,
                               actor: Actor) -> dict[str, Any]:
        return await adjustments.draft_adjustment(self.ctx, tariff=tariff, version=version, start=start, end=end, rooms=rooms,
                                                  apply=apply, reason=reason, actor=actor, now=self.clock())

    async def adjustment(self, adj_id: int) -> dict[str, Any]:
        return await adjustments.get_adjustment(self.ctx, adj_id)

    async def adjustments(self, state: str | None = None) -> list[dict[str, Any]]:
        return await adjustments.list_adjustments(self.ctx, state)

    async def approve_adjustment(self, adj_id: int, actor: Actor, reason: str = "") -> dict[str, Any]:
        out, _views = await adjustments.approve_adjustment(self.ctx, adj_id, actor=actor, reason=reason, now=self.clock())
        return out

    async def reject_adjustment(self, adj_id: int, actor: Actor, reason: str) -> dict[str, Any]:
        return await adjustments.reject_adjustment(self.ctx, adj_id, actor=actor, reason=reason, now=self.clock())

    # -- dunning, arrears, ticks ----------------------------------------------------------------------
    async def dunning(self, now: dt.datetime | None = None) -> dunning.DunningResult:
        now = now or self.clock()
        result = await dunning.dunning_pass(self.ctx, now)
        self._changed(result.changed)
        for account_id, (level, cut) in result.levels.items():
            await self.engine.set_dunning(account_id, level, cut, actor=BILLING, reason="overdue bills" if level else "no overdue bill")
        if result.late_fees:
            log.info("late fees posted", extra={"entries": result.late_fees})
        return result

    async def arrears(self) -> dict[str, Any]:
        return await dunning.arrears(self.ctx, self.clock())

    async def tick(self, now: dt.datetime | None = None) -> None:
        """Periodic work, once a local day (and at start): the period charges that fall due,
        bill statuses, late fees and dunning. Payments refresh the dunning at once; while an
        account is in dunning it is looked at every tick (a recharge may have settled it)."""
        now = now or self.clock()
        today = self.ctx.today(now)
        if today != self._last_tick_day:
            await self.post_period_charges(now)
            await self.dunning(now)
            self._last_tick_day = today
        elif any(v.open and v.postpaid and v.dunning_level for v in self.engine.views.values()):
            await self.dunning(now)


def _rate(value: Any, field: str) -> Decimal | None:
    if value is None:
        return None
    try:
        d = decimal_input(value, decimals=8, what="rate")
    except ValueError as exc:
        raise BillingError(f"{field}: {exc}", field=field) from None
    if d > 1:
        raise BillingError(f"{field}: a fraction per day (0.001 = 1 ‰), found {format(d, 'f')}", field=field)
    return d


def _money(ctx: BillingContext, value: Any, field: str) -> int:
    try:
        return parse_money(value, field, ctx.minor_units, allow_zero=True, maximum=ctx.cfg.max_amount)
    except MoneyError as exc:
        raise BillingError(str(exc), field=exc.field) from None


def _billing_json(ctx: BillingContext, a: Account, b: AccountBilling) -> dict[str, Any]:
    return {
        "account": a.id, "room": a.room_id, "mode": a.mode, "customer": b.customer_id, "grace_days": b.grace_days,
        "cut_when_overdue": b.cut_when_overdue,
        "late_fee_rate": format(b.late_fee_rate, "f") if b.late_fee_rate is not None else None,
        "late_fee_cap": ctx.fmt(b.late_fee_cap_minor) if b.late_fee_cap_minor is not None else None,
    }


BILLING_SERVICE: Key[BillingService] = Key("billing", BillingService)
