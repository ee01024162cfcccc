"""The ledger day rollup (``scada.reports.rollup``): the energy report's money read from the
stored days plus the entries not folded yet equals the same money worked out from every entry of
the ledger (``money_rows``, the reference) — on random ledgers folded at random points, with
deductions and reversals (of folded and unfolded deductions) appended after a fold, over ranges
of whole days and ranges with partial days at either edge; after a change of the site's time
zone; with a PostgreSQL writer in flight while the fold runs; and on a database of the previous
release (no rollup tables) upgraded in place with its ledger. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, inspect, select

from scada.db import Database
from scada.prepaid.models import LedgerEntry
from scada.reports import rollup as rollup_module
from scada.reports.config import ReportsConfig
from scada.reports.energy import MONEY, ledger_deductions, money_frame, money_rows
from scada.reports.models import LedgerDay
from scada.reports.models import LedgerRollup as RollupRow
from scada.reports.params import parse_request
from scada.reports.rollup import LedgerRollup
from scada.reports.sources import Sources, meter_grouping

from .test_energy_money import BASE, METERS, ROOMS, SETTINGS, TZ, deduction, sources_on, src  # noqa: F401  (src: the fixture)


def _row(meter: str, minor: int, minute: int, det: Any) -> dict[str, Any]:
    at = BASE + dt.timedelta(minutes=minute)
    return {"account_id": ROOMS.index(METERS[meter]) + 1, "ts": at, "kind": "deduction", "amount_minor": -minor,
            "balance_after_minor": 0, "actor": "engine", "source": "engine", "meter_id": meter, "segment": 1,
            "reading_ts": at, "detail": det}


async def _append(db: Database, items: list[Any], reverse: list[int]) -> list[int]:
    """Deductions (meter, minor units, minute after BASE, detail, -), then reversals of the
    deductions ``reverse`` names; the new deductions' ids."""
    ids = []
    async with db.transaction() as s:
        for meter, minor, minute, det, _ in items:
            ids.append((await s.execute(insert(LedgerEntry).returning(LedgerEntry.id), [_row(meter, minor, minute, det)])).scalar_one())
        for entry_id in reverse:
            original = await s.get(LedgerEntry, entry_id)
            assert original is not None
            await s.execute(insert(LedgerEntry), [{**_row(original.meter_id or "E1", 0, 0, None), "kind": "reversal",
                                                   "amount_minor": -original.amount_minor, "reverses_id": entry_id,
                                                   "meter_id": None, "reading_ts": None, "detail": None}])
    return ids


async def _compare(src: Sources, params: dict[str, str], tz: Any = TZ) -> None:
    """The report's money (rollup and ledger) equals the reference (every entry at once)."""
    request = parse_request("energy", params, tz)
    snap = src.snapshot()
    grouping = await meter_grouping(src.db, snap, request.group)
    water = {m.id for m in snap.meters.values() if m.kind == "water"}
    got = await money_frame(src, request, grouping)
    want = money_rows(await ledger_deductions(src, request), request, grouping.by_member, water)

    def tidy(f: pd.DataFrame) -> pd.DataFrame:
        return f[["label", "group", *MONEY]].astype({m: "int64" for m in MONEY}).sort_values(["label", "group"], ignore_index=True)

    pd.testing.assert_frame_equal(tidy(got), tidy(want))


async def _state(db: Database) -> tuple[int, int, int]:
    """(the rollup's position, the ledger's highest id, stored days)."""
    async with db.reads() as s:
        row = await s.get(RollupRow, 1)
        high = await s.scalar(select(func.coalesce(func.max(LedgerEntry.id), 0)))
        days = await s.scalar(select(func.count()).select_from(LedgerDay))
    return (row.through_id if row else -1), int(high or 0), int(days or 0)


def _params(start: int, end: int, group: str, interval: str) -> dict[str, str]:
    """A range from ``start`` to ``end`` hours after BASE: whole days as dates when both fall on
    midnight, else times with the site's offset (partial days at the edges)."""
    a, b = BASE + dt.timedelta(hours=start), BASE + dt.timedelta(hours=end)
    if a.hour == 0 and b.hour == 0:
        return {"from": a.date().isoformat(), "to": (b.date() - dt.timedelta(days=1)).isoformat(), "group": group, "interval": interval}
    return {"from": a.isoformat(), "to": b.isoformat(), "group": group, "interval": interval}


@SETTINGS
@given(first=st.lists(deduction, max_size=25), later=st.lists(deduction, max_size=12), reverse=st.lists(st.integers(0, 24), max_size=4),
       window=st.integers(1, 7), start=st.sampled_from([0, 24, 5, 30]), hours=st.sampled_from([24, 48, 72, 43, 96]),
       group=st.sampled_from(["room", "meter", "building"]), interval=st.sampled_from(["day", "week"]))
