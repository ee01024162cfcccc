"""``scada reconcile`` finds every kind of damage, and exits non-zero on it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update

from scada.prepaid.models import Account, LedgerEntry, MeterState
from scada.prepaid.reconcile import reconcile

from .conftest import CASHIER, T0, Site

H = dt.timedelta(hours=1)


async def _busy_account(site: Site) -> None:
    await site.flat_tariff(price="0.77")
    await site.open("R1", opening=5_000)
    r = await site.engine.recharge("R1", 2_000, channel="cash", reference="x", actor=CASHIER)
    await site.feed("E1", [(T0, "1.5"), (T0 + H, "2.25"), (T0 + 2 * H, "4.5")])
    await site.engine.reverse(r.entry.id, actor=CASHIER, reason="wrong room")


async def test_clean_ledger_reconciles(site: Site) -> None:
    await _busy_account(site)
    report = await reconcile(site.db, 2)
    assert report.ok and report.accounts == 1 and report.deductions == 2
    assert report.by_kind == {"opening": 5000, "recharge": 2000, "reversal": -2000, "deduction": -231}


async def test_damage_is_found(site: Site) -> None:
    await _busy_account(site)
    async with site.db.transaction() as s:
        await s.execute(update(Account).values(balance_minor=Account.balance_minor + 1))
        await s.execute(update(MeterState).where(MeterState.meter_id == "E1").values(last_reading=Decimal("4.4")))
    report = await reconcile(site.db, 2)
    problems = [str(m) for m in report.mismatches]
    assert any("entries add up to 47.69 but the balance is 47.70" in p for p in problems), problems
    assert any("last billed reading is 4.4" in p for p in problems), problems
    # repair, so the fixture's own final check passes
    async with site.db.transaction() as s:
        await s.execute(update(Account).values(balance_minor=Account.balance_minor - 1))
        await s.execute(update(MeterState).where(MeterState.meter_id == "E1").values(last_reading=Decimal("4.5")))


async def test_double_billing_is_found(site: Site) -> None:
    await _busy_account(site)
    async with site.db.transaction() as s:
        await s.execute(update(LedgerEntry).where(LedgerEntry.reading_to == Decimal("4.5")).values(reading_from=Decimal("1.5")))
    problems = [str(m) for m in (await reconcile(site.db, 2)).mismatches]
    assert any("bills from 1.5" in p and "previous billed reading is 2.25" in p for p in problems), problems
    async with site.db.transaction() as s:
        await s.execute(update(LedgerEntry).where(LedgerEntry.reading_to == Decimal("4.5")).values(reading_from=Decimal("2.25")))


async def test_cli_exit_codes(site: Site, tmp_path: Path, db_url: str) -> None:
    await _busy_account(site)
    cfg = tmp_path / "scada.toml"
    cfg.write_text(f'[site]\nname = "T"\ntimezone = "Asia/Shanghai"\n[database]\nurl = "{db_url}"\n')

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scada", "reconcile", "--config", str(cfg)], capture_output=True, text=True,
                              timeout=120, env=os.environ.copy())

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert "reconcile: OK" in ok.stdout and "1 account(s), 5 ledger entries, 2 billed readings" in ok.stdout
    async with site.db.transaction() as s:
        await s.execute(update(Account).values(remainder=Decimal("0.1")))
    bad = run()
    assert bad.returncode == 1
    assert "MISMATCH account" in bad.stdout and "carried remainder is 0.1" in bad.stdout
    # exact costs 0.5775 + 1.7325 = 2.31, deducted 0.58 + 1.73 = 2.31: the true remainder is 0
    async with site.db.transaction() as s:
        await s.execute(update(Account).values(remainder=Decimal(0)))
