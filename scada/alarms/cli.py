"""``scada alarms list|show|ack|confirm|comment|shelve|unshelve``: the alarm console on the command line.

The commands work on the database (``--config FILE``, the demo's otherwise), so they work
whether or not a server runs. A running server's engine picks their changes up within
``alarms.sync_interval_s`` (every occurrence carries a version; see ``AlarmEngine.sync``).
The command line acts as an administrator (whoever can read the configuration and the
database can do anything), and the audit log records the operating-system user.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from scada.alarms import operations, store
from scada.alarms.alarm import STANDING_STATES, Alarm, alarm_document
from scada.alarms.lifecycle import IllegalTransition
from scada.config import ScadaConfig, config_from_args
from scada.db import Database
from scada.db.component import open_database
from scada.users.audit import Actor

__all__ = ["register"]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _config(args: argparse.Namespace) -> ScadaConfig:
    return config_from_args(args)


def _run(config: ScadaConfig, fn: Callable[[Database], Awaitable[int]]) -> int:
    async def main() -> int:
        db = open_database(config)
        try:
            await db.upgrade()
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _actor() -> Actor:
    return Actor(getpass.getuser(), "cli", "admin")


def _local(ts: datetime | None, tz: tzinfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if ts is not None else "-"


def _row(alarm: Alarm, tz: tzinfo) -> str:
    return (
        f"{alarm.id:>7}  {alarm.priority.label:<8} {alarm.state.value:<14} {alarm.alarm_class:<18} "
        f"{alarm.object_type + ' ' + alarm.object_id:<24} {_local(alarm.raised_at, tz)}  {alarm.message}"
    )


_HEADER = f"{'id':>7}  {'priority':<8} {'state':<14} {'class':<18} {'object':<24} {'raised':<19}  message"


def cmd_list(args: argparse.Namespace) -> int:
    """scada alarms list: the standing (or all) alarms, as a table or JSON."""
    config = _config(args)
    tz = config.site.tz
    if args.history:
        f = store.AlarmFilter(states=None, open_only=False)
    elif args.open:
        f = store.AlarmFilter(states=None, open_only=True)
    else:
        f = store.AlarmFilter(states=STANDING_STATES, open_only=True)
    classes = frozenset(args.classes) if args.classes else None
    unknown = sorted((classes or frozenset()) - set(config.alarms.resolved_classes()))
    if unknown:
        _err(f"error: unknown alarm class {', '.join(unknown)}")
        return 2
    f = store.AlarmFilter(
        states=f.states, open_only=f.open_only, classes=classes, room_id=args.room, meter_id=args.meter, limit=args.limit,
    )

    async def run(db: Database) -> int:
        async with db.sessions() as session:
            alarms = await store.query_alarms(session, f)
        if not args.history:
            alarms.sort(key=store.sort_key)
        if args.json:
            _out(json.dumps([alarm_document(a) for a in alarms], ensure_ascii=False, indent=2))
            return 0
        if not alarms:
            _out("no alarms")
            return 0
        _out(_HEADER)
        for alarm in alarms:
            _out(_row(alarm, tz))
        return 0

    return _run(config, run)


def cmd_show(args: argparse.Namespace) -> int:
    """scada alarms show ID: one occurrence with its transitions."""
    config = _config(args)
    tz = config.site.tz

    async def run(db: Database) -> int:
        async with db.sessions() as session:
            alarm = await store.get_alarm(session, args.id)
            transitions = await store.query_transitions(session, args.id) if alarm else []
        if alarm is None:
            _err(f"error: no alarm {args.id}")
            return 1
        if args.json:
            doc: dict[str, Any] = alarm_document(alarm)
            doc["transitions"] = [
                {"ts": t.ts.isoformat(), "event": t.event, "from": t.from_state.value, "to": t.to_state.value,
                 "actor": t.actor, "reason": t.reason, "value": t.value}
                for t in transitions
            ]
            _out(json.dumps(doc, ensure_ascii=False, indent=2))
            return 0
        _out(_HEADER)
        _out(_row(alarm, tz))
        if alarm.detail:
            _out(f"{'':>9}{alarm.detail}")
        _out("")
        for t in transitions:
            why = f"  ({t.reason})" if t.reason else ""
            _out(f"  {_local(t.ts, tz)}  {t.event:<20} {t.from_state.value:>14} -> {t.to_state.value:<14} by {t.actor}{why}")
        return 0

    return _run(config, run)


Action = Callable[[Database, int], Awaitable[Alarm]]


def _apply(config: ScadaConfig, what: str, action: Action, ids: list[int]) -> int:
    async def run(db: Database) -> int:
        failures = 0
        for alarm_id in ids:
            try:
                alarm = await action(db, alarm_id)
            except (operations.AlarmNotFound, operations.NotPermitted, IllegalTransition, ValueError) as exc:
                _err(f"error: alarm {alarm_id}: {exc}")
                failures += 1
                continue
            _out(f"alarm {alarm.id} {what}: {alarm.alarm_class} {alarm.object_type} {alarm.object_id} is now {alarm.state.value}")
        if len(ids) > failures:
            _out(f"(a running server takes this up within {config.alarms.sync_interval_s:g} s)")
        return 1 if failures else 0

    return _run(config, run)


def _now() -> datetime:
    return datetime.now(UTC)


def cmd_ack(args: argparse.Namespace) -> int:
    """scada alarms ack ID: acknowledge, audited; a running server takes it up at its next sync."""
    config = _config(args)
    classes = config.alarms.resolved_classes()

    async def ack(db: Database, alarm_id: int) -> Alarm:
        return (await operations.acknowledge(db, alarm_id, _actor(), args.reason or "", classes, _now()))[1]

    return _apply(config, "acknowledged", ack, args.ids)


def cmd_confirm(args: argparse.Namespace) -> int:
    """scada alarms confirm ID: confirm acknowledged alarms (they were dealt with), audited."""
    config = _config(args)
    classes = config.alarms.resolved_classes()

    async def confirm(db: Database, alarm_id: int) -> Alarm:
        return (await operations.confirm(db, alarm_id, _actor(), args.reason or "", classes, _now()))[1]

    return _apply(config, "confirmed", confirm, args.ids)


def cmd_comment(args: argparse.Namespace) -> int:
    """scada alarms comment ID TEXT: add a comment to an open alarm, audited."""
    config = _config(args)

    async def comment(db: Database, alarm_id: int) -> Alarm:
        return (await operations.comment(db, alarm_id, _actor(), args.text, _now()))[1]

    return _apply(config, "commented", comment, [args.id])


def cmd_shelve(args: argparse.Namespace) -> int:
    """scada alarms shelve ID: shelve for a while with a reason, audited."""
    config = _config(args)
    classes = config.alarms.resolved_classes()
    limit = timedelta(hours=config.alarms.max_shelve_hours)

    async def shelve(db: Database, alarm_id: int) -> Alarm:
        duration = timedelta(minutes=args.minutes)
        return (await operations.shelve(db, alarm_id, _actor(), args.reason, duration, classes, _now(), max_duration=limit))[1]

    return _apply(config, f"shelved for {args.minutes:g} min", shelve, [args.id])


def cmd_unshelve(args: argparse.Namespace) -> int:
    """scada alarms unshelve ID: end a shelving early, audited."""
    config = _config(args)

    async def unshelve(db: Database, alarm_id: int) -> Alarm:
        return (await operations.unshelve(db, alarm_id, _actor(), args.reason or "", _now()))[1]

    return _apply(config, "unshelved", unshelve, [args.id])


def register(sub: Any) -> None:
    """Add ``scada alarms`` to the command line."""
    p = sub.add_parser("alarms", help="list, acknowledge, confirm, comment and shelve alarms (works on the database)")
    asub = p.add_subparsers(dest="alarms_command", required=True, metavar="ACTION")

    q = asub.add_parser("list", help="the standing alarms, most urgent first")
    which = q.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="every open alarm, also shelved, suppressed, out of service")
    which.add_argument("--history", action="store_true", help="every occurrence, newest first")
    q.add_argument("--class", dest="classes", action="append", metavar="CLASS", help="only this class (repeatable)")
    q.add_argument("--room")
    q.add_argument("--meter")
    q.add_argument("--limit", type=int, default=200)
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_list)

    q = asub.add_parser("show", help="one alarm and every transition it went through")
    q.add_argument("id", type=int)
    q.add_argument("--json", action="store_true")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_show)

    q = asub.add_parser("ack", help="acknowledge alarms")
    q.add_argument("ids", type=int, nargs="+", metavar="ID")
    q.add_argument("--reason", help="why (recorded with the acknowledgement)")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_ack)

    q = asub.add_parser("confirm", help="confirm acknowledged alarms: they were dealt with")
    q.add_argument("ids", type=int, nargs="+", metavar="ID")
    q.add_argument("--reason", help="a comment recorded with the confirmation")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_confirm)

    q = asub.add_parser("comment", help="add a comment to an open alarm")
    q.add_argument("id", type=int)
    q.add_argument("text")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_comment)

    q = asub.add_parser("shelve", help="shelve an alarm for a while, with a reason")
    q.add_argument("id", type=int)
    q.add_argument("--minutes", type=float, required=True)
    q.add_argument("--reason", required=True)
    q.add_argument("--config")
    q.set_defaults(handler=cmd_shelve)

    q = asub.add_parser("unshelve", help="return a shelved alarm to the active list")
    q.add_argument("id", type=int)
    q.add_argument("--reason")
    q.add_argument("--config")
    q.set_defaults(handler=cmd_unshelve)
