"""``scada user add|list|token``: manage the server's users (on its database, without a running server).

``scada user token NAME`` is the way in that no login limit can close: whoever may run the
server's command line (and so read its database) gets an API token for the user directly,
without a password, audited under the operating-system user."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from datetime import timedelta
from typing import Any

from scada.config import config_from_args
from scada.core.console import out, read_password
from scada.db.component import with_database
from scada.db.engine import Database
from scada.users.audit import Actor
from scada.users.auth import AuthError, Role, UserStore

__all__ = ["register"]


def cmd_user_add(args: argparse.Namespace) -> int:
    """scada user add NAME --role ROLE: add a user, audited."""
    config = config_from_args(args)
    password = read_password()

    async def run(db: Database) -> int:
        try:
            user = await UserStore(db).add(
                args.name, args.role, password, Actor(getpass.getuser(), "cli"),
                language=args.language, email=args.email,
            )
        except AuthError as exc:
            raise SystemExit(f"error: {exc}") from None
        out(f"user {user.name} added with role {user.role.value}")
        return 0

    return asyncio.run(with_database(config, run))


def cmd_user_list(args: argparse.Namespace) -> int:
    """scada user list: every user with role and state."""
    config = config_from_args(args)

    async def run(db: Database) -> int:
        for u in await UserStore(db).list():
            out(f"{u.name:<20} {u.role.value:<12} {'active' if u.active else 'disabled'}")
        return 0

    return asyncio.run(with_database(config, run))


def cmd_user_token(args: argparse.Namespace) -> int:
    """scada user token NAME: issue an API token locally (no password, no login limiter), audited."""
    config = config_from_args(args)

    async def run(db: Database) -> int:
        store = UserStore(db)
        user = await store.get(args.name)
        if user is None:
            raise SystemExit(f"error: no user {args.name!r}")
        if not user.active:
            raise SystemExit(f"error: user {args.name!r} is disabled")
        token = await store.issue_token(
            user, "cli", ttl=timedelta(hours=args.ttl_hours), actor=Actor(getpass.getuser(), "cli"),
        )
        out(token)
        return 0

    return asyncio.run(with_database(config, run))


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hours, found {text[:20]!r}") from None
    if not 0 < value <= 24 * 90:
        raise argparse.ArgumentTypeError("expected hours from 0 to 2160 (90 days)")
    return value


def register(sub: Any) -> None:
    """Add ``scada user`` to the command line."""
    p = sub.add_parser("user", help="manage users")
    usub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    q = usub.add_parser("add", help="add a user (password from SCADA_PASSWORD or a prompt)")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=[r.value for r in Role])
    q.add_argument("--language", default="en", choices=["en", "zh-CN"])
    q.add_argument("--email")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_user_add)
    q = usub.add_parser("list", help="list users")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_user_list)
    q = usub.add_parser("token", help="issue an API token for a user, locally (no password; audited)")
    q.add_argument("name")
    q.add_argument("--ttl-hours", type=_hours, default=1.0, help="how long the token is valid (default 1 h)")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_user_token)