async def test_money_from_the_rollup_and_the_unfolded_entries_equals_the_ledger(
    src: Sources, first: list[Any], later: list[Any], reverse: list[int], window: int, start: int, hours: int, group: str, interval: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rollup_module, "_FOLD_IDS", window)  # several folding transactions, cells spanning them
    fold = LedgerRollup(src.db, TZ)
    params = _params(start, start + hours, group, interval)
    await _compare(src, params)  # never folded: the ledger alone
    ids = await _append(src.db, first, [])
    await fold.fold()
    through, high, _ = await _state(src.db)
    assert through == high
    await _compare(src, params)  # folded: the stored days alone
    # after the fold: new deductions, and reversals of folded ones (they count on the originals' days)
    await _append(src.db, later, sorted({ids[i] for i in reverse if i < len(ids)}))
    await _compare(src, params)  # the stored days and the entries not folded yet
    assert await fold.fold() >= 0
    through, high, _ = await _state(src.db)
    assert through == high
    await _compare(src, params)
    assert await fold.fold() == 0  # nothing new: nothing read


async def test_a_new_time_zone_folds_the_ledger_again(src: Sources) -> None:
    """Days cut in another zone are not used (the report reads the ledger), and the next fold
    starts again in the new zone."""
    items = [("E1", 100 + i, 60 * i + 7, {"lines": [{"amount": f"{i}.5", "period": "peak"}]}, False) for i in range(30)]
    await _append(src.db, items, [])
    await LedgerRollup(src.db, TZ).fold()
    utc = ZoneInfo("UTC")
    moved = Sources(src.db, src.snapshot, None, utc, 2, "CNY", ReportsConfig())
    params = {"from": "2026-05-31", "to": "2026-06-02", "group": "room", "interval": "day"}
    await _compare(moved, params, utc)
    assert await LedgerRollup(src.db, utc).fold() == 30
    async with src.db.reads() as s:
        row = await s.get(RollupRow, 1)
        days = sorted({d for (d,) in (await s.execute(select(LedgerDay.day))).all()})
    assert row is not None and row.timezone == "UTC"
    # BASE is midnight in Shanghai, 16:00 the day before in UTC: the first readings fall on 31 May
    assert days[0] == dt.date(2026, 5, 31)
    await _compare(moved, params, utc)
    await _compare(src, params)  # the old zone's report: the ledger alone again, still right


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_writer_in_flight_is_not_folded_past(db: Database) -> None:
    """PostgreSQL hands out ids before commit: an entry with a lower id can commit after one with
    a higher. The fold waits for the writers in flight (here: gives up the round after its lock
    timeout) instead of moving past the uncommitted entry, which would then never be folded."""
    src = await sources_on(db)
    fold = LedgerRollup(db, TZ, lock_timeout_s=0.5)
    async with db.sessions() as slow:
        await slow.begin()
        await slow.execute(insert(LedgerEntry), [_row("E1", 111, 30, {"lines": [{"amount": "1.11", "period": "peak"}]})])
        await _append(db, [("E2", 222, 40, None, False)], [])  # a higher id, committed first
        assert await fold.fold() == 0  # the round is skipped: the slow writer holds the ledger
        await slow.commit()
    assert await fold.fold() == 2
    through, high, _ = await _state(db)
    assert through == high
    await _compare(src, {"from": "2026-06-01", "to": "2026-06-01", "group": "meter", "interval": "day"})


async def test_the_previous_release_s_ledger_is_folded_after_the_upgrade(db_url: str) -> None:
    """A database at the heads before the reports branch, with deductions and a reversal in its
    ledger, upgrades in place; the first fold takes in every entry and the report's money is the
    ledger's."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from scada.db import async_url
    from scada.db.engine import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    ours = {r.revision for r in script.iterate_revisions("reports@head", "0001") if r.revision != "0001"}
    previous = [h for h in script.get_heads() if h not in ours]
    db = Database(async_url(db_url))
    try:
        async with db.engine.begin() as conn:
            for head in previous:
                await conn.run_sync(lambda c, h=head: command.upgrade(alembic_config(c), h))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "report_ledger_days" not in tables and "prepaid_ledger" in tables
        src = await sources_on(db)
        ids = await _append(db, [("E1", 150, 60 * h + 3, {"lines": [{"amount": "1.5", "period": "valley"}]}, False) for h in range(30)], [])
        await _append(db, [], ids[:2])
        await db.upgrade()  # what the server does at start
        params = {"from": "2026-06-01", "to": "2026-06-02", "group": "room", "interval": "day"}
        await _compare(src, params)
        assert await LedgerRollup(db, TZ).fold() == 32
        through, high, days = await _state(db)
        assert through == high and days == 2
        await _compare(src, params)
    finally:
        await db.dispose()


async def test_the_fold_does_not_block_the_loop_and_keeps_up_in_one_round(src: Sources, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fold of more entries than one transaction takes catches up in one call, in order."""
    monkeypatch.setattr(rollup_module, "_FOLD_IDS", 10)
    await _append(src.db, [("E3", 10 + i, 17 * i, None, False) for i in range(95)], [])
    fold = LedgerRollup(src.db, TZ)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        assert await fold.fold() == 95
    finally:
        ticker.cancel()
    assert ticks > 10
    through, high, _ = await _state(src.db)
    assert through == high
    await _compare(src, {"from": "2026-06-01", "to": "2026-06-02", "group": "meter", "interval": "day"})
