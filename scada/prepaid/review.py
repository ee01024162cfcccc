"""Register review and meter replacement: what an operator does when a reading is held.

A held reading bills nothing until an operator acts: ``accept`` bills up to it (across the
wrap, for a rollover: up to the wrap in the old segment, then from zero in a new one); ``reset``
bills up to the register's last value before the reset (as read off the meter) and starts a
new segment from the new baseline. A replacement bills the old meter's final reading, records
the new meter in the registry and starts billing it from its initial reading; repeating it
after a crash is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update

from scada.db import Database
from scada.prepaid.deduction import Biller, new_state, registers_json
from scada.prepaid.errors import PrepaidError
from scada.prepaid.ledger import AccountView, account_view
from scada.prepaid.models import Account, LedgerEntry, MeterSegment, MeterState
from scada.prepaid.readings import Reading
from scada.prepaid.tariff_store import TariffStore
from scada.site.assets import AssetRegistry
from scada.users.audit import Actor, AuditLog
from tags import utcnow

__all__ = ["HoldView", "MeterReview"]


@dataclass(frozen=True)
class HoldView:
    meter_id: str
    room_id: str | None
    kind: str
    detail: str
    last_reading: Decimal | None
    last_ts: dt.datetime | None
    reading: Decimal | None
    reading_ts: dt.datetime | None
    since: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "meter": self.meter_id, "room": self.room_id, "kind": self.kind, "detail": self.detail,
            "last_reading": format(self.last_reading, "f") if self.last_reading is not None else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "reading": format(self.reading, "f") if self.reading is not None else None,
            "reading_ts": self.reading_ts.isoformat() if self.reading_ts else None,
            "since": self.since.isoformat() if self.since else None,
        }


class MeterReview:
    def __init__(
        self,
        db: Database,
        tariffs: TariffStore,
        biller: Biller,
        assets: AssetRegistry,
        *,
        lock: asyncio.Lock,
        hold_cleared: Callable[[str], None],
        account_changed: Callable[[AccountView], None],
    ) -> None:
        self.db = db
        self.tariffs = tariffs
        self.biller = biller
        self.assets = assets
        self.lock = lock  # the engine's billing lock: cursors move under it
        self.hold_cleared = hold_cleared
        self.account_changed = account_changed

    async def holds(self) -> list[HoldView]:
        async with self.db.reads() as s:
            rows = (await s.scalars(select(MeterState).where(MeterState.hold_kind.is_not(None)).order_by(MeterState.meter_id))).all()
        snap = self.assets.snapshot
        return [
            HoldView(st.meter_id, snap.meters[st.meter_id].room_id if st.meter_id in snap.meters else None, st.hold_kind or "",
                     st.hold_detail, st.last_reading, st.last_ts, st.hold_reading, st.hold_ts, st.hold_since)
            for st in rows
        ]

    async def resolve_hold(
        self,
        meter_id: str,
        action: str,
        *,
        actor: Actor,
        reason: str,
        final_reading: Decimal | None = None,
        new_baseline: Decimal | None = None,
    ) -> AccountView | None:
        """Resolve a review hold: ``accept`` bills up to the held reading (across the wrap for a
        rollover); ``reset`` bills up to ``final_reading`` (default: nothing more) and starts a
        new segment from ``new_baseline`` (default: the held reading)."""
        if action not in ("accept", "reset"):
            raise PrepaidError(f"action: 'accept' or 'reset', found {action!r}", status=422, field="action")
        if not reason.strip():
            raise PrepaidError("reason: resolving a review hold needs a reason", status=422, field="reason")
        now = utcnow()
        info = self.assets.snapshot.meters.get(meter_id)
        async with self.lock:
            async with self.db.transaction() as s:
                st = await s.scalar(select(MeterState).where(MeterState.meter_id == meter_id).with_for_update())
                if st is None or st.hold_kind is None:
                    raise PrepaidError(f"meter {meter_id} has no reading held for review", status=404)
                if st.account_id is None:
                    raise PrepaidError(f"meter {meter_id} is not billed to an open account")
                a = await s.scalar(select(Account).where(Account.id == st.account_id).with_for_update())
                assert a is not None and st.hold_reading is not None and st.hold_ts is not None and st.last_reading is not None
                timelines = await self.tariffs.timelines(s)
                usage = await self.biller.load_usage(s, {a.id: a}, [Reading(meter_id, st.hold_reading, st.hold_ts)], {meter_id: st})
                held = (st.hold_kind, st.hold_detail, st.hold_reading, st.hold_ts)
                kind, detail, value, ts = held
                registers = {k: Decimal(v) for k, v in st.hold_registers.items()} if st.hold_registers else None
                rows: list[dict[str, Any]] = []
                if action == "accept":
                    if kind == "backwards":
                        raise PrepaidError("a register that went backwards cannot be accepted: record a reset (or a replacement)")
                    if kind == "jump":
                        row = self.biller.charge(st, a, value, ts, registers, info, timelines, usage, now, reason=f"accepted after review: {reason}")
                        if row:
                            rows.append(row)
                    else:  # rollover: bill up to the wrap in this segment, then from 0 in a new one
                        modulus = _modulus(detail)
                        from_ts = st.last_ts
                        row = self.biller.charge(st, a, modulus, ts, None, info, timelines, usage, now, reason=f"rollover at {modulus}: {reason}")
                        if row:
                            rows.append(row)
                        await self._new_segment(s, st, a.id, Decimal(0), from_ts, now, f"rollover at {modulus}")
                        row = self.biller.charge(st, a, value, ts, registers, info, timelines, usage, now, reason=f"after rollover: {reason}")
                        if row:
                            rows.append(row)
                else:
                    final = final_reading if final_reading is not None else st.last_reading
                    if final < st.last_reading:
                        raise PrepaidError(f"final_reading: {final} is below the last billed reading {st.last_reading}", status=422, field="final_reading")
                    if final > st.last_reading:
                        row = self.biller.charge(st, a, final, ts, None, info, timelines, usage, now, reason=f"final reading before reset: {reason}")
                        if row:
                            rows.append(row)
                    baseline = new_baseline if new_baseline is not None else value
                    await self._new_segment(s, st, a.id, baseline, ts, now, f"register reset: {reason}", registers if new_baseline is None else None)
                if rows:
                    await s.execute(insert(LedgerEntry), rows)
                self.biller.write_usage(s, usage)
                st.hold_kind, st.hold_detail, st.hold_reading, st.hold_ts, st.hold_registers, st.hold_since = None, "", None, None, None, None
                st.updated_at = now
                self.biller.update_level(a, credited=False)
                AuditLog.record(s, actor, f"meter.review_{action}", "meter", meter_id, reason=reason,
                                before={"kind": kind, "detail": detail, "reading": value},
                                after={"last_reading": st.last_reading, "segment": st.segment, "billed": len(rows)})
                view = account_view(a)
        self.hold_cleared(meter_id)
        self.account_changed(view)
        return view

    async def _new_segment(
        self,
        s: Any,
        st: MeterState,
        account_id: int,
        baseline: Decimal,
        ts: dt.datetime | None,
        now: dt.datetime,
        reason: str,
        registers: dict[str, Decimal] | None = None,
    ) -> None:
        await s.execute(
            update(MeterSegment)
            .where(MeterSegment.meter_id == st.meter_id, MeterSegment.segment == st.segment)
            .values(final_reading=st.last_reading, ended_at=now)
        )
        st.segment += 1
        st.last_reading, st.last_ts, st.last_registers = baseline, ts, registers_json(registers)
        s.add(
            MeterSegment(
                meter_id=st.meter_id,
                segment=st.segment,
                account_id=account_id,
                baseline=baseline,
                baseline_ts=ts,
                started_at=now,
                reason=reason,
            )
        )

    async def replace_meter(
        self,
        old_id: str,
        new_id: str,
        *,
        actor: Actor,
        reason: str,
        final_reading: Decimal,
        initial_reading: Decimal = Decimal(0),
        unit_id: int | None = None,
    ) -> AccountView | None:
        """Bill the old meter's final reading, record the replacement in the registry, start
        billing the new meter from its initial reading. Safe to repeat after a crash."""
        if not reason.strip():
            raise PrepaidError("reason: a replacement needs a reason", status=422, field="reason")
        snap = self.assets.snapshot
        old = snap.meters.get(old_id)
        if old is None:
            raise PrepaidError(f"no meter {old_id!r}", status=404)
        if old.active:  # what the registry would refuse is refused before anything is billed
            await self.assets.check_replace(old_id, new_id, unit_id)
        now = utcnow()
        view: AccountView | None = None
        async with self.lock:
            async with self.db.transaction() as s:
                st = await s.scalar(select(MeterState).where(MeterState.meter_id == old_id).with_for_update())
                account_id = st.account_id if st is not None else None
                if st is not None and not st.retired and st.account_id is not None:
                    a = await s.scalar(select(Account).where(Account.id == st.account_id).with_for_update())
                    assert a is not None
                    if st.last_reading is not None and final_reading < st.last_reading:
                        raise PrepaidError(
                            f"final_reading: {final_reading} is below the last billed reading {st.last_reading}",
                            status=422,
                            field="final_reading",
                        )
                    if st.last_reading is not None and final_reading > st.last_reading:
                        timelines = await self.tariffs.timelines(s)
                        usage = await self.biller.load_usage(
                            s, {a.id: a}, [Reading(old_id, final_reading, now)], {old_id: st}
                        )
                        row = self.biller.charge(
                            st,
                            a,
                            final_reading,
                            max(now, (st.last_ts or now)),
                            None,
                            old,
                            timelines,
                            usage,
                            now,
                            reason=f"final reading, meter replaced: {reason}",
                        )
                        if row:
                            await s.execute(insert(LedgerEntry), [row])
                        self.biller.write_usage(s, usage)
                        self.biller.update_level(a, credited=False)
                    await s.execute(
                        update(MeterSegment)
                        .where(MeterSegment.meter_id == old_id, MeterSegment.segment == st.segment)
                        .values(
                            final_reading=st.last_reading if st.last_reading is not None else final_reading,
                            ended_at=now,
                        )
                    )
                    st.retired, st.account_id, st.updated_at = True, None, now
                    st.hold_kind, st.hold_detail = None, ""
                    AuditLog.record(
                        s,
                        actor,
                        "meter.final_reading",
                        "meter",
                        old_id,
                        reason=reason,
                        after={"final_reading": final_reading, "replaced_by": new_id, "account": a.id},
                    )
                    view = account_view(a)
            if old.active:
                await self.assets.replace_meter(
                    old_id, new_id, actor, reason=reason, initial_reading=initial_reading, unit_id=unit_id
                )
            elif old.replaced_by != new_id:
                raise PrepaidError(f"meter {old_id} is not active (replaced by {old.replaced_by})")
            if account_id is not None:
                async with self.db.transaction() as s:
                    if await s.get(MeterState, new_id) is None:
                        new_state(
                            s,
                            new_id,
                            account_id,
                            now,
                            segment=1,
                            baseline=initial_reading,
                            baseline_ts=now,
                            reason=f"replaces {old_id}",
                        )
        self.hold_cleared(old_id)
        if view is not None:
            self.account_changed(view)
        return view


def _modulus(detail: str) -> Decimal:
    # the rollover detail says "… a wrap at <modulus> would mean …"
    marker = "a wrap at "
    start = detail.index(marker) + len(marker)
    return Decimal(detail[start:].split(" ", 1)[0])
