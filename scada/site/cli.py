"""``scada import-site FILE``: import buildings, floors, rooms and meters from TOML or CSV."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from protocols.library import check_profile_file, profile_protocol
from protocols.modbus.profile import ProfileError
from scada.config import config_from_args
from scada.core.console import out
from scada.db.component import with_database
from scada.db.engine import Database
from scada.site.importer import SiteImportError, import_site_file
from scada.site.profiles import known_profile_names, load_profiles
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


def cmd_profiles_list(args: argparse.Namespace) -> int:
    """scada profiles list: every device profile the site may use (shipped and profiles_dir)."""
    library = load_profiles(config_from_args(args))
    out(f"{'profile':24} {'protocol':9} {'kind':12} {'points':>6}  supply  source")
    for name, profile in library.items():
        supply = "yes" if profile.commands else "-"
        out(f"{name:24} {profile_protocol(profile):9} {profile.kind:12} {len(profile.points):>6}  {supply:6}  {profile.source}")
    return 0


def cmd_profiles_check(args: argparse.Namespace) -> int:
    """scada profiles check FILE...: validate profile files; every problem is named."""
    status = 0
    for path in args.file:
        try:
            profile = check_profile_file(path)
        except ProfileError as exc:
            for problem in exc.problems:
                sys.stderr.write(f"{exc.source}: {problem}\n")
            status = 1
            continue
        supply = f", supply control confirmed by {profile.supply_point}" if profile.commands else ""
        out(f"{path}: ok: {profile.name} ({profile_protocol(profile)}, {profile.kind}, {len(profile.points)} points{supply})")
    return status


def register(sub: Any) -> None:
    """Add ``scada import-site`` and ``scada profiles`` to the command line."""
    p = sub.add_parser("profiles", help="device profiles: list them, check a profile file")
    psub = p.add_subparsers(dest="profiles_command", required=True)
    pl = psub.add_parser("list", help="every device profile meters may use")
    pl.add_argument("--config")
    pl.set_defaults(handler=cmd_profiles_list)
    pc = psub.add_parser("check", help="validate profile files (Modbus or DL/T 645); exit 1 on a problem")
    pc.add_argument("file", nargs="+")
    pc.set_defaults(handler=cmd_profiles_check)

    p = sub.add_parser("import-site", help="import buildings, floors, rooms and meters (TOML or CSV)")
    p.add_argument("file")
    p.add_argument("--config")
    p.add_argument("--reason", help="recorded in the audit log")
    p.set_defaults(handler=cmd_import_site)
