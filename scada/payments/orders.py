"""Orders of online payment: create, notify, credit exactly once, expire, refund, recover.

States: ``created`` → ``paid`` → ``credited``, or ``expired`` (not paid in time), ``failed``
(declined), ``refunded`` (given back: by an operator, or a late payment when
``payments.late_payment = "refund"``, or one whose account closed before it could be credited).

- **Notifications** (:meth:`PaymentService.notify`): the provider authenticates the signature and
  the replay window; here a nonce seen before (409), an unknown order (404) and an amount or a
  currency other than the order's (422) are refused. A refusal writes nothing and is logged.
  ``paid`` is committed with the notification's nonce in one transaction.
- **Crediting** (:meth:`PaymentService.credit`): a recharge of the order's account with channel =
  provider and reference = the provider's transaction id; the order's ``credited`` state is
  written inside the recharge's transaction. The ledger's unique ``recharge:<provider>:<id>``
  makes a second credit of one payment impossible, so duplicates, concurrent notifications and a
  crash between ``paid`` and ``credited`` (the recovery at start credits what is left ``paid``)
  all credit once.
- **Late payments**: an order paid after it had expired is credited or refunded
  (``payments.late_payment``), never dropped.
- **Refunds** by an operator follow the cash refund's four-eyes rule (``approvals.refund_above``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scada.approvals.service import ApprovalService, ApprovalView
from scada.core.faults import crash_point
from scada.db import Database
from scada.payments.config import PaymentsConfig
from scada.payments.errors import PaymentError
from scada.payments.models import PaymentNonce, PaymentOrder
from scada.payments.provider import Notification, OrderRequest, PaymentProvider
from scada.prepaid.accounts import PostResult, RechargeItem
from scada.prepaid.engine import PrepaidEngine
from scada.prepaid.errors import PrepaidError
from scada.prepaid.money import format_minor, parse_money
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["KIND_REFUND", "OrderView", "PaymentService", "order_no", "parse_order_no"]

log = logging.getLogger(__name__)

KIND_REFUND = "payments.refund"
ORDERS = cast(Table, PaymentOrder.__table__)  # Core, for the executemany of a batch; __table__ is typed FromClause
_ORDER_NO = re.compile(r"P([0-9]{1,18})", re.ASCII)

# called after an order was credited (not for a replay): (the order, the recharge's result)
CreditedListener = Callable[["OrderView", PostResult], None]
RefundRule = Callable[[int], list[str]]




def order_no(order_id: int) -> str:
    """Our order number as providers see it ("out_trade_no")."""
    return f"P{order_id}"


def parse_order_no(text: str) -> int | None:
    m = _ORDER_NO.fullmatch(text)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class OrderView:
    id: int
    provider: str
    account_id: int
    room_id: str
    amount_minor: int
    currency: str
    state: str
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    pay_url: str
    return_url: str
    transaction_id: str | None
    paid_at: dt.datetime | None
    late: bool
    credited_at: dt.datetime | None
    entry_id: int | None
    refunded_at: dt.datetime | None
    refund_entry_id: int | None
    detail: str

    @property
    def order_no(self) -> str:
        return order_no(self.id)

    def as_json(self, minor_units: int) -> dict[str, Any]:
        return {
            "id": self.id, "order_no": self.order_no, "state": self.state, "pay_url": self.pay_url, "qr_payload": self.pay_url,
            "provider": self.provider, "room": self.room_id, "account": self.account_id,
            "amount": format_minor(self.amount_minor, minor_units), "currency": self.currency,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by, "expires_at": self.expires_at.isoformat(),
            "transaction_id": self.transaction_id, "paid_at": self.paid_at.isoformat() if self.paid_at else None, "late": self.late,
            "credited_at": self.credited_at.isoformat() if self.credited_at else None, "entry": self.entry_id,
            "refunded_at": self.refunded_at.isoformat() if self.refunded_at else None, "refund_entry": self.refund_entry_id,
            "detail": self.detail,
        }


def _view(o: PaymentOrder, now: dt.datetime | None = None) -> OrderView:
    state = o.state
    if state == "created" and now is not None and o.expires_at <= now:
        state = "expired"  # read before the sweep wrote it
    return OrderView(o.id, o.provider, o.account_id, o.room_id, o.amount_minor, o.currency, state, o.created_at, o.created_by,
                     o.expires_at, o.pay_url, o.return_url, o.transaction_id, o.paid_at, o.late, o.credited_at, o.entry_id,
                     o.refunded_at, o.refund_entry_id, o.detail)


# a notification waiting for the next batch: (provider, the verified notification, its answer:
# (the order as accepted, whether it changed, the order after crediting) or the refusal)
_Pending = tuple[str, Notification, asyncio.Future[tuple[OrderView, bool, OrderView]]]


class PaymentService:
    """Orders, notifications, crediting and refunds of online payment (see the module docstring)."""

    def __init__(
        self,
        config: PaymentsConfig,
        db: Database,
        engine: PrepaidEngine,
        providers: Mapping[str, PaymentProvider],
        *,
        site_name: str = "",
        refund_rule: RefundRule = lambda _minor: [],
        approvals: ApprovalService | None = None,
        spawn: Callable[[Callable[[], Awaitable[Any]], str], Any] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.db = db
        self.engine = engine
        self.providers = dict(providers)
        self.site_name = site_name
        self.refund_rule = refund_rule
        self.approvals = approvals
        self.spawn = spawn
        self.clock = clock
        self.minor_units = engine.minor_units
        self.currency = engine.currency
        self.min_minor = parse_money(config.min_amount, "payments.min_amount", self.minor_units)
        self.max_minor = parse_money(config.max_amount, "payments.max_amount", self.minor_units)
        self._bound_url = ""
        # SQLite takes one writer at a time: queued here, concurrent notifications wait their turn in
        # order instead of in the database's busy handler (whose sleeps grow to 100 ms)
        self._writes = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._turn: asyncio.Future[None] | None = None  # while a batch runs: answered when it is done
        self.credited_listeners: list[CreditedListener] = []
        self.refused = 0  # notifications refused since start
        self._unregister: Callable[[], None] | None = None
        if approvals is not None:
            self._unregister = approvals.register(KIND_REFUND, self._run_approved_refund)

    def close(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    # -- where providers and browsers reach us -------------------------------------------------------
    def bind_url(self, url: str) -> None:
        """The HMI's URL, used when ``payments.public_url`` is not set."""
        self._bound_url = url.rstrip("/")

    @property
    def public_url(self) -> str:
        url = self.config.public_url or self._bound_url
        if not url:
            raise PaymentError("payments: no public URL (set payments.public_url, or run the HMI)", status=503)
        return url

    def fmt(self, minor: int) -> str:
        return format_minor(minor, self.minor_units)

    def provider(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            offered = ", ".join(self.providers) or "none"
            raise PaymentError(f"provider: unknown provider {name[:32]!r} (offered: {offered})", status=422, field="provider")
        return provider

    # -- orders --------------------------------------------------------------------------------------
    async def create_order(
        self, room_id: str, amount_minor: int, provider_name: str, *, actor: Actor, created_by: str, return_path: str,
        account_id: int | None = None,
    ) -> OrderView:
        """A new order for the room's open account (``account_id``: only if it is that account)."""
        provider = self.provider(provider_name)
        if not self.min_minor <= amount_minor <= self.max_minor:
            raise PaymentError(f"amount: from {self.fmt(self.min_minor)} to {self.fmt(self.max_minor)}, found {self.fmt(amount_minor)}",
                               status=422, field="amount")
        account = await self.engine.account(room_id)
        if account is None or not account.open or (account_id is not None and account.id != account_id):
            raise PaymentError(f"room {room_id} has no open account", status=404, field="room")
        base = self.public_url
        now = self.clock()
        async with self.db.transaction() as s:
            row = PaymentOrder(
                provider=provider.name, account_id=account.id, room_id=room_id, amount_minor=amount_minor, currency=self.currency,
                state="created", created_at=now, created_by=created_by[:64], expires_at=now + dt.timedelta(seconds=self.config.order_ttl_s),
                return_url=return_path, provider_order_id=None, pay_url="", transaction_id=None, paid_at=None, late=False,
                credited_at=None, entry_id=None, refunded_at=None, refund_entry_id=None, refund_id=None, detail="", updated_at=now,
            )
            s.add(row)
            await s.flush()
            order_id = row.id
            AuditLog.record(s, actor, "payment.order", "payment", str(order_id),
                            after={"room": room_id, "account": account.id, "amount": self.fmt(amount_minor), "provider": provider.name})
        req = OrderRequest(
            order_no(order_id), amount_minor, self.currency, self.minor_units, f"{self.site_name} {room_id}".strip(),
            notify_url=f"{base}/api/v1/payments/notify/{provider.name}", return_url=base + return_path,
            expires_at=now + dt.timedelta(seconds=self.config.order_ttl_s),
        )
        try:
            target = await provider.create_order(req)
        except Exception as exc:
            message = exc.message if isinstance(exc, PaymentError) else repr(exc)
            await self._set(order_id, state="failed", detail=f"the provider refused the order: {message}"[:500])
            log.warning("payment order refused by the provider", extra={"order": order_id, "provider": provider.name, "error": message})
            raise PaymentError(f"the payment provider refused the order: {message}", status=502) from None
        view = await self._set(order_id, provider_order_id=target.provider_order_id, pay_url=target.pay_url)
        log.info("payment order created", extra={"order": order_id, "room": room_id, "account": account.id, "provider": provider.name,
                                                  "amount": self.fmt(amount_minor)})
        return view

    async def _set(self, order_id: int, **values: Any) -> OrderView:
        async with self.db.transaction() as s:
            row = await s.get(PaymentOrder, order_id, with_for_update=True)
            assert row is not None
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = self.clock()
            return _view(row)

    async def order(self, order_id: int) -> OrderView | None:
        async with self.db.reads() as s:
            row = await s.get(PaymentOrder, order_id)
            return _view(row, self.clock()) if row is not None else None

    async def orders(self, *, account_ids: list[int] | None = None, state: str | None = None, limit: int = 100) -> list[OrderView]:
        stmt = select(PaymentOrder).order_by(PaymentOrder.id.desc()).limit(limit)
        if account_ids is not None:
            stmt = stmt.where(PaymentOrder.account_id.in_(account_ids))
        if state is not None:
            stmt = stmt.where(PaymentOrder.state == state)
        now = self.clock()
        async with self.db.reads() as s:
            return [_view(r, now) for r in (await s.scalars(stmt)).all()]

    # -- notifications -------------------------------------------------------------------------------
    async def notify(self, provider_name: str, headers: Mapping[str, str], body: bytes, *, address: str = "?") -> OrderView:
        """Take one notification; a refusal raises :class:`PaymentError` (and is logged), having
        written nothing. Answers once the order's state, and its crediting, are committed."""
        try:
            provider = self.providers.get(provider_name)
            if provider is None:
                raise PaymentError(f"no payment provider {provider_name[:32]!r}", status=404, reason="unknown_provider")
            n = provider.verify_notification(headers, body, self.clock())
            done: asyncio.Future[tuple[OrderView, bool, OrderView]] = asyncio.get_running_loop().create_future()
            self._pending.append((provider.name, n, done))
            await self._run_batches(done)
            accepted, changed, view = await done
        except PaymentError as exc:
            self.refused += 1
            log.warning("payment notification refused", extra={"provider": provider_name[:32], "reason": exc.reason or "refused",
                                                                "status": exc.status, "error": exc.message, "address": address})
            raise
        if changed:
            log.info("payment notification", extra={"order": accepted.id, "provider": accepted.provider, "state": accepted.state,
                                                    "transaction": accepted.transaction_id})
        return view

    async def _run_batches(self, done: asyncio.Future[Any]) -> None:
        """Group commit: while one caller runs a batch, the notifications arriving wait; when it is
        done, one of them runs the next batch with every notification waiting (its own among them):
        it accepts them in one transaction and credits them in a second one. Two commits per batch
        instead of two per notification is what lets a burst of notifications through on SQLite.
        Returns when ``done`` is answered."""
        while not done.done():
            if self._turn is not None:  # a batch is running: wait for the answer, or for the next turn
                await asyncio.wait([done, self._turn], return_when=asyncio.FIRST_COMPLETED)
                continue
            turn = self._turn = asyncio.get_running_loop().create_future()
            try:
                async with self._writes:
                    batch, self._pending = self._pending, []
                    await self._batch_answered(batch)
            finally:
                self._turn = None
                turn.set_result(None)

    async def _batch_answered(self, batch: list[_Pending]) -> None:
        """:meth:`_batch`, with every notification of the batch answered whatever happens."""
        try:
            await self._batch(batch)
        except BaseException as exc:
            # not answered (a database error, or cancelled): the provider retries, the recovery credits what was paid
            for *_, done in batch:
                if not done.done():
                    done.set_exception(exc if isinstance(exc, Exception) else
                                       PaymentError("the notification was not processed; send it again", status=503, reason="aborted"))
            if not isinstance(exc, Exception):
                raise
            log.exception("a batch of payment notifications failed", extra={"notifications": len(batch)})

    async def _batch(self, batch: list[_Pending]) -> None:
        try:
            accepted = await self._accept_many([(provider, n) for provider, n, _ in batch])
        except IntegrityError:
            # a transaction id another order holds, committed concurrently: one at a time, so that only that one is refused
            accepted = []
            for provider, n, _ in batch:
                try:
                    accepted.append(await self._accept(provider, n))
                except PaymentError as exc:
                    accepted.append(exc)
        paid = {r[0].id: r[0] for r in accepted if not isinstance(r, PaymentError) and r[0].state == "paid"}
        if paid:
            crash_point("payments.after_paid")
        credited = await self._credit_many(list(paid.values()))
        for (*_, done), r in zip(batch, accepted, strict=True):
            if isinstance(r, PaymentError):
                done.set_exception(r)
            else:
                done.set_result((r[0], r[1], credited.get(r[0].id, r[0])))

    async def _accept_many(self, items: list[tuple[str, Notification]]) -> list[tuple[OrderView, bool] | PaymentError]:
        """Each notification checked and applied as :meth:`_accept` does, all in one transaction:
        a refused one writes nothing, the others commit together."""
        now = self.clock()
        ids = {i for i in (parse_order_no(n.order_no) for _, n in items) if i is not None}
        out: list[tuple[OrderView, bool] | PaymentError] = []
        async with self.db.transaction() as s:
            rows = {r.id: r for r in (await s.scalars(select(PaymentOrder).where(PaymentOrder.id.in_(ids)).with_for_update())).all()}
            seen: set[tuple[str, str]] = set()
            for provider in {p for p, _ in items}:
                nonces = [n.nonce for p, n in items if p == provider]
                seen.update((provider, x) for x in (await s.scalars(select(PaymentNonce.nonce).where(
                    PaymentNonce.provider == provider, PaymentNonce.nonce.in_(nonces)))).all())
            paid_by = {(r.provider, r.transaction_id): r.id for r in rows.values() if r.transaction_id is not None}
            for provider, n in items:
                try:
                    order_id = parse_order_no(n.order_no)
                    row = rows.get(order_id) if order_id is not None else None
                    self._check(provider, n, row)
                    assert row is not None
                    if (provider, n.nonce) in seen:
                        raise PaymentError(f"nonce {n.nonce[:16]}… was used before: a replayed notification", status=409, reason="replayed")
                    if n.status == "paid" and paid_by.get((provider, n.transaction_id), row.id) != row.id:
                        raise PaymentError("a replayed notification (nonce or transaction used before)", status=409, reason="replayed")
                    changed = self._apply(row, n, now)
                except PaymentError as exc:
                    out.append(exc)
                    continue
                seen.add((provider, n.nonce))
                s.add(PaymentNonce(provider=provider, nonce=n.nonce, seen_at=now))
                if row.transaction_id is not None:
                    paid_by[(provider, row.transaction_id)] = row.id
                out.append((_view(row), changed))
            await s.flush()
        return out

    async def _accept(self, provider: str, n: Notification) -> tuple[OrderView, bool]:
        order_id = parse_order_no(n.order_no)
        now = self.clock()
        try:
            async with self.db.transaction() as s:
                row = await s.get(PaymentOrder, order_id, with_for_update=True) if order_id is not None else None
                self._check(provider, n, row)
                assert row is not None
                if await s.get(PaymentNonce, (provider, n.nonce)) is not None:
                    raise PaymentError(f"nonce {n.nonce[:16]}… was used before: a replayed notification", status=409, reason="replayed")
                s.add(PaymentNonce(provider=provider, nonce=n.nonce, seen_at=now))
                changed = self._apply(row, n, now)
                await s.flush()
                return _view(row), changed
        except IntegrityError:
            # the same nonce committed concurrently (or the transaction id belongs to another order)
            raise PaymentError("a replayed notification (nonce or transaction used before)", status=409, reason="replayed") from None

    def _check(self, provider: str, n: Notification, row: PaymentOrder | None) -> None:
        if row is None or row.provider != provider:
            raise PaymentError(f"unknown order {n.order_no!r}", status=404, reason="unknown_order")
        if n.currency != row.currency or n.amount_minor != row.amount_minor:
            raise PaymentError(
                f"order {n.order_no}: the notification says {self.fmt(n.amount_minor)} {n.currency}, the order is"
                f" {self.fmt(row.amount_minor)} {row.currency}", status=422, reason="mismatch", field="amount")

    def _apply(self, row: PaymentOrder, n: Notification, now: dt.datetime) -> bool:
        """The order's new state after the notification; False when it changes nothing
        (a duplicate, or an event older than what the order knows)."""
        if n.status == "paid":
            if row.transaction_id is not None:
                if row.transaction_id != n.transaction_id:
                    raise PaymentError(f"order {order_no(row.id)} was paid by transaction {row.transaction_id} already", status=409,
                                       reason="double_payment")
                return False  # a duplicate
            late = row.state in ("expired", "failed") or (row.state == "created" and row.expires_at <= now)
            row.state, row.transaction_id, row.paid_at, row.late = "paid", n.transaction_id, n.paid_at or now, late
            row.detail = "paid after the order had expired" if late else ""
            row.updated_at = now
            return True
        if n.status == "failed" and row.state == "created":
            row.state, row.detail, row.updated_at = "failed", "the payer declined, or the payment failed", now
            return True
        return False  # "pending", or a failure reported after the payment: out of order, nothing to do

    # -- crediting -----------------------------------------------------------------------------------
    async def credit(self, order_id: int) -> OrderView:
        """Credit a ``paid`` order once (see the module docstring); any other state is answered as it is."""
        async with self._writes:
            view = await self.order(order_id)
            assert view is not None
            return (await self._credit_many([view])).get(view.id, view)

    async def _credit_many(self, views: list[OrderView]) -> dict[int, OrderView]:
        """Credit the ``paid`` orders, all recharges in one transaction; the caller holds the write lock."""
        done: dict[int, OrderView] = {}
        todo: list[OrderView] = []
        for view in views:
            if view.state != "paid":
                done[view.id] = view
            elif view.late and self.config.late_payment == "refund":
                done[view.id] = await self._refund_at_provider(view, "paid after the order had expired: refunded (payments.late_payment = refund)")
            else:
                todo.append(view)
        if not todo:
            return done
        now = self.clock()

        async def mark_credited(s: AsyncSession, results: list[PostResult | PrepaidError]) -> None:
            rows = [{"order": view.id, "entry": result.entry.id} for view, result in zip(todo, results, strict=True)
                    if isinstance(result, PostResult)]
            if rows:  # one statement executed for every row
                await s.execute(update(ORDERS).where(ORDERS.c.id == bindparam("order"), ORDERS.c.state == "paid").values(
                    state="credited", credited_at=now, entry_id=bindparam("entry"), updated_at=now), rows)

        items = []
        for view in todo:
            assert view.transaction_id is not None
            items.append(RechargeItem(view.room_id, view.amount_minor, channel=view.provider, reference=view.transaction_id,
                                      reason=f"online payment, order {view.order_no}", account_id=view.account_id))
        # one actor per provider; a batch is almost always of one provider
        actor = Actor.system(f"payments.{todo[0].provider}" if len({v.provider for v in todo}) == 1 else "payments")
        results = await self.engine.accounts.recharge_many(items, actor=actor, within=mark_credited)
        for view, result in zip(todo, results, strict=True):
            if isinstance(result, PrepaidError):
                if result.status == 404:  # the room has no open account, or another tenant's: not theirs
                    done[view.id] = await self._refund_at_provider(
                        view, f"account {view.account_id} was closed before the payment could be credited: refunded")
                else:
                    log.error("a paid order could not be credited", extra={"order": view.id, "room": view.room_id, "error": result.message})
                    done[view.id] = await self._set(view.id, detail=f"not credited yet: {result.message}"[:500])
                continue
            credited = done[view.id] = replace(view, state="credited", credited_at=now, entry_id=result.entry.id)
            if result.replayed:
                continue
            self.engine.account_changed(result.account)
            log.info("payment credited", extra={"order": view.id, "room": view.room_id, "account": view.account_id,
                                                 "amount": self.fmt(view.amount_minor), "entry": result.entry.id})
            for listener in list(self.credited_listeners):
                try:
                    listener(credited, result)
                except Exception:
                    log.exception("a listener of credited payments failed", extra={"order": view.id})
        return done

    async def _refund_at_provider(self, view: OrderView, detail: str) -> OrderView:
        provider = self.provider(view.provider)
        assert view.transaction_id is not None
        try:
            refund = await provider.refund(view.order_no, view.transaction_id, view.amount_minor, refund_no=f"R{view.id}", reason=detail)
        except PaymentError as exc:
            log.error("a payment could not be refunded at the provider", extra={"order": view.id, "error": exc.message})
            return await self._set(view.id, detail=f"{detail[:200]}; the refund failed: {exc.message}"[:500])
        now = self.clock()
        done = await self._set(view.id, state="refunded", refunded_at=now, refund_id=refund.refund_id, detail=detail[:500])
        log.warning("payment refunded to the payer", extra={"order": view.id, "room": view.room_id, "reason": detail})
        return done

    # -- refunds by an operator ----------------------------------------------------------------------
    async def refund(self, order_id: int, *, actor: Actor, reason: str) -> OrderView | ApprovalView:
        """Give a credited (or paid) payment back: the balance is debited and the provider refunds.
        Above ``approvals.refund_above`` a second user approves first, as for a cash refund."""
        if not reason.strip():
            raise PaymentError("reason: a refund needs a reason", status=422, field="reason")
        view = await self.order(order_id)
        if view is None:
            raise PaymentError(f"no order {order_id}", status=404)
        if view.state not in ("credited", "paid"):
            raise PaymentError(f"order {order_id} is {view.state}: only a paid or credited order can be refunded", status=409)
        rule = self.refund_rule(view.amount_minor)
        if rule:
            if self.approvals is None:
                raise PaymentError("approvals are not running", status=503)
            if view.state == "credited":
                balance = await self.engine.account(view.room_id)
                if balance is None or balance.balance_minor < view.amount_minor:
                    raise PaymentError(f"amount: {self.fmt(view.amount_minor)} is more than the balance", status=409, field="amount")
            payload = {"order": order_id, "room": view.room_id, "amount": self.fmt(view.amount_minor), "provider": view.provider}
            return await self.approvals.request(KIND_REFUND, f"payment:{order_id}", payload, actor, reason=reason, rule=rule,
                                                summary=f"refund online payment {view.order_no} of {self.fmt(view.amount_minor)} (room {view.room_id})")
        return await self._refund(view, actor, reason)

    async def _run_approved_refund(self, approval: ApprovalView, approver: Actor) -> dict[str, Any]:
        source = approval.requested_source if approval.requested_source in ("cli", "api", "hmi", "opcua", "engine", "import") else "api"
        requester = Actor(approval.requested_by, source, approval.requested_role)  # type: ignore[arg-type]
        view = await self.order(int(approval.payload["order"]))
        if view is None:
            raise PaymentError("the order is gone", status=404)
        reason = f"{approval.reason.strip()} [approval #{approval.id}: requested by {approval.requested_by}, approved by {approver.name}]"
        done = await self._refund(view, requester, reason.strip())
        return {"order": done.id, "state": done.state, "amount": self.fmt(done.amount_minor)}

    async def _refund(self, view: OrderView, actor: Actor, reason: str) -> OrderView:
        if view.state == "refunded":
            return view
        entry_id = None
        if view.state == "credited":
            try:
                result = await self.engine.refund(view.room_id, view.amount_minor, actor=actor, reason=reason, channel=view.provider,
                                                  reference=f"order-{view.id}")
            except PrepaidError as exc:
                raise PaymentError(exc.message, status=exc.status, field=exc.field) from None
            entry_id = result.entry.id
            await self._set(view.id, refund_entry_id=entry_id)
        provider = self.provider(view.provider)
        assert view.transaction_id is not None
        try:
            refund = await provider.refund(view.order_no, view.transaction_id, view.amount_minor, refund_no=f"R{view.id}", reason=reason)
        except PaymentError as exc:
            await self._set(view.id, detail=f"the provider's refund failed: {exc.message}; try again"[:500])
            raise PaymentError(f"the balance was debited, but the provider's refund failed: {exc.message}; refund again to retry",
                               status=502) from None
        now = self.clock()
        async with self.db.transaction() as s:
            row = await s.get(PaymentOrder, view.id, with_for_update=True)
            assert row is not None
            row.state, row.refunded_at, row.refund_id, row.detail, row.updated_at = "refunded", now, refund.refund_id, reason[:500], now
            AuditLog.record(s, actor, "payment.refund", "payment", str(view.id), reason=reason,
                            after={"room": view.room_id, "amount": self.fmt(view.amount_minor), "provider": view.provider,
                                   "refund": refund.refund_id, "entry": entry_id})
            done = _view(row)
        log.info("payment refunded", extra={"order": view.id, "room": view.room_id, "amount": self.fmt(view.amount_minor)})
        return done

    # -- recovery and housekeeping -------------------------------------------------------------------
    async def recover(self) -> int:
        """Credit the orders left ``paid`` (a crash, a failed credit), expire the created orders
        past their time, forget nonces older than the replay window. Returns the orders credited."""
        now = self.clock()
        overdue = (PaymentOrder.state == "created", PaymentOrder.expires_at <= now)
        stale = PaymentNonce.seen_at < now - dt.timedelta(seconds=self.config.replay_window_s)
        # looked for on the read-only connection first: most rounds find nothing to do, and a
        # transaction of Database.sessions holds SQLite's write lock for as long as a busy loop
        # takes to run its statements (a 50,000-meter start had a writer wait 10 s behind it)
        async with self.db.reads() as s:
            expire = bool(await s.scalar(select(exists().where(*overdue))))
            forget = bool(await s.scalar(select(exists().where(stale))))
            paid = list((await s.scalars(select(PaymentOrder.id).where(PaymentOrder.state == "paid").order_by(PaymentOrder.id))).all())
        if expire or forget:
            async with self.db.transaction() as s:
                await s.execute(update(PaymentOrder).where(*overdue).values(state="expired", detail="not paid in time", updated_at=now))
                await s.execute(delete(PaymentNonce).where(stale))
        credited = 0
        for order_id in paid:
            view = await self.credit(order_id)
            credited += view.state == "credited"
        if paid:
            log.info("paid orders recovered", extra={"orders": len(paid), "credited": credited})
        return credited

    async def wait_credited(self, order_id: int, timeout: float = 10.0) -> OrderView:
        """Wait until the order leaves ``created``/``paid`` (tests and the CLI)."""
        async with asyncio.timeout(timeout):
            while True:
                view = await self.order(order_id)
                if view is not None and view.state not in ("created", "paid"):
                    return view
                await asyncio.sleep(0.05)

