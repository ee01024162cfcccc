"""The ``scada`` command line.

Commands that work on a server's database (``user``, ``import-site``, ``db``) take
``--config FILE``; without it they use the embedded demo configuration (``var/demo``).
Other parts add their commands through :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import watch
from .alarms import cli as alarms_cli
from .prepaid import cli as prepaid_cli
from .config import ConfigError, ScadaConfig, load_config, load_demo_config
from .logs import configure_logging

__all__ = ["COMMANDS", "main", "config_from_args"]

log = logging.getLogger("scada")

Handler = Callable[[argparse.Namespace], Awaitable[int] | int]
# a part registers its sub-commands with a function taking the sub-parsers object
COMMANDS: list[Callable[[Any], None]] = [alarms_cli.register, prepaid_cli.register, watch.register]


def _register_parts() -> None:
    from .simulation import register as simulate

    COMMANDS.append(simulate)


_register_parts()

from . import history_cli  # noqa: E402

COMMANDS.append(history_cli.register)


def config_from_args(args: argparse.Namespace) -> ScadaConfig:
    path = getattr(args, "config", None)
    overrides = args.set or []
    return load_config(path, overrides) if path else load_demo_config(overrides)


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# -- run / demo ----------------------------------------------------------------------------------
async def _serve(config: ScadaConfig, *, demo: bool) -> int:
    from .app import build_runtime

    runtime = build_runtime(config, demo=demo, announce=_out)
    return await runtime.run(ready=lambda: log.info("ready", extra={"site": config.site.name}))


def cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    _setup_logging(args, config)
    return asyncio.run(_serve(config, demo=False))


def cmd_demo(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    _setup_logging(args, config)
    return asyncio.run(_serve(config, demo=True))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file, args.set or [])
    _out(f"{args.file}: OK (site {config.site.name!r}, {len(config.links)} link(s))")
    return 0


# -- database commands ----------------------------------------------------------------------
async def _with_db(config: ScadaConfig, fn: Callable[[Any], Awaitable[int]]) -> int:
    from .foundation import open_database

    db = open_database(config)
    try:
        await db.upgrade()
        return await fn(db)
    finally:
        await db.dispose()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = config_from_args(args)

    async def run(db: Any) -> int:
        _out(f"database at {', '.join(sorted(await db.current_revisions()))}")
        return 0

    return asyncio.run(_with_db(config, run))


def _read_password(env: str = "SCADA_PASSWORD") -> str:
    password = os.environ.get(env)
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit(f"no password: set {env} or run in a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat: "):
        raise SystemExit("passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    from .audit import Actor
    from .auth import AuthError, UserStore

    config = config_from_args(args)
    password = _read_password()

    async def run(db: Any) -> int:
        try:
            user = await UserStore(db).add(
                args.name, args.role, password, Actor(getpass.getuser(), "cli"),
                language=args.language, email=args.email,
            )
        except AuthError as exc:
            raise SystemExit(f"error: {exc}") from None
        _out(f"user {user.name} added with role {user.role.value}")
        return 0

    return asyncio.run(_with_db(config, run))


def cmd_user_list(args: argparse.Namespace) -> int:
    from .auth import UserStore

    config = config_from_args(args)

    async def run(db: Any) -> int:
        for u in await UserStore(db).list():
            _out(f"{u.name:<20} {u.role.value:<12} {'active' if u.active else 'disabled'}")
        return 0

    return asyncio.run(_with_db(config, run))


def cmd_import_site(args: argparse.Namespace) -> int:
    from .audit import Actor
    from .foundation import known_profile_names
    from .siteimport import SiteImportError, import_site_file

    config = config_from_args(args)

    async def run(db: Any) -> int:
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
        _out(result.summary())
        return 0

    return asyncio.run(_with_db(config, run))


# -- parser ---------------------------------------------------------------------------------
def _setup_logging(args: argparse.Namespace, config: ScadaConfig | None = None) -> None:
    level = args.log_level or (config.logging.level if config else "info")
    fmt = args.log_format or (config.logging.format if config else "human")
    configure_logging(level, fmt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scada", description="Prepaid-metering SCADA server")
    parser.add_argument("--log-format", choices=["human", "json"], default=None, help="log line format")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override a config key, e.g. --set hmi.port=9090 --set 'links[0].port=5030' (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a server from a config file")
    p.add_argument("--config", required=True, help="TOML config file")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("demo", help="run the simulated demo site on the embedded defaults")
    p.set_defaults(handler=cmd_demo, config=None)

    p = sub.add_parser("check-config", help="validate a config file and list every problem")
    p.add_argument("file")
    p.set_defaults(handler=cmd_check_config)

    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    q = dbsub.add_parser("upgrade", help="apply pending migrations")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_db_upgrade)

    p = sub.add_parser("user", help="manage users")
    usub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    q = usub.add_parser("add", help="add a user (password from SCADA_PASSWORD or a prompt)")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=["admin", "operator", "cashier", "engineer", "maintenance", "viewer"])
    q.add_argument("--language", default="en", choices=["en", "zh-CN"])
    q.add_argument("--email")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_user_add)
    q = usub.add_parser("list", help="list users")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_user_list)

    p = sub.add_parser("import-site", help="import buildings, floors, rooms and meters (TOML or CSV)")
    p.add_argument("file")
    p.add_argument("--config")
    p.add_argument("--reason", help="recorded in the audit log")
    p.set_defaults(handler=cmd_import_site)

    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler not in (cmd_run, cmd_demo):
        _setup_logging(args)
    try:
        result = args.handler(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{exc.source}: {problem}\n")
        return 2
    except KeyboardInterrupt:
        return 130


# -- parts' commands (imported when the parser is built: they import this module) -----------------
def _opcua_commands(sub: Any) -> None:
    from .opcuacli import register

    register(sub)


COMMANDS.append(_opcua_commands)
