"""Account operations: open, recharge, refund, reverse, settings, emergency credit, tariffs, close.

Each operation is one transaction holding the account's row lock (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite serialises writers), posts its ledger entries, updates the account and
writes its audit entry in that same transaction. Idempotent operations (recharge, refund with a
reference) answer a repeated request with the first result and refuse a conflicting one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scada.core.inputs import InputError, e164
from scada.db import Database
from scada.prepaid.deduction import Biller, new_state, registers_json
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import (
    MODES,
    AccountView,
    Contact,
    EntryView,
    account_view,
    entry_view,
    post,
    thresholds_column,
)
from scada.prepaid.levels import Threshold
from scada.prepaid.models import Account, LedgerEntry, MeterSegment, MeterState
from scada.prepaid.money import format_minor
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import AssetSnapshot
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["AccountService", "AccountSettings", "CloseHook", "OpenRequest", "PostResult", "CurrentReading", "RechargeItem", "Within",
           "WithinMany"]

log = logging.getLogger(__name__)

# the newest good reading of a meter from the tag database, or None
CurrentReading = Callable[[str], Reading | None]
REVERSIBLE = ("opening", "recharge", "refund", "deduction", "charge", "late_fee", "apportionment")


@dataclass(frozen=True)
class AccountSettings:
    """Settings of an account (all optional in an update)."""

    credit_limit_minor: int | None = None
    thresholds: tuple[Threshold, ...] | None = None
    contact: Contact | None = None
    protected: bool | None = None
    friendly_credit: bool | None = None
    auto_reconnect: bool | None = None
    emergency_credit_minor: int | None = None
    capacity_kva: Decimal | None = None
    demand_kw: Decimal | None = None
    mode: str | None = None  # prepaid | postpaid


# work another part does inside a recharge's transaction (the payments feature marks its order
# credited there): (session, the recharge's result)
Within = Callable[[AsyncSession, "PostResult"], Awaitable[None]]

# the same for recharge_many: (session, each item's result or refusal)
WithinMany = Callable[[AsyncSession, "list[PostResult | PrepaidError]"], Awaitable[None]]

# work another part does inside an account's closing transaction, before the balance is settled
# (the back office posts the part-period charges of a move-out): (session, account, now, actor)
CloseHook = Callable[[AsyncSession, Account, dt.datetime, Actor], Awaitable[None]]


def checked_contact(contact: Contact | None) -> Contact | None:
    """The contact with its phone number in E.164 form (it goes into SMS gateway requests);
    a number that is not one is refused, naming the field."""
    if contact is None or not contact.phone:
        return contact
    try:
        phone = e164(contact.phone)
    except InputError as exc:
        raise PrepaidError(f"contact.phone: {exc}", status=422, field="contact.phone") from None
    return Contact(contact.name, phone, contact.email, contact.language)


@dataclass(frozen=True)
class OpenRequest:
    room_id: str
    settings: AccountSettings
    electricity_tariff_id: str | None = None
    water_tariff_id: str | None = None
    opening_minor: int = 0
    readings: dict[str, Decimal] = field(default_factory=dict)  # baselines given by the opener
    reason: str = ""
    reference: str | None = None  # on the opening entry; makes a repeated opening answer the first


@dataclass(frozen=True)
class RechargeItem:
    """One recharge of :meth:`AccountService.recharge_many`."""

    room_id: str
    amount_minor: int
    channel: str
    reference: str
    reason: str = ""
    account_id: int | None = None  # only into this account: refused (404) when the room's open account is another


@dataclass(frozen=True)
class PostResult:
    entry: EntryView
    account: AccountView
    replayed: bool = False


class AccountService:
    def __init__(
        self,
        db: Database,
        tariffs: TariffStore,
        biller: Biller,
        assets: Callable[[], AssetSnapshot],
        current_reading: CurrentReading,
        *,
        minor_units: int,
    ) -> None:
        self.db = db
        self.tariffs = tariffs
        self.biller = biller
        self.assets = assets
        self.current_reading = current_reading
        self.minor_units = minor_units
        self.close_hooks: list[CloseHook] = []

    def _fmt(self, minor: int) -> str:
        return format_minor(minor, self.minor_units)

    # -- queries ------------------------------------------------------------------------------
    async def account_of_room(self, room_id: str) -> AccountView | None:
        """The room's open account, else its most recently closed one."""
        async with self.db.reads() as s:
            a = await s.scalar(
                select(Account).where(Account.room_id == room_id).order_by((Account.state == "open").desc(), Account.id.desc()).limit(1)
            )
            return account_view(a) if a else None

    async def open_accounts(self) -> list[AccountView]:
        async with self.db.reads() as s:
            return [account_view(a) for a in (await s.scalars(select(Account).where(Account.state == "open"))).all()]

    async def ledger(self, account_id: int, *, limit: int = 100, before_id: int | None = None) -> list[EntryView]:
        stmt = select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(LedgerEntry.id < before_id)
        async with self.db.reads() as s:
            return [entry_view(e) for e in (await s.scalars(stmt)).all()]

    async def entry(self, entry_id: int) -> EntryView | None:
        async with self.db.reads() as s:
            e = await s.get(LedgerEntry, entry_id)
            return entry_view(e) if e else None

    # -- helpers ------------------------------------------------------------------------------
    async def _open_account(self, s: AsyncSession, room_id: str) -> Account:
        a = await s.scalar(select(Account).where(Account.open_room_id == room_id).with_for_update())
        if a is None:
            if room_id not in self.assets().rooms:
                raise PrepaidError(f"no room {room_id!r}", status=404)
            raise PrepaidError(f"room {room_id} has no open account", status=404)
        return a

    async def _check_tariff(self, tariff_id: str | None, commodity: str, field_name: str) -> None:
        if tariff_id is None:
            return
        info = await self.tariffs.get(tariff_id)
        if info is None:
            raise PrepaidError(f"{field_name}: no tariff {tariff_id!r}", status=422, field=field_name)
        if info.commodity != commodity:
            raise PrepaidError(f"{field_name}: tariff {tariff_id} is for {info.commodity}, not {commodity}", status=422, field=field_name)

    # -- open ----------------------------------------------------------------------------------
    async def check_open(self, req: OpenRequest) -> None:
        """Raise what :meth:`open` would refuse before its transaction (room, tariffs, readings,
        an account already open): a request for approval is checked the same way."""
        await self._tenant_meters(req)
        async with self.db.sessions() as s:
            if await s.scalar(select(Account.id).where(Account.open_room_id == req.room_id)) is not None:
                raise PrepaidError(f"room {req.room_id} already has an open account")

    async def _tenant_meters(self, req: OpenRequest) -> list[Any]:
        snapshot = self.assets()
        if req.room_id not in snapshot.rooms:
            raise PrepaidError(f"no room {req.room_id!r}", status=404)
        meters = [m for m in snapshot.meters_of_room(req.room_id) if m.role == "tenant"]
        await self._check_tariff(req.electricity_tariff_id, "electricity", "tariffs.electricity")
        await self._check_tariff(req.water_tariff_id, "water", "tariffs.water")
        for m in meters:
            if m.kind == "electricity" and req.electricity_tariff_id is None:
                raise PrepaidError(f"tariffs.electricity: room {req.room_id} has the electricity meter {m.id}", status=422, field="tariffs.electricity")
            if m.kind == "water" and req.water_tariff_id is None:
                raise PrepaidError(f"tariffs.water: room {req.room_id} has the water meter {m.id}", status=422, field="tariffs.water")
        unknown = set(req.readings) - {m.id for m in meters}
        if unknown:
            name = sorted(unknown)[0]
            raise PrepaidError(f"readings.{name}: not a meter of room {req.room_id}", status=422, field=f"readings.{name}")
        return meters

    async def open(self, req: OpenRequest, actor: Actor) -> AccountView:
        """Open the room's account. With a ``reference`` (an approved request's), opening again
        answers the account that reference opened."""
        if req.reference is not None:
            async with self.db.sessions() as s:
                first = await s.scalar(select(LedgerEntry).where(LedgerEntry.kind == "opening", LedgerEntry.reference == req.reference))
                if first is not None:
                    opened = await s.get(Account, first.account_id)
                    assert opened is not None
                    return account_view(opened)
        meters = await self._tenant_meters(req)
        st = req.settings
        contact = checked_contact(st.contact) or Contact("", None, None, "en")
        now = utcnow()
        async with self.db.transaction() as s:
            if await s.scalar(select(Account.id).where(Account.open_room_id == req.room_id)) is not None:
                raise PrepaidError(f"room {req.room_id} already has an open account")
            a = Account(
                room_id=req.room_id, open_room_id=req.room_id, state="open", opened_at=now, opened_by=actor.name,
                electricity_tariff_id=req.electricity_tariff_id, water_tariff_id=req.water_tariff_id,
                contact_name=contact.name, contact_phone=contact.phone, contact_email=contact.email, language=contact.language,
                credit_limit_minor=st.credit_limit_minor or 0, thresholds=thresholds_column(st.thresholds or ()),
                protected=bool(st.protected), friendly_credit=st.friendly_credit if st.friendly_credit is not None else True,
                auto_reconnect=st.auto_reconnect if st.auto_reconnect is not None else True,
                emergency_credit_minor=st.emergency_credit_minor or 0, emergency_taken_at=None,
                capacity_kva=st.capacity_kva, demand_kw=st.demand_kw, charges_through=None,
                mode=_mode(st.mode or "prepaid"), dunning_level=0, dunning_cut=False,
                balance_minor=0, remainder=Decimal(0), alarm_level=0, supply_state="on", reconnect_pending=False,
                updated_at=now,
            )
            s.add(a)
            await s.flush()
            post(s, a, "opening", req.opening_minor, actor, now, reason=req.reason or "account opened", reference=req.reference)
            baselines: dict[str, Any] = {}
            for m in meters:
                given = req.readings.get(m.id)
                current = self.current_reading(m.id)
                if given is not None:
                    reading: Reading | None = Reading(m.id, given, now, None)
                else:
                    reading = current
                await self._attach(s, m.id, a.id, reading, now, "account opened")
                baselines[m.id] = reading.value if reading else None
            self.biller.update_level(a, credited=True)
            AuditLog.record(
                s, actor, "account.open", "account", str(a.id), reason=req.reason,
                after={"room": req.room_id, "opening_balance": self._fmt(req.opening_minor), "tariffs": {
                    "electricity": req.electricity_tariff_id, "water": req.water_tariff_id}, "baselines": baselines,
                    "credit_limit": self._fmt(a.credit_limit_minor), "protected": a.protected, "mode": a.mode},
            )
            view = account_view(a)
        log.info("account opened", extra={"account": view.id, "room": req.room_id})
        return view

    async def _attach(self, s: AsyncSession, meter_id: str, account_id: int, reading: Reading | None, now: dt.datetime, reason: str) -> MeterState:
        """Start a new billing segment of ``meter_id`` for ``account_id`` from ``reading``."""
        st = await s.scalar(select(MeterState).where(MeterState.meter_id == meter_id).with_for_update())
        baseline = reading.value if reading else None
        ts = reading.ts if reading else None
        registers = reading.registers if reading else None
        if st is None:
            return new_state(s, meter_id, account_id, now, segment=1, baseline=baseline, baseline_ts=ts, reason=reason, registers=registers)
        if st.account_id is not None:
            other = await s.get(Account, st.account_id)
            if other is not None and other.state == "open" and other.id != account_id:
                raise PrepaidError(f"meter {meter_id} is billed to the open account {other.id}")
        st.segment += 1
        st.account_id = account_id
        st.last_reading, st.last_ts, st.last_registers = baseline, ts if baseline is not None else None, registers_json(registers)
        st.hold_kind, st.hold_detail, st.hold_reading, st.hold_ts, st.hold_registers, st.hold_since = None, "", None, None, None, None
        st.retired = False
        st.updated_at = now
        s.add(MeterSegment(meter_id=meter_id, segment=st.segment, account_id=account_id, baseline=baseline,
                           baseline_ts=ts if baseline is not None else None, started_at=now, reason=reason))
        return st

    # -- money in and out -----------------------------------------------------------------------
    async def recharge(
        self, room_id: str, amount_minor: int, *, channel: str, reference: str, actor: Actor, reason: str = "",
        within: Within | None = None,
    ) -> PostResult:
        """Credit the room's open account once per (channel, reference); a repeated request
        answers the first result. ``within`` runs inside the recharge's transaction (also for a
        replay), so that what another part records about the credit commits with it."""
        if amount_minor <= 0:
            raise PrepaidError("amount: must be greater than zero", status=422, field="amount")
        key = f"recharge:{channel}:{reference}"
        for attempt in (1, 2):
            try:
                return await self._recharge(room_id, amount_minor, channel, reference, key, actor, reason, within)
            except IntegrityError:
                # a concurrent request with the same reference committed first: answer as a replay
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _recharge(
        self, room_id: str, amount_minor: int, channel: str, reference: str, key: str, actor: Actor, reason: str, within: Within | None,
    ) -> PostResult:
        now = utcnow()
        async with self.db.transaction() as s:
            first = await s.scalar(select(LedgerEntry).where(LedgerEntry.idem_key == key))
            if first is not None:
                replayed = await self._replay(s, first, room_id, amount_minor, "reference", f"{channel}/{reference}")
                if within is not None:
                    await within(s, replayed)
                return replayed
            a = await self._open_account(s, room_id)
            e = post(s, a, "recharge", amount_minor, actor, now, reason=reason or "recharge", channel=channel, reference=reference, idem_key=key)
            self._credited(a, actor, s, now)
            AuditLog.record(
                s, actor, "account.recharge", "account", str(a.id), reason=reason,
                after={"room": room_id, "amount": self._fmt(amount_minor), "channel": channel, "reference": reference, "balance": self._fmt(a.balance_minor)},
            )
            await s.flush()
            result = PostResult(entry_view(e), account_view(a))
            if within is not None:
                await within(s, result)
            return result

    async def recharge_many(self, items: list[RechargeItem], *, actor: Actor, within: WithinMany | None = None) -> list[PostResult | PrepaidError]:
        """Several recharges in one transaction, each as :meth:`recharge` would do it (idempotent by
        channel and reference; refused on its own when its room has no open account, or not the
        item's ``account_id``, or its reference was used for another amount), committed together
        with ``within``: the batched statements cost a few round trips for the lot instead of a
        dozen per recharge. The results are in the items' order."""
        now = utcnow()
        keys = [f"recharge:{it.channel}:{it.reference}" for it in items]
        # (key, replayed): posted in this batch, its result made once the entry has its id
        out: list[PostResult | PrepaidError | tuple[str, bool]] = []
        async with self.db.transaction() as s:
            firsts = {e.idem_key: e for e in (await s.scalars(select(LedgerEntry).where(LedgerEntry.idem_key.in_(keys)))).all()}
            rooms = sorted({it.room_id for it, key in zip(items, keys, strict=True) if key not in firsts})
            accounts = {a.open_room_id: a for a in (await s.scalars(
                select(Account).where(Account.open_room_id.in_(rooms)).with_for_update())).all()} if rooms else {}
            posted: dict[str, tuple[LedgerEntry, AccountView]] = {}
            for it, key in zip(items, keys, strict=True):
                if it.amount_minor <= 0:
                    out.append(PrepaidError("amount: must be greater than zero", status=422, field="amount"))
                    continue
                first = firsts.get(key)
                if first is not None:
                    try:
                        out.append(await self._replay(s, first, it.room_id, it.amount_minor, "reference", f"{it.channel}/{it.reference}"))
                    except PrepaidError as exc:
                        out.append(exc)
                    continue
                if key in posted:  # the same recharge twice in one batch: the second answers the first
                    e, v = posted[key]
                    same = abs(e.amount_minor) == it.amount_minor and v.room_id == it.room_id
                    out.append((key, True) if same else
                               PrepaidError(f"reference: {it.channel}/{it.reference} was already used", status=409, field="reference"))
                    continue
                a = accounts.get(it.room_id)
                if a is None or (it.account_id is not None and a.id != it.account_id):
                    out.append(PrepaidError(f"room {it.room_id} has no open account"
                                            + (f" {it.account_id}" if it.account_id is not None else ""), status=404))
                    continue
                e = post(s, a, "recharge", it.amount_minor, actor, now, reason=it.reason or "recharge", channel=it.channel,
                         reference=it.reference, idem_key=key)
                self._credited(a, actor, s, now)
                AuditLog.record(
                    s, actor, "account.recharge", "account", str(a.id), reason=it.reason,
                    after={"room": it.room_id, "amount": self._fmt(it.amount_minor), "channel": it.channel, "reference": it.reference,
                           "balance": self._fmt(a.balance_minor)},
                )
                posted[key] = (e, account_view(a))  # the balance after this item, not after the batch
                out.append((key, False))
            await s.flush()
            results = [PostResult(entry_view(posted[r[0]][0]), posted[r[0]][1], replayed=r[1]) if isinstance(r, tuple) else r for r in out]
            if within is not None:
                await within(s, results)
        return results

    async def _replay(self, s: AsyncSession, first: LedgerEntry, room_id: str, amount_minor: int, field_name: str, label: str) -> PostResult:
        account = await s.get(Account, first.account_id)
        assert account is not None
        if abs(first.amount_minor) != amount_minor or account.room_id != room_id:
            raise PrepaidError(
                f"{field_name}: {label} was already used for {self._fmt(abs(first.amount_minor))} on room {account.room_id}",
                status=409, field=field_name,
            )
        return PostResult(entry_view(first), account_view(account), replayed=True)

    def _credited(self, a: Account, actor: Actor, s: AsyncSession, now: dt.datetime) -> None:
        """After a credit: repaid emergency credit is re-armed, the alarm level may clear."""
        if a.emergency_taken_at is not None and a.balance_minor >= 0:
            a.emergency_taken_at = None
            AuditLog.record(s, actor, "account.emergency_repaid", "account", str(a.id), after={"balance": self._fmt(a.balance_minor)})
        self.biller.update_level(a, credited=True)

    async def refund(self, room_id: str, amount_minor: int, *, actor: Actor, reason: str, channel: str = "cash", reference: str | None = None) -> PostResult:
        if amount_minor <= 0:
            raise PrepaidError("amount: must be greater than zero", status=422, field="amount")
        if not reason.strip():
            raise PrepaidError("reason: a refund needs a reason", status=422, field="reason")
        key = f"refund:{channel}:{reference}" if reference else None
        now = utcnow()
        async with self.db.transaction() as s:
            if key is not None:
                first = await s.scalar(select(LedgerEntry).where(LedgerEntry.idem_key == key))
                if first is not None:
                    return await self._replay(s, first, room_id, amount_minor, "reference", f"{channel}/{reference}")
            a = await self._open_account(s, room_id)
            if amount_minor > a.balance_minor:
                raise PrepaidError(
                    f"amount: {self._fmt(amount_minor)} is more than the balance {self._fmt(a.balance_minor)}", status=409, field="amount"
                )
            e = post(s, a, "refund", -amount_minor, actor, now, reason=reason, channel=channel, reference=reference, idem_key=key)
            self.biller.update_level(a, credited=False)
            AuditLog.record(s, actor, "account.refund", "account", str(a.id), reason=reason,
                            after={"room": room_id, "amount": self._fmt(amount_minor), "balance": self._fmt(a.balance_minor)})
            await s.flush()
            return PostResult(entry_view(e), account_view(a))

    async def check_reverse(self, entry_id: int) -> EntryView:
        """The entry, when :meth:`reverse` would reverse it now; else raise why not."""
        async with self.db.sessions() as s:
            original, _ = await self._reversible(s, entry_id, None)
            a = await s.get(Account, original.account_id)
            if a is None or a.state != "open":
                raise PrepaidError(f"account {original.account_id} is closed")
            return entry_view(original)

    async def _reversible(self, s: AsyncSession, entry_id: int, reference: str | None) -> tuple[LedgerEntry, LedgerEntry | None]:
        """The entry to reverse and, when ``reference`` already reversed it, that reversal."""
        original = await s.get(LedgerEntry, entry_id)
        if original is None:
            raise PrepaidError(f"no ledger entry {entry_id}", status=404)
        if original.kind not in REVERSIBLE:
            raise PrepaidError(f"a {original.kind} entry cannot be reversed")
        done = await s.scalar(select(LedgerEntry).where(LedgerEntry.reverses_id == entry_id))
        if done is not None:
            if reference is not None and done.reference == reference:
                return original, done
            raise PrepaidError(f"entry {entry_id} was already reversed by entry {done.id}")
        return original, None

    async def reverse(self, entry_id: int, *, actor: Actor, reason: str, reference: str | None = None) -> PostResult:
        """Post the compensating entry. With a ``reference`` (an approved request's), reversing
        again answers the first reversal."""
        if not reason.strip():
            raise PrepaidError("reason: a reversal needs a reason", status=422, field="reason")
        now = utcnow()
        async with self.db.transaction() as s:
            original, done = await self._reversible(s, entry_id, reference)
            if done is not None:
                account = await s.get(Account, done.account_id)
                assert account is not None
                return PostResult(entry_view(done), account_view(account), replayed=True)
            a = await s.scalar(select(Account).where(Account.id == original.account_id).with_for_update())
            assert a is not None
            if a.state != "open":
                raise PrepaidError(f"account {a.id} is closed")
            e = post(s, a, "reversal", -original.amount_minor, actor, now, reason=reason, reverses_id=entry_id,
                     meter_id=original.meter_id, idem_key=f"reversal:{entry_id}", reference=reference)
            if -original.amount_minor > 0:
                self._credited(a, actor, s, now)
            else:
                self.biller.update_level(a, credited=False)
            AuditLog.record(s, actor, "ledger.reverse", "ledger", str(entry_id), reason=reason,
                            before={"kind": original.kind, "amount": self._fmt(original.amount_minor)},
                            after={"reversal": self._fmt(-original.amount_minor), "balance": self._fmt(a.balance_minor)})
            await s.flush()
            return PostResult(entry_view(e), account_view(a))

    # -- settings -------------------------------------------------------------------------------
    async def update_settings(self, room_id: str, settings: AccountSettings, *, actor: Actor, reason: str = "") -> AccountView:
        now = utcnow()
        async with self.db.transaction() as s:
            a = await self._open_account(s, room_id)
            # the audit log keeps no contact details (they are erased when retention ends)
            before = account_view(a).as_json(self.minor_units, contact=False)
            st = settings
            if st.credit_limit_minor is not None:
                a.credit_limit_minor = st.credit_limit_minor
            if st.thresholds is not None:
                a.thresholds = thresholds_column(st.thresholds)
            contact = checked_contact(st.contact)
            if contact is not None:
                a.contact_name, a.contact_phone, a.contact_email, a.language = contact.name, contact.phone, contact.email, contact.language
            for name in ("protected", "friendly_credit", "auto_reconnect", "capacity_kva", "demand_kw"):
                value = getattr(st, name)
                if value is not None:
                    setattr(a, name, value)
            if st.emergency_credit_minor is not None:
                a.emergency_credit_minor = st.emergency_credit_minor
            if st.mode is not None and st.mode != a.mode:
                a.mode = _mode(st.mode)
                a.dunning_level, a.dunning_cut = 0, False
            a.updated_at = now
            # thresholds may have moved either way: the level follows them
            self.biller.update_level(a, credited=True)
            view = account_view(a)
            after = view.as_json(self.minor_units, contact=False)
            if st.contact is not None:
                after["contact_changed"] = True
            AuditLog.record(s, actor, "account.settings", "account", str(a.id), reason=reason, before=before, after=after)
            return view

    async def take_emergency_credit(self, room_id: str, *, actor: Actor, reason: str = "") -> AccountView:
        now = utcnow()
        async with self.db.transaction() as s:
            a = await self._open_account(s, room_id)
            if a.emergency_credit_minor <= 0:
                raise PrepaidError("this account has no emergency credit")
            if a.emergency_taken_at is not None:
                raise PrepaidError("emergency credit was already taken; it is available again once repaid by a recharge")
            if a.balance_minor > 0:
                raise PrepaidError(f"emergency credit is for an exhausted balance; the balance is {self._fmt(a.balance_minor)}")
            a.emergency_taken_at = now
            a.updated_at = now
            AuditLog.record(s, actor, "account.emergency_credit", "account", str(a.id), reason=reason,
                            after={"emergency_credit": self._fmt(a.emergency_credit_minor), "balance": self._fmt(a.balance_minor)})
            return account_view(a)

    async def assign_tariff(self, tariff_id: str, room_ids: list[str], *, actor: Actor, reason: str = "") -> list[AccountView]:
        info = await self.tariffs.get(tariff_id)
        if info is None:
            raise PrepaidError(f"no tariff {tariff_id!r}", status=404)
        column = "electricity_tariff_id" if info.commodity == "electricity" else "water_tariff_id"
        now = utcnow()
        out = []
        async with self.db.transaction() as s:
            for i, room_id in enumerate(room_ids):
                a = await s.scalar(select(Account).where(Account.open_room_id == room_id).with_for_update())
                if a is None:
                    raise PrepaidError(f"rooms[{i}]: room {room_id!r} has no open account", status=422, field=f"rooms[{i}]")
                before = getattr(a, column)
                setattr(a, column, tariff_id)
                a.updated_at = now
                AuditLog.record(s, actor, "account.tariff", "account", str(a.id), reason=reason,
                                before={info.commodity: before}, after={info.commodity: tariff_id})
                out.append(account_view(a))
        return out

    # -- close ----------------------------------------------------------------------------------
    async def close(
        self, room_id: str, *, actor: Actor, reason: str, final_readings: dict[str, Decimal] | None = None, channel: str = "cash"
    ) -> tuple[AccountView, EntryView | None]:
        """Bill the final readings, refund the balance, end the meters' segments, close."""
        if not reason.strip():
            raise PrepaidError("reason: closing an account needs a reason", status=422, field="reason")
        now = utcnow()
        async with self.db.transaction() as s:
            a = await self._open_account(s, room_id)
            states = (await s.scalars(select(MeterState).where(MeterState.account_id == a.id).with_for_update())).all()
            given = final_readings or {}
            unknown = set(given) - {st.meter_id for st in states}
            if unknown:
                name = sorted(unknown)[0]
                raise PrepaidError(f"final_readings.{name}: not a meter of this account", status=422, field=f"final_readings.{name}")
            for st in states:
                if st.hold_kind is not None:
                    raise PrepaidError(f"meter {st.meter_id} has a reading held for review ({st.hold_kind}): resolve it first")
            measured = [r for st in states if st.meter_id not in given and (r := self.current_reading(st.meter_id)) is not None]
            outcome = await self.biller.bill(s, measured, now)
            if outcome.holds:
                h = outcome.holds[0]
                raise PrepaidError(f"final reading of meter {h.meter_id} is not plausible ({h.kind}: {h.detail})")
            # the biller wrote the balance and the cursors with its own statements
            await s.refresh(a)
            for st in states:
                await s.refresh(st)
            # final readings given by the operator (read off the display) are billed as stated
            if given:
                snapshot = self.assets()
                timelines = await self.tariffs.timelines(s)
                rows = []
                for st in states:
                    value = given.get(st.meter_id)
                    if value is None:
                        continue
                    if st.last_reading is None:
                        await self.biller.set_baseline(s, st, Reading(st.meter_id, value, now), now)
                        continue
                    if value < st.last_reading:
                        raise PrepaidError(f"final_readings.{st.meter_id}: {value} is below the last billed reading {st.last_reading}",
                                           status=422, field=f"final_readings.{st.meter_id}")
                    if value > st.last_reading:
                        ts = max(now, st.last_ts or now)
                        usage = await self.biller.load_usage(s, {a.id: a}, [Reading(st.meter_id, value, ts)], {st.meter_id: st})
                        row = self.biller.charge(st, a, value, ts, None, snapshot.meters.get(st.meter_id), timelines, usage, now,
                                                 reason=f"final reading: {reason}")
                        self.biller.write_usage(s, usage)
                        if row is not None:
                            rows.append(row)
                if rows:
                    await s.execute(insert(LedgerEntry), rows)
            for hook in self.close_hooks:
                await hook(s, a, now, actor)
            if a.balance_minor < 0:
                raise PrepaidError(f"the account owes {self._fmt(-a.balance_minor)}: settle the arrears with a recharge first")
            settlement: LedgerEntry | None = None
            refunded = a.balance_minor
            if refunded > 0:
                settlement = post(s, a, "settlement", -refunded, actor, now, reason=reason, channel=channel)
            for st in states:
                await s.execute(
                    update(MeterSegment)
                    .where(MeterSegment.meter_id == st.meter_id, MeterSegment.segment == st.segment)
                    .values(final_reading=st.last_reading, ended_at=now)
                )
                st.account_id = None
                st.updated_at = now
            a.state, a.open_room_id, a.closed_at, a.updated_at = "closed", None, now, now
            a.alarm_level = 0
            AuditLog.record(s, actor, "account.close", "account", str(a.id), reason=reason,
                            after={"room": room_id, "refunded": self._fmt(refunded), "final_readings": {st.meter_id: st.last_reading for st in states},
                                   "remainder_written_off": a.remainder})
            await s.flush()
            view = account_view(a)
            entry = entry_view(settlement) if settlement is not None else None
        log.info("account closed", extra={"account": view.id, "room": room_id})
        return view, entry

    async def set_dunning(self, account_id: int, level: int, cut: bool, *, actor: Actor, reason: str) -> AccountView | None:
        """Set a postpaid account's dunning: its alarm level (0..3) and whether its overdue bills
        ask for a cut (the cutoff policy then applies its windows and protection)."""
        if not 0 <= level <= 3:
            raise ValueError(f"dunning level must be 0..3, found {level}")
        now = utcnow()
        async with self.db.transaction() as s:
            a = await s.scalar(select(Account).where(Account.id == account_id).with_for_update())
            if a is None or a.state != "open" or a.mode != "postpaid":
                return None
            if a.dunning_level == level and a.dunning_cut == cut:
                return account_view(a)
            before = {"level": a.dunning_level, "cut": a.dunning_cut}
            a.dunning_level, a.dunning_cut, a.updated_at = level, cut, now
            self.biller.update_level(a, credited=True)
            AuditLog.record(s, actor, "account.dunning", "account", str(a.id), reason=reason, before=before, after={"level": level, "cut": cut})
            return account_view(a)

    async def set_supply(self, account_id: int, state: str, *, reconnect_pending: bool, actor: Actor, reason: str) -> AccountView | None:
        """Record a supply state change of an account (the relay commands are the caller's)."""
        now = utcnow()
        async with self.db.transaction() as s:
            a = await s.scalar(select(Account).where(Account.id == account_id).with_for_update())
            if a is None:
                return None
            if a.supply_state == state and a.reconnect_pending == reconnect_pending:
                return account_view(a)
            before = {"supply_state": a.supply_state, "reconnect_pending": a.reconnect_pending}
            a.supply_state, a.reconnect_pending, a.updated_at = state, reconnect_pending, now
            AuditLog.record(s, actor, "account.supply", "account", str(a.id), reason=reason, before=before,
                            after={"supply_state": state, "reconnect_pending": reconnect_pending})
            return account_view(a)


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise PrepaidError(f"mode: one of {', '.join(MODES)}, found {mode!r}", status=422, field="mode")
    return mode


def with_defaults(settings: AccountSettings, defaults: AccountSettings) -> AccountSettings:
    """``settings`` with every unset field taken from ``defaults``."""
    values = {f: getattr(settings, f) if getattr(settings, f) is not None else getattr(defaults, f) for f in settings.__dataclass_fields__}
    return replace(settings, **values)
