"""``scada import-site FILE``: import buildings, floors, rooms and meters from TOML or CSV."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from scada.config import config_from_args
from scada.core.console import out
from scada.db.component import with_database
from scada.db.engine import Database
from scada.site.importer import SiteImportError, import_site_file
from scada.site.profiles import known_profile_names
from scada.users.audit import Actor

__all__ = ["register"]


def cmd_import_site(args: argparse.Namespace) -> int:
    """scada import-site FILE: import or update the asset registry, all or nothing, audited."""
    config = config_from_args(args)

    async def run(db: Database) -> int:
        try:
            result = await import_site_file(
                db, args.file, Actor(getpass.getuser(), "cli"),
                known_links={link.name for link in config.links},
                known_profiles=known_profile_names(config), reason=args.reason or "",
            )
        except SiteImportError as exc:
            for problem in exc.problems:
                sys.stderr.write(problem + "\n")
            sys.stderr.write("nothing was imported\n")
            return 1
        out(result.summary())
        return 0

    return asyncio.run(with_database(config, run))


def register(sub: Any) -> None:
    """Add ``scada import-site`` to the command line."""
    p = sub.add_parser("import-site", help="import buildings, floors, rooms and meters (TOML or CSV)")
    p.add_argument("file")
    p.add_argument("--config")
    p.add_argument("--reason", help="recorded in the audit log")
    p.set_defaults(handler=cmd_import_site)
