"""Back-office figures: re-pricing billed readings (an adjustment's work), a billing run over
many accounts, and rendering a bill as HTML and PDF.

How it is measured: one process, one event loop, ``time.perf_counter`` (wall) and
``time.process_time`` (CPU) around each case, on this machine's Python; SQLite in WAL mode
(synchronous=FULL) in a temporary folder under build/.

- reprice: ``--readings`` deductions of one account (10-minute readings with period registers,
  a time-of-use tariff with monthly tiers) replayed by :func:`scada.billing.adjustments.reprice`
  with the carried remainder: readings/s (pure arithmetic; the draft runs it in a thread);
- run: ``--accounts`` accounts, each with ``--deductions`` deductions and a per-m² rule on the
  bill, ledger rows written directly; one billing run of the month (posting the rule charges
  and issuing every bill in one transaction): bills/s;
- print: one bill rendered from the built-in template, HTML and PDF (xhtml2pdf), ms each.

Figures are printed and written to build/bench/billing.json. Run: ``python bench/billing/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, update  # noqa: E402

from hmi.i18n import Catalogs  # noqa: E402
from hmi.printing import PrintTemplates, _pdf  # noqa: E402
from scada.billing.adjustments import Deduction, reprice  # noqa: E402
from scada.billing.config import BillingConfig  # noqa: E402
from scada.billing.service import BillingService  # noqa: E402
from scada.config import parse_config  # noqa: E402
from scada.db import Database, async_url  # noqa: E402
from scada.prepaid.accounts import AccountSettings, OpenRequest  # noqa: E402
from scada.prepaid.engine import PrepaidEngine  # noqa: E402
from scada.prepaid.ledger import post  # noqa: E402
from scada.prepaid.models import Account  # noqa: E402
from scada.prepaid.money import Rounding  # noqa: E402
from scada.prepaid.pricing import TariffTimeline, TariffVersion, price_consumption  # noqa: E402
from scada.prepaid.tariff_definition import TariffDefinition  # noqa: E402
from scada.site.assets import AssetRegistry  # noqa: E402
from scada.site.models import Building, Floor, Room, Site  # noqa: E402
from scada.users.audit import Actor  # noqa: E402
from tags import TagDB  # noqa: E402

TZ8 = dt.timezone(dt.timedelta(hours=8))
DEF = TariffDefinition.model_validate({
    "tou": {"periods": [{"name": "peak", "price": "0.9871"}, {"name": "valley", "price": "0.3011"}],
            "seasons": [{"workday": [["00:00", "valley"], ["08:00", "peak"], ["22:00", "valley"]]}]},
    "tiers": {"cycle": "monthly", "blocks": [{"up_to": "200", "adder": "0"}, {"adder": "0.3077"}]},
})


def bench_reprice(n: int) -> dict[str, float]:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    timeline = TariffTimeline([TariffVersion("T", 1, dt.datetime(2025, 1, 1, tzinfo=dt.UTC), DEF)])
    rounding = Rounding(2)
    chain = []
    t = dt.datetime(2026, 3, 1, tzinfo=TZ8)
    r = Decimal(0)
    usage: dict[str, Decimal] = {}
    for i in range(n):
        regs = {"peak": Decimal("0.37") if 8 <= t.hour < 22 else Decimal(0), "valley": Decimal(0) if 8 <= t.hour < 22 else Decimal("0.21")}
        q = sum(regs.values(), Decimal(0))
        quote = price_consumption(timeline, tz, t, t + dt.timedelta(minutes=10), q, registers=regs, cycle_usage=usage)
        for k, v in quote.usage_added.items():
            usage[k] = usage.get(k, Decimal(0)) + v
        billed, r = rounding.carry(r, quote.total)
        chain.append(Deduction(i, t, t + dt.timedelta(minutes=10), q, quote.total, billed, regs, True, "electricity"))
        t += dt.timedelta(minutes=10)
    wall, cpu = time.perf_counter(), time.process_time()
    result = reprice(chain, timeline, tz, rounding, Decimal(0), {})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.difference_minor == 0
    print(f"reprice: {n:,} readings in {wall:.2f} s wall, {cpu:.2f} s CPU: {n / wall:,.0f} readings/s (difference {result.difference_minor})")
    return {"readings": n, "wall_s": wall, "cpu_s": cpu, "readings_per_s": n / wall}


async def bench_run(accounts: int, deductions: int, work: Path) -> dict[str, float]:
    config = parse_config(f'[site]\nname = "B"\ntimezone = "Asia/Shanghai"\n[database]\nurl = "sqlite:///{work / "b.db"}"\n', "<bench>", work)
    db = Database(async_url(config.database.url))
    await db.upgrade()
    actor = Actor("bench", "cli")
    async with db.transaction() as s:
        for row in (Site(id="b", name="B", timezone="Asia/Shanghai"), Building(id="B1", site_id="b", name="B1"),
                    Floor(id="F1", building_id="B1", name="F1", level=1)):
            s.add(row)
            await s.flush()
        s.add_all(Room(id=f"R{i:05d}", floor_id="F1", name=str(i), area_m2=Decimal("42.5")) for i in range(accounts))
    assets = AssetRegistry(db)
    await assets.load()
    engine = PrepaidEngine(config, db, assets, TagDB())
    await engine.load()
    await engine.tariffs.create("T", "T", "electricity", DEF, actor)
    for i in range(accounts):
        await engine.accounts.open(OpenRequest(f"R{i:05d}", AccountSettings(mode="postpaid"), electricity_tariff_id="T"), actor)
    start = dt.datetime(2026, 11, 1, tzinfo=TZ8)
    async with db.transaction() as s:
        await s.execute(update(Account).values(opened_at=start.astimezone(dt.UTC)))
        for a in (await s.scalars(select(Account))).all():
            for k in range(deductions):
                post(s, a, "charge", -123, actor, start + dt.timedelta(hours=k + 1), reason="bench",
                     detail={"basis": "capacity", "value": "1", "price": "1.23"})
    svc = BillingService(BillingConfig(), db, engine, assets)
    await svc.create_rule({"name": "Fee", "kind": "per_area", "amount": "3.5", "period": "monthly", "targets": "all", "settle": "on_bill",
                           "start": dt.date(2026, 11, 1)}, actor)
    svc.clock = lambda: dt.datetime(2026, 12, 1, 1, tzinfo=TZ8)
    wall, cpu = time.perf_counter(), time.process_time()
    result = await svc.run("2026-11", actor=actor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"run: {result.issued} bills ({accounts} accounts × {deductions} entries, {result.posted} charges posted) in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU: {result.issued / wall:,.0f} bills/s")
    bill = result.bills[0]
    engine.close()
    await db.dispose()
    return {"accounts": accounts, "entries_per_account": deductions, "wall_s": wall, "cpu_s": cpu, "bills_per_s": result.issued / wall, "bill": bill}


def bench_print(bill: dict[str, object]) -> dict[str, float]:
    t = Catalogs.load().translator("zh-CN")
    templates = PrintTemplates()
    wall = time.perf_counter()
    html = templates.render("bill.html", t, bill=bill, site="B", currency="CNY", local=str)
    html_s = time.perf_counter() - wall
    wall = time.perf_counter()
    pdf = _pdf(html)
    pdf_s = time.perf_counter() - wall
    print(f"print: bill HTML {html_s * 1000:.1f} ms, PDF {pdf_s * 1000:.0f} ms ({len(pdf):,} bytes, {len(bill['lines']):,} lines)")  # type: ignore[arg-type]
    return {"html_ms": html_s * 1000, "pdf_ms": pdf_s * 1000}


async def main(args: argparse.Namespace) -> None:
    out_dir = ROOT / "build" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"python": platform.python_version(), "machine": platform.machine()}
    figures["reprice"] = bench_reprice(args.readings)
    with tempfile.TemporaryDirectory(prefix="bench-billing-", dir=out_dir) as work:
        run = await bench_run(args.accounts, args.deductions, Path(work))
    bill = run.pop("bill")
    figures["run"] = run
    figures["print"] = bench_print(bill)  # type: ignore[arg-type]
    (out_dir / "billing.json").write_text(json.dumps(figures, indent=1))
    print(f"(python {platform.python_version()}, {platform.machine()}, SQLite) → build/bench/billing.json")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=20_000)
    p.add_argument("--accounts", type=int, default=500)
    p.add_argument("--deductions", type=int, default=30)
    asyncio.run(main(p.parse_args()))
