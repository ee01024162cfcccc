"""``scada reconcile``: check every account's ledger and every meter's billed readings."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from scada.config import config_from_args
from scada.db.component import open_database
from scada.prepaid.money import format_minor
from scada.prepaid.reconcile import reconcile

__all__ = ["register"]


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")


def cmd_reconcile(args: argparse.Namespace) -> int:
    """``scada reconcile``: check every account's balance against its ledger and billed readings; 1 on a mismatch."""
    config = config_from_args(args)
    minor = config.site.currency_minor_units

    async def run() -> int:
        db = open_database(config)
        try:
            await db.upgrade()
            report = await reconcile(db, minor)
        finally:
            await db.dispose()
        kinds = ", ".join(f"{k} {format_minor(v, minor)}" for k, v in sorted(report.by_kind.items()))
        _out(f"{report.accounts} account(s), {report.entries} ledger entries, {report.deductions} billed readings"
             + (f" ({kinds})" if kinds else ""))
        if report.ok:
            _out("reconcile: OK")
            return 0
        for m in report.mismatches:
            _out(f"MISMATCH {m}")
        _out(f"reconcile: {len(report.mismatches)} mismatch(es)")
        return 1

    return asyncio.run(run())


def register(sub: Any) -> None:
    """Add the prepaid subcommands (``reconcile``) to the CLI's subparsers."""
    p = sub.add_parser("reconcile", help="check every prepaid account and billed reading; non-zero exit on a mismatch")
    p.add_argument("--config", help="TOML config file (default: the demo's)")
    p.set_defaults(handler=cmd_reconcile)
