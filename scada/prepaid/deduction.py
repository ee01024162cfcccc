"""Billing readings exactly once: price each consumption delta and deduct it in the ledger.

:meth:`Biller.bill` takes a batch of readings and, inside the caller's transaction, judges each
against its meter's billing cursor (the last billed reading), prices the delta with the
account's tariff, rounds it with the account's carried remainder and posts a deduction keyed
by (meter, segment, reading). The cursor moves in the same transaction, so a crash either
keeps both or neither: a replayed or re-read reading is never billed twice, and the next
reading after a restart bills everything since the last committed one. A batch is one
transaction, which is what makes thousands of readings per second possible.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Table, Text, bindparam, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from scada.db.bulk import KeyedRead, RawJSON, bulk_insert, bulk_update
from scada.prepaid.ledger import AccountView, account_view, entry_row, thresholds_of
from scada.prepaid.levels import Threshold, level_for, next_level
from scada.prepaid.models import (
    Account,
    CycleUsage,
    LedgerEntry,
    MeterSegment,
    MeterState,
)
from scada.prepaid.money import Rounding, exact
from scada.prepaid.pricing import (
    DirectLine,
    Quote,
    TariffTimeline,
    allocate,
    cycle_key,
    plain,
    price_consumption,
    price_direct,
)
from scada.prepaid.readings import Assessment, Reading, Verdict, assess
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import MeterInfo
from scada.users.audit import Actor, AuditLog

__all__ = ["BillOutcome", "Biller", "HoldEvent", "MeterDirectory", "columns_as_text", "new_state", "registers_json", "registers_text"]

log = logging.getLogger(__name__)

ENGINE = Actor.system("prepaid")
_ONE = Decimal(1)


class MeterDirectory(Protocol):
    """Where the biller looks meters up (the asset registry's current snapshot)."""

    def meter(self, meter_id: str) -> MeterInfo | None: ...

    def predecessor(self, meter_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class HoldEvent:
    meter_id: str
    kind: str | None  # None: the hold was cleared
    detail: str


@dataclass
class BillOutcome:
    accounts: dict[int, AccountView] = field(default_factory=dict)
    holds: list[HoldEvent] = field(default_factory=list)
    billed: int = 0
    skipped: int = 0


def registers_json(registers: dict[str, Decimal] | None) -> dict[str, str] | None:
    return {k: format(v, "f") for k, v in registers.items()} if registers else None


def _registers(data: Any) -> dict[str, Decimal] | None:
    return {k: Decimal(v) for k, v in data.items()} if data else None


_JSON_NAMES: dict[str, str] = {}  # period names as JSON text


def _json_name(name: str) -> str:
    text = _JSON_NAMES.get(name)
    if text is None:
        if len(_JSON_NAMES) > 1000:
            _JSON_NAMES.clear()
        text = _JSON_NAMES[name] = json.dumps(name)
    return text


def registers_text(registers: dict[str, Decimal] | None) -> RawJSON | None:
    """``json.dumps(registers_json(registers))``, built as text (the batch path writes the cursor's
    registers with it; ``tests/scada/prepaid/test_detail_text.py`` holds the two equal)."""
    if not registers:
        return None
    # a decimal's digits need no escaping
    return RawJSON("{" + ", ".join(f'{_json_name(k)}: "{format(v, "f")}"' for k, v in registers.items()) + "}")


def _exp(d: Decimal) -> int:
    e = d.as_tuple().exponent
    assert isinstance(e, int)
    return e


class Biller:
    def __init__(
        self,
        tariffs: TariffStore,
        rounding: Rounding,
        tz: ZoneInfo,
        meters: MeterDirectory,
        *,
        margin: Decimal = Decimal(1),
        daily_cost: Callable[[int], Decimal | None] = lambda _a: None,
    ) -> None:
        self.tariffs = tariffs
        self.rounding = rounding
        self.tz = tz
        self.meters = meters
        self.margin = margin
        self.daily_cost = daily_cost
        self._warned: set[tuple[int, str]] = set()
        self._prices: dict[int, tuple[Decimal, str]] = {}  # id(price) → (price, plain(price))
        # meter → (its cursor's registers as the batch path wrote them, as decimals): the next
        # batch reads the same text back and need not decode it (a cache of a pure function of
        # the text: a rolled-back write only misses)
        self._cursor_registers: dict[str, tuple[str, dict[str, Decimal]]] = {}

    async def bill(self, s: AsyncSession, readings: Sequence[Reading], now: dt.datetime) -> BillOutcome:
        """Bill ``readings`` in the caller's transaction (``s``); see the module docstring."""
        out = BillOutcome()
        if not readings:
            return out
        ids = sorted({r.meter_id for r in readings})
        states = await self._states(s, ids, now)
        accounts = await self._accounts(s, {st.account_id for st in states.values() if st.account_id is not None})
        timelines = await self.tariffs.timelines(s)
        # the cycles' usage only prices tiers: without a tiered version there is none to load
        tiered = any(v.definition.tiers is not None for tl in timelines.values() for v in tl.versions)
        usage = await self.load_usage(s, accounts, readings, states) if tiered else {}
        touched: set[int] = set()
        dirty: dict[str, Any] = {}
        baselines: list[dict[str, Any]] = []  # SEGMENT_BASELINE_UPDATE parameters
        # the ledger's rows go to the database in parts as they are made (on PostgreSQL the
        # server inserts one part while the next is priced)
        async with LEDGER_INSERT.streamed(s) as ledger:
            with exact():  # one exact context for the whole batch (a context per operation costs)
                for i, r in enumerate(sorted(readings, key=lambda r: (r.meter_id, r.ts))):
                    if i % _LEDGER_TURN == _LEDGER_TURN - 1:
                        await ledger.turn()
                    st = states.get(r.meter_id)
                    if st is None or st.account_id is None or st.retired:
                        out.skipped += 1
                        continue
                    account = accounts.get(st.account_id)
                    if account is None or account.state != "open":
                        out.skipped += 1
                        continue
                    if st.hold_kind is not None:
                        if st.hold_ts is None or r.ts > st.hold_ts:
                            st.hold_reading, st.hold_ts, st.hold_registers = r.value, r.ts, registers_json(r.registers)
                            st.updated_at = now
                            dirty[st.meter_id] = st
                        out.skipped += 1
                        continue
                    info = self.meters.meter(r.meter_id)
                    a = assess(
                        st.last_reading, st.last_ts, r,
                        max_power_kw=info.max_power_kw if info else None,
                        multiplier=info.multiplier if info else Decimal(1), margin=self.margin,
                    )
                    if a.verdict is Verdict.SKIP:
                        out.skipped += 1
                        continue
                    dirty[st.meter_id] = st
                    if a.verdict is Verdict.BASELINE:
                        self.take_baseline(st, r, now, baselines)
                    elif a.verdict is Verdict.HOLD:
                        self.hold(s, st, r, a, now)
                        out.holds.append(HoldEvent(st.meter_id, a.kind, a.detail))
                    else:
                        row = self.charge(st, account, r.value, r.ts, r.registers, info, timelines, usage, now, raw=True)
                        if row is not None:
                            ledger.append(tuple(map(row.get, LEDGER_KEYS)))
                            touched.add(account.id)
                            out.billed += 1
                        else:
                            out.skipped += 1
        if baselines:
            # one statement for the batch: after accounts opened without a reading, the first poll
            # of every meter is a baseline, and a round trip each held the write lock for seconds
            await s.execute(SEGMENT_BASELINE_UPDATE, baselines)
        self.write_usage(s, usage)
        for account_id in touched:
            account = accounts[account_id]
            thresholds = thresholds_of(account)  # read once for the level and the view
            self.update_level(account, credited=False, thresholds=thresholds)
            out.accounts[account_id] = account_view(account, thresholds)
        moved: list[tuple[Any, ...]] = []
        full: list[tuple[Any, ...]] = []
        for st in dirty.values():
            if not isinstance(st, Row):
                continue  # an ORM object (a meter seen for the first time): the unit of work writes it
            if st.hold_kind is None and st.hold_ts is None and st.hold_reading is None and st.hold_since is None:
                moved.append((st.meter_id, st.last_reading, st.last_ts, st.last_registers, st.updated_at))
            else:
                full.append((st.meter_id, *(getattr(st, c) for c in STATE_COLUMNS)))
        await STATE_CURSOR_UPDATE.execute(s, moved)
        await STATE_UPDATE.execute(s, full)
        await ACCOUNT_UPDATE.execute(s, [(a.id, *(getattr(a, c) for c in ACCOUNT_COLUMNS)) for a in (accounts[i] for i in touched)])
        return out

    # -- pieces, also used by the engine's operations (close, replacement, review) ---------------
    def charge(
        self,
        st: MeterState,
        account: Account,
        value: Decimal,
        ts: dt.datetime,
        registers: dict[str, Decimal] | None,
        info: MeterInfo | None,
        timelines: dict[str, TariffTimeline],
        usage: dict[tuple[int, str], dict[str, CycleUsage]],
        now: dt.datetime,
        *,
        reason: str = "",
        detail: dict[str, Any] | None = None,
        raw: bool = False,
    ) -> dict[str, Any] | None:
        """Price and post the consumption from the cursor to ``value``; move the cursor.

        Returns the ledger row, or None when the account has no tariff for this commodity
        (the cursor then stays, and the consumption is billed once a tariff is assigned).
        With ``raw`` (and no extra ``detail``) the row's detail is its JSON text
        (:class:`scada.db.bulk.RawJSON`, for a bulk statement), not a dict.
        """
        assert st.last_reading is not None and st.last_ts is not None
        commodity = info.kind if info else "electricity"
        tariff_id = account.electricity_tariff_id if commodity == "electricity" else account.water_tariff_id
        timeline = timelines.get(tariff_id) if tariff_id else None
        if timeline is None:
            if (account.id, commodity) not in self._warned:
                self._warned.add((account.id, commodity))
                log.warning("no tariff: consumption waits", extra={"account": account.id, "room": account.room_id, "commodity": commodity})
            return None
        multiplier = info.multiplier if info else _ONE
        with exact():
            delta = value - st.last_reading
            quantity = delta * multiplier
            periods = self._period_quantities(st, registers, delta, quantity, multiplier) if registers else None
        cycles = usage.get((account.id, commodity))
        direct = price_direct(timeline, st.last_ts, ts, quantity, periods) if raw and not detail and periods is not None else None
        info_detail: Any
        if direct is not None:
            # the common case (registers, one time-of-use version, no tiers): no Line and Quote
            # objects, the detail straight as text (the same as below: test_detail_text.py)
            _version, cost, items = direct
            added: dict[str, Decimal] = {}
            info_detail = self._direct_text(items, multiplier)
        else:
            quote: Quote = price_consumption(
                timeline, self.tz, st.last_ts, ts, quantity, registers=periods,
                cycle_usage={k: u.quantity for k, u in cycles.items()} if cycles else None,
            )
            cost, added = quote.total, quote.usage_added
            lines = quote.lines
            several = len(lines) > 1 and any(ln.version != lines[0].version for ln in lines)
            if raw and not detail:
                info_detail = self._detail_text(quote, several, periods, multiplier)
            else:
                info_detail = self._detail_dict(quote, several, periods, multiplier, detail)
        amount, account.remainder = self.rounding.carry(account.remainder, cost)
        row = entry_row(
            account, "deduction", -amount, ENGINE, now, reason=reason or "consumption",
            idem_key=f"reading:{st.meter_id}:{st.segment}:{format(value.normalize(), 'f')}",
            meter_id=st.meter_id, segment=st.segment, reading_from=st.last_reading, reading_to=value,
            from_ts=st.last_ts, reading_ts=ts, quantity=quantity, cost=cost, tariff_id=tariff_id,
            detail=info_detail, channel=None, reference=None, reverses_id=None,
        )
        if added and cycles is None:
            cycles = usage[(account.id, commodity)] = {}
        for key, q in added.items():
            assert cycles is not None
            u = cycles.get(key)
            if u is None:
                u = cycles[key] = CycleUsage(account_id=account.id, commodity=commodity, cycle=key, quantity=Decimal(0))
                u._new = True  # type: ignore[attr-defined]
            with exact():
                u.quantity = u.quantity + q
        if isinstance(st, Row):  # the batch path: the cursor's registers go out as text
            text = registers_text(registers)
            if text is not None and registers is not None:
                self._remember_registers(st.meter_id, text, registers)
            st.last_registers = text
        else:
            st.last_registers = registers_json(registers)
        st.last_reading, st.last_ts = value, ts
        st.updated_at = now
        return row

    def _remember_registers(self, meter_id: str, text: str, registers: dict[str, Decimal]) -> None:
        memo = self._cursor_registers
        if len(memo) > 200_000 and meter_id not in memo:
            memo.clear()  # bounded: a site's meters, with room for replacements
        memo[meter_id] = (text, registers)

    def _last_registers(self, st: MeterState) -> dict[str, Decimal] | None:
        data = st.last_registers
        if isinstance(data, str):  # read as text (STATES_BY_ID) or written as text by this batch
            hit = self._cursor_registers.get(st.meter_id)
            if hit is not None and hit[0] == data:
                return hit[1]
            data = json.loads(data)
        return _registers(data)

    @staticmethod
    def _detail_dict(
        quote: Quote, several: bool, periods: dict[str, Decimal] | None, multiplier: Decimal, detail: dict[str, Any] | None
    ) -> dict[str, Any]:
        info_detail: dict[str, Any] = {"lines": [ln.compact(version=several) for ln in quote.lines]}
        if quote.by_registers:
            info_detail["by_registers"] = True
        elif periods is not None:
            # the meter's period registers, kept so that a re-pricing under another (time-of-use)
            # version starts from the same readings the live deduction had
            info_detail["registers"] = {k: plain(v) for k, v in periods.items()}
        if multiplier != 1:
            info_detail["multiplier"] = format(multiplier, "f")
        if detail:
            info_detail.update(detail)
        return info_detail

    def _direct_text(self, items: list[DirectLine], multiplier: Decimal) -> RawJSON:
        """:meth:`_detail_text` of the quote :func:`price_direct`'s lines stand for (energy lines
        of one version with their period, priced from the registers)."""
        name = _json_name
        out = '{"lines": [' + ", ".join(
            f'{{"quantity": "{plain(q)}", "price": "{self._plain_price(price)}", "amount": "{plain(amount)}", "period": {name(period)}}}'
            for period, q, price, amount in items
        ) + '], "by_registers": true'
        if multiplier != 1:
            out += f', "multiplier": "{format(multiplier, "f")}"'
        return RawJSON(out + "}")

    def _detail_text(self, quote: Quote, several: bool, periods: dict[str, Decimal] | None, multiplier: Decimal) -> RawJSON:
        """The detail :meth:`charge` builds as a dict, as the text ``json.dumps`` makes of it
        (the same keys in the same order; ``tests/scada/prepaid/test_detail_text.py`` holds
        the two equal), without building the dict and encoding it per reading."""
        name = _json_name
        parts = []
        for ln in quote.lines:
            text = (f'{{"quantity": "{plain(ln.quantity)}", "price": "{self._plain_price(ln.unit_price)}", '
                    f'"amount": "{plain(ln.amount)}"')
            if ln.period is not None:
                text += f', "period": {name(ln.period)}'
            if ln.kind != "energy":
                text += f', "kind": {json.dumps(ln.kind)}, "block": {json.dumps(ln.block)}, "cycle": {json.dumps(ln.cycle)}'
            if several:
                text += f', "version": {json.dumps(ln.version)}'
            parts.append(text + "}")
        out = '{"lines": [' + ", ".join(parts) + "]"
        if quote.by_registers:
            out += ', "by_registers": true'
        elif periods is not None:
            out += ', "registers": {' + ", ".join(f'{name(k)}: "{plain(v)}"' for k, v in periods.items()) + "}"
        if multiplier != 1:
            out += f', "multiplier": "{format(multiplier, "f")}"'
        return RawJSON(out + "}")

    def _plain_price(self, price: Decimal) -> str:
        """``plain(price)``, remembered by the price object (a tariff version's prices are the
        same objects from one reading to the next; a definition is never changed)."""
        hit = self._prices.get(id(price))
        if hit is not None and hit[0] is price:
            return hit[1]
        if len(self._prices) > 1000:
            self._prices.clear()
        text = plain(price)
        self._prices[id(price)] = (price, text)
        return text

    def _period_quantities(
        self, st: MeterState, registers: dict[str, Decimal] | None, delta: Decimal, quantity: Decimal, multiplier: Decimal
    ) -> dict[str, Decimal] | None:
        last = self._last_registers(st)
        if not registers or not last or set(registers) != set(last):
            return None
        deltas = {k: registers[k] - last[k] for k in registers}
        if any(d < 0 for d in deltas.values()):
            return None
        total = sum(deltas.values(), Decimal(0))
        if total == delta:
            return {k: d * multiplier for k, d in deltas.items()}
        if total <= 0:
            return None
        # the period registers and the total disagree by a few register steps: the total is
        # what is billed, the registers only say how to split it
        exp = min(_exp(d) for d in deltas.values())
        weights = [int(d.scaleb(-exp)) for d in deltas.values()]
        return dict(zip(deltas, allocate(quantity, weights), strict=False))

    async def set_baseline(self, s: AsyncSession, st: MeterState, r: Reading, now: dt.datetime) -> None:
        """``r`` is the meter's first reading in its segment: billing starts from it."""
        pending: list[dict[str, Any]] = []
        self.take_baseline(st, r, now, pending)
        await s.execute(SEGMENT_BASELINE_UPDATE, pending)

    @staticmethod
    def take_baseline(st: MeterState, r: Reading, now: dt.datetime, pending: list[dict[str, Any]]) -> None:
        """Move the cursor to ``r`` and add the segment's baseline to ``pending`` (parameters of
        :data:`SEGMENT_BASELINE_UPDATE`, run in the same transaction before it commits)."""
        st.last_reading, st.last_ts, st.last_registers = r.value, r.ts, registers_json(r.registers)
        st.updated_at = now
        pending.append({"b_meter": st.meter_id, "b_segment": st.segment, "b_value": r.value, "b_ts": r.ts})

    def hold(self, s: AsyncSession, st: MeterState, r: Reading, a: Assessment, now: dt.datetime) -> None:
        st.hold_kind, st.hold_detail = a.kind, a.detail
        st.hold_reading, st.hold_ts, st.hold_registers = r.value, r.ts, registers_json(r.registers)
        st.hold_since = now
        st.updated_at = now
        AuditLog.record(
            s, ENGINE, "meter.review_hold", "meter", st.meter_id, reason=a.detail,
            after={"kind": a.kind, "last_reading": st.last_reading, "reading": r.value, "reading_ts": r.ts},
        )
        log.warning("reading held for review", extra={"meter": st.meter_id, "kind": a.kind, "detail": a.detail})

    def update_level(self, account: Account, *, credited: bool, thresholds: tuple[Threshold, ...] | None = None) -> None:
        if account.mode == "postpaid":
            # a postpaid balance is arrears, not credit: its level is the dunning of its bills
            account.alarm_level = account.dunning_level or 0
            return
        if thresholds is None:
            thresholds = thresholds_of(account)
        computed = level_for(account.balance_minor, thresholds, self.daily_cost(account.id))
        account.alarm_level = next_level(account.alarm_level, computed, credited=credited)

    # -- loading ---------------------------------------------------------------------------------
    async def _states(self, s: AsyncSession, ids: Iterable[str], now: dt.datetime) -> dict[str, Any]:
        ids = list(ids)
        keys = STATES_BY_ID.names
        states: dict[str, Any] = {st.meter_id: st for st in (Row.of(keys, r) for r in await STATES_BY_ID.rows(s, ids))}
        missing = [m for m in ids if m not in states]
        if missing:
            states.update(await self._discover(s, missing, now))
        return states

    async def _discover(self, s: AsyncSession, meter_ids: list[str], now: dt.datetime) -> dict[str, MeterState]:
        """Meters seen for the first time in a room with an open account: start billing them
        from their first reading (a meter that replaced another: from its initial reading)."""
        infos = {m: self.meters.meter(m) for m in meter_ids}
        rooms = {i.room_id for i in infos.values() if i is not None and i.room_id and i.active and i.role == "tenant"}
        if not rooms:
            return {}
        open_accounts = {
            a.open_room_id: a.id for a in (await s.scalars(select(Account).where(Account.open_room_id.in_(rooms)))).all()
        }
        out: dict[str, MeterState] = {}
        for meter_id, info in infos.items():
            if info is None or info.room_id not in open_accounts or not info.active or info.role != "tenant":
                continue
            replaced = self.meters.predecessor(meter_id) is not None
            st = new_state(s, meter_id, open_accounts[info.room_id], now, segment=1,
                           baseline=info.initial_reading if replaced else None, baseline_ts=now if replaced else None,
                           reason="replacement meter" if replaced else "meter added to the room")
            out[meter_id] = st
            log.info("billing a new meter", extra={"meter": meter_id, "room": info.room_id})
        if out:
            await s.flush()  # the rows exist before the batch's own statements touch them
        return out

    async def _accounts(self, s: AsyncSession, ids: set[int | None]) -> dict[int, Any]:
        wanted = sorted(i for i in ids if i is not None)
        if not wanted:
            return {}
        keys = ACCOUNTS_BY_ID.names
        return {a.id: a for a in (Row.of(keys, r) for r in await ACCOUNTS_BY_ID.rows(s, wanted))}

    async def load_usage(
        self, s: AsyncSession, accounts: dict[int, Account], readings: Sequence[Reading], states: dict[str, MeterState]
    ) -> dict[tuple[int, str], dict[str, CycleUsage]]:
        if not accounts:
            return {}
        keys: set[str] = set()
        for r in readings:
            for t in (r.ts, states[r.meter_id].last_ts if r.meter_id in states else None):
                if t is not None:
                    day = t.astimezone(self.tz).date()
                    keys.add(cycle_key("monthly", day))
                    keys.add(cycle_key("yearly", day))
        rows = (await s.scalars(
            select(CycleUsage).where(CycleUsage.account_id.in_(list(accounts)), CycleUsage.cycle.in_(sorted(keys)))
        )).all()
        out: dict[tuple[int, str], dict[str, CycleUsage]] = {}
        for u in rows:
            out.setdefault((u.account_id, u.commodity), {})[u.cycle] = u
        return out

    def write_usage(self, s: AsyncSession, usage: dict[tuple[int, str], dict[str, CycleUsage]]) -> None:
        for cycles in usage.values():
            for u in cycles.values():
                if getattr(u, "_new", False):
                    s.add(u)
                    u._new = False  # type: ignore[attr-defined]


# Batches read and write meter states and accounts with Core statements (one executemany per
# table, compiled once: scada.db.bulk), not through the ORM's unit of work: at thousands of
# readings per transaction the ORM's bookkeeping costs more than the SQL. Operations on single
# accounts use ORM objects; the pieces above work on either (they only read and set attributes).
STATE_COLUMNS = ("last_reading", "last_ts", "last_registers", "hold_kind", "hold_detail", "hold_reading", "hold_ts",
                 "hold_registers", "hold_since", "updated_at")
CURSOR_COLUMNS = ("last_reading", "last_ts", "last_registers", "updated_at")
ACCOUNT_COLUMNS = ("balance_minor", "remainder", "alarm_level", "updated_at")
LEDGER_KEYS = tuple(c.name for c in LedgerEntry.__table__.columns if c.name != "id")

_LEDGER_TURN = 64  # readings priced between two looks at the ledger's parts (StreamedInsert.turn)
_state_table = cast(Table, MeterState.__table__)
_account_table = cast(Table, Account.__table__)
LEDGER_INSERT = bulk_insert(cast(Table, LedgerEntry.__table__), LEDGER_KEYS)
# a meter without a hold only moves its cursor: the narrower statement binds less per row
STATE_CURSOR_UPDATE = bulk_update(_state_table, "meter_id", CURSOR_COLUMNS)
_segment_table = cast(Table, MeterSegment.__table__)
# a Core statement (the ORM's "evaluate" synchronisation would scan the whole session); only a
# segment without a baseline takes one
SEGMENT_BASELINE_UPDATE = (
    update(_segment_table)
    .where(_segment_table.c.meter_id == bindparam("b_meter"), _segment_table.c.segment == bindparam("b_segment"),
           _segment_table.c.baseline.is_(None))
    .values(baseline=bindparam("b_value"), baseline_ts=bindparam("b_ts"))
)
STATE_UPDATE = bulk_update(_state_table, "meter_id", STATE_COLUMNS)
ACCOUNT_UPDATE = bulk_update(_account_table, "id", ACCOUNT_COLUMNS)


class _JSONText(TypeDecorator[RawJSON]):
    """A JSON column read as its stored text (``CAST(... AS TEXT)``), as :class:`RawJSON`: a
    bulk statement writes it back unchanged, and :meth:`Biller._last_registers` decodes it only
    when it is not the text the batch path wrote last."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> RawJSON | None:
        return None if value is None else RawJSON(value)


def columns_as_text(table: Table, as_text: tuple[str, ...]) -> list[ColumnElement[Any]]:
    """``table``'s columns, the JSON columns named in ``as_text`` read as their text (``json``
    keeps its text as written on PostgreSQL, SQLite stores text), as :class:`RawJSON`."""
    return [sql_cast(c, _JSONText()).label(c.name) if c.name in as_text else c for c in table.columns]


def _keyed(table: Table, key: str, order: bool, as_text: tuple[str, ...] = ()) -> KeyedRead:
    """A batch's rows of ``table`` by their ``key`` values, locked for the transaction
    (:class:`scada.db.bulk.KeyedRead`: one array of keys on PostgreSQL, one JSON array each way
    on SQLite, where rows one at a time from the driver's thread waited seconds on a busy
    server). The JSON columns named in ``as_text`` are read as their text
    (:func:`columns_as_text`)."""
    return KeyedRead(columns_as_text(table, as_text), table.c[key], order=order)


STATES_BY_ID = _keyed(_state_table, "meter_id", order=False, as_text=("last_registers",))
# the thresholds as text: ledger.thresholds_from_column decodes each distinct text once
ACCOUNTS_BY_ID = _keyed(_account_table, "id", order=True, as_text=("thresholds",))


class Row:
    """A table row as a plain object with attributes (for the batch path)."""

    def __init__(self, mapping: Any) -> None:
        self.__dict__.update(mapping)

    def __getattr__(self, name: str) -> Any:  # only for names the row has not: typing says "any column"
        raise AttributeError(name)

    @classmethod
    def of(cls, keys: Sequence[str], values: Sequence[Any]) -> Row:
        row = cls.__new__(cls)
        row.__dict__ = dict(zip(keys, values, strict=True))
        return row


def new_state(
    s: AsyncSession,
    meter_id: str,
    account_id: int,
    now: dt.datetime,
    *,
    segment: int,
    baseline: Decimal | None,
    baseline_ts: dt.datetime | None,
    reason: str,
    registers: dict[str, Decimal] | None = None,
) -> MeterState:
    st = MeterState(
        meter_id=meter_id, account_id=account_id, segment=segment, last_reading=baseline,
        last_ts=baseline_ts if baseline is not None else None, last_registers=registers_json(registers),
        hold_kind=None, hold_detail="", retired=False, updated_at=now,
    )
    s.add(st)
    s.add(MeterSegment(
        meter_id=meter_id, segment=segment, account_id=account_id, baseline=baseline,
        baseline_ts=baseline_ts if baseline is not None else None, started_at=now, reason=reason,
    ))
    return st
