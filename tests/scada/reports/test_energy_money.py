"""The energy report's money columns, read and added up a batch of deductions at a time
(``money_frame``), equal the same figures worked out from every deduction at once
(``money_rows``, the reference), on random ledgers: lines of every period and none, amounts of
up to 24 decimals and of both signs, deductions without lines, reversals, water meters,
readings on either side of local midnight; with batches of three deductions, so that cells
span batches. On SQLite and PostgreSQL. The ledger rows are written straight (as the bench
writes them): they are what the report reads, not a ledger that reconciles, so the prepaid
``site`` fixture (which reconciles after each test) is not used."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from scada.db import Database
from scada.prepaid.models import Account, LedgerEntry
from scada.reports import energy
from scada.reports.config import ReportsConfig
from scada.reports.energy import MONEY, ledger_deductions, money_frame, money_rows
from scada.reports.ledger_money import scaled
from scada.reports.params import parse_request
from scada.reports.sources import Sources, meter_grouping
from scada.site.assets import AssetRegistry
from scada.site.importer import apply_site, parse_toml
from scada.users.audit import Actor

from ..prepaid.conftest import SITE
from .conftest import Reports
from .test_golden import test_daily_energy_by_room_with_tou_split_and_money_crossing_midnight

TZ = ZoneInfo("Asia/Shanghai")

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
METERS = {"E1": "R1", "E2": "R2", "W2": "R2", "E3": "R3"}
BASE = dt.datetime(2026, 6, 1, tzinfo=TZ)
ROOMS = ("R1", "R2", "R3")

amount = st.builds(lambda units, places, neg: ("-" if neg else "") + format(Decimal(units).scaleb(-places), "f"),
                   st.integers(0, 10**14), st.integers(0, 24), st.booleans())
line = st.fixed_dictionaries({"amount": amount, "period": st.sampled_from(["sharp", "peak", "flat", "valley", "tier", None])})
detail = st.one_of(st.none(), st.just({}), st.just({"lines": []}), st.just({"lines": None}),
                   st.builds(lambda ls: {"lines": ls, "by_registers": True}, st.lists(line, min_size=1, max_size=4)))
deduction = st.tuples(st.sampled_from(sorted(METERS)), st.integers(1, 100_000), st.integers(0, 60 * 24 * 4), detail, st.booleans())


async def sources_on(db: Database) -> Sources:
    """Report sources over ``db`` with the test site and an open account per room."""
    await apply_site(db, parse_toml(SITE, "<site>"), Actor("t", "cli"))
    assets = AssetRegistry(db)
    await assets.load()
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    async with db.transaction() as s:
        await s.execute(insert(Account), [{"room_id": r, "open_room_id": r, "state": "open", "opened_at": now, "opened_by": "t",
                                           "thresholds": [], "updated_at": now, "balance_minor": 0} for r in ROOMS])
    return Sources(db, lambda: assets.snapshot, None, TZ, 2, "CNY", ReportsConfig())


@pytest.fixture
async def src(db: Database) -> Sources:
    return await sources_on(db)


async def _ledger(src: Sources, items: list[Any]) -> None:
    """Deductions (meter, minor units, minute after BASE, detail, reversed?), with their reversals."""
    async with src.db.transaction() as s:
        for meter, minor, minute, det, reverse in items:
            at = BASE + dt.timedelta(minutes=minute)
            row = {"account_id": ROOMS.index(METERS[meter]) + 1, "ts": at, "kind": "deduction", "amount_minor": -minor,
                   "balance_after_minor": 0, "actor": "engine", "source": "engine", "meter_id": meter, "segment": 1,
                   "reading_ts": at, "detail": det}
            entry_id = (await s.execute(insert(LedgerEntry).returning(LedgerEntry.id), [row])).scalar_one()
            if reverse:
                await s.execute(insert(LedgerEntry), [{**row, "kind": "reversal", "amount_minor": minor, "reverses_id": entry_id,
                                                       "meter_id": None, "reading_ts": None, "detail": None}])


async def _both(src: Sources, params: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    request = parse_request("energy", params, src.tz)
    snap = src.snapshot()
    grouping = await meter_grouping(src.db, snap, request.group)
    water = {m.id for m in snap.meters.values() if m.kind == "water"}
    saved, energy._MONEY_BATCH = energy._MONEY_BATCH, 3
    try:
        fast = await money_frame(src, request, grouping)
    finally:
        energy._MONEY_BATCH = saved
    slow = money_rows(await ledger_deductions(src, request), request, grouping.by_member, water)

    def tidy(f: pd.DataFrame) -> pd.DataFrame:
        return f[["label", "group", *MONEY]].astype({m: "int64" for m in MONEY}).sort_values(["label", "group"], ignore_index=True)

    return tidy(fast), tidy(slow)


@SETTINGS
@given(items=st.lists(deduction, max_size=30), group=st.sampled_from(["room", "meter", "building"]),
       interval=st.sampled_from(["day", "week"]), first=st.integers(0, 3))
async def test_money_added_up_in_batches_equals_every_deduction_at_once(
    src: Sources, items: list[Any], group: str, interval: str, first: int
) -> None:
    await _ledger(src, items)
    day = (BASE + dt.timedelta(days=first)).date()
    params = {"from": day.isoformat(), "to": (day + dt.timedelta(days=2)).isoformat(), "interval": interval, "group": group}
    fast, slow = await _both(src, params)
    pd.testing.assert_frame_equal(fast, slow)


async def test_history_read_a_slice_of_the_range_at_a_time_gives_the_same_report(reports: Reports, monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden daily energy report with a history query per day (two queries a report, not one)."""
    monkeypatch.setattr(energy, "_HISTORY_CELLS", 1)
    await test_daily_energy_by_room_with_tou_split_and_money_crossing_midnight(reports)
    assert len(reports.queries) == 4  # two reports of two days, a query per day (one a report without the slices)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(amount, st.from_regex(r"-?[0-9]{0,3}(\.[0-9]{0,24})?([eE]-?[0-9])?", fullmatch=True), st.text(max_size=6)))
def test_a_line_amount_is_read_as_decimal_reads_it(text: str) -> None:
    """The digits fast path of ``scaled`` gives what ``int(Decimal(text).scaleb(20))`` gives,
    and text Decimal refuses is refused."""
    try:
        expected: int | None = int(Decimal(text).scaleb(20))
    except (InvalidOperation, ValueError, OverflowError):
        expected = None
    try:
        got: int | None = scaled(text)
    except (InvalidOperation, ValueError, OverflowError):
        got = None
    assert got == expected, text
