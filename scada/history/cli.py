"""``scada history query``: interval history on the command line, as CSV or JSON on stdout.

It reads the configured backend directly (the SQLite file or InfluxDB), so it works whether or
not the server runs; rooms, floors and buildings are resolved through the server's database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from historian import BackendError, QueryError
from historian.export import to_csv, to_rows
from scada.config import config_from_args
from scada.db.component import open_database
from scada.history.service import parse_request, query_history
from scada.site.assets import AssetRegistry

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``scada history`` to the command line."""
    p = sub.add_parser("history", help="query the historian")
    hsub = p.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    q = hsub.add_parser(
        "query",
        help="interval history by meter, room, floor or building",
        description="Times are ISO 8601 with an offset (2024-05-01T00:00:00+08:00) or plain dates "
        "(midnight in the site's time zone); the range is [start, end).",
    )
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--meter", action="append", metavar="ID", help="meter id (repeatable, or comma-separated)")
    which.add_argument("--room", action="append", metavar="ID")
    which.add_argument("--floor", action="append", metavar="ID")
    which.add_argument("--building", action="append", metavar="ID")
    q.add_argument("--point", action="append", metavar="POINT", help="energy_total (default), energy_peak, power, ... (repeatable)")
    q.add_argument("--start", required=True)
    q.add_argument("--end", required=True)
    q.add_argument("--interval", help="resample: 15min, 1h, 1d, 1w, 1mo (default: stored intervals)")
    q.add_argument("--agg", choices=["sum", "mean", "min", "max"], help="default: sum for energy and volume, mean otherwise")
    q.add_argument("--format", choices=["csv", "json"], default="csv")
    q.add_argument("--config", help="server config (default: the demo's)")
    q.set_defaults(handler=cmd_history_query)


def cmd_history_query(args: argparse.Namespace) -> int:

    """scada history query: interval history straight from the backend, as CSV or JSON."""
    config = config_from_args(args)
    params: dict[str, list[str]] = {
        "start": [args.start],
        "end": [args.end],
        "point": args.point or [],
        "interval": [args.interval] if args.interval else [],
        "agg": [args.agg] if args.agg else [],
    }
    for selector in ("meter", "room", "floor", "building"):
        params[selector] = getattr(args, selector) or []
    try:
        text = asyncio.run(_query(config, params, args.format))
    except QueryError as exc:
        sys.stderr.write(f"error: --{exc.param}: {exc.message}\n")
        return 2
    except BackendError as exc:
        sys.stderr.write(f"error: the historian backend is not available: {exc}\n")
        return 1
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


async def _query(config: Any, params: dict[str, list[str]], fmt: str) -> str:

    request = parse_request(params, config.site.tz, config.historian.interval_min * 60)
    db = open_database(config)
    try:
        await db.upgrade()
        registry = AssetRegistry(db)
        await registry.load()
    finally:
        await db.dispose()
    frame = await query_history(config, registry.snapshot, request)
    if fmt == "csv":
        return await asyncio.to_thread(to_csv, frame)
    rows = await asyncio.to_thread(to_rows, frame)
    return json.dumps(
        {
            "timezone": config.site.timezone,
            "group_by": request.selector,
            "points": list(request.points),
            "rows": rows,
        },
        ensure_ascii=False,
        indent=1,
    ) + "\n"
