"""``scada db upgrade``: apply pending migrations to the configured database."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from scada.config import config_from_args
from scada.core.console import out
from scada.db.component import with_database
from scada.db.engine import Database

__all__ = ["register"]


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """scada db upgrade: apply pending migrations and print the revision."""
    config = config_from_args(args)

    async def run(db: Database) -> int:
        out(f"database at {', '.join(sorted(await db.current_revisions()))}")
        return 0

    return asyncio.run(with_database(config, run))


def register(sub: Any) -> None:
    """Add ``scada db`` to the command line."""
    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    q = dbsub.add_parser("upgrade", help="apply pending migrations")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_db_upgrade)
