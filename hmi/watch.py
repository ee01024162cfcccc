"""``scada watch``: tail live changes from a running server's WebSocket feed in a terminal.

It signs in through the JSON API (``SCADA_TOKEN``, or a user's password from
``SCADA_PASSWORD`` or a prompt), subscribes to the overview (optionally filtered) or to one
room, and prints one line per change. It reconnects with backoff when the connection drops and
resyncs from the server's snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scada.config import config_from_args
from scada.core.console import read_password as _read_password

__all__ = ["register"]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _clock(ts: float | None = None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts if ts is not None else time.time()))


def room_line(r: dict[str, Any]) -> str:
    def v(x: Any) -> str:
        return "-" if x is None else str(x)

    power = "-" if r.get("power") is None else f"{r['power']:.2f} kW"
    return (
        f"{_clock(r.get('ts'))} {r['id']:<14} {r['state']:<10} balance {v(r.get('balance')):>9}  supply {v(r.get('supply')):<9} "
        f"comm {r.get('comm', '-'):<7} power {power:>9}  alarms {v(r.get('active_alarms'))}"
    )


def tag_line(name: str, t: dict[str, Any]) -> str:
    unit = f" {t['unit']}" if t.get("unit") and t.get("value") is not None else ""
    reason = f" ({t['reason']})" if t.get("reason") not in (None, "none") else ""
    return f"{t['server_ts'][11:19]} {name} = {t.get('value')}{unit} [{t['quality']}{reason}]"


class FeedError(Exception):
    pass


async def _token(base: str, user: str, password: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/api/v1/auth/token", json={"user": user, "password": password}) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise FeedError(f"sign-in refused ({r.status}): {body.get('error') if isinstance(body, dict) else body}")
            return str(body["token"])


async def watch(base: str, token: str, subscription: dict[str, Any], *, count: int | None, raw: bool) -> int:
    url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
    seen = 0
    backoff = 1.0
    while True:
        try:
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=64 * 2**20) as ws:
                await ws.send(json.dumps({"type": "subscribe", **subscription}))
                backoff = 1.0
                async for text in ws:
                    msg = json.loads(text)
                    if raw:
                        _out(text if isinstance(text, str) else text.decode())
                    else:
                        _print(msg)
                    if msg.get("type") == "error":
                        return 1
                    if msg.get("type") == "update":
                        seen += 1
                        if count is not None and seen >= count:
                            return 0
        except InvalidStatus as exc:
            raise FeedError(f"the server refused the feed: HTTP {exc.response.status_code}") from None
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 4401:
                raise FeedError("the server ended the session (token revoked or user disabled)") from None
            _out(f"{_clock()} connection lost; reconnecting in {backoff:.0f} s")
        except OSError as exc:
            _out(f"{_clock()} cannot connect ({exc.strerror or exc}); retrying in {backoff:.0f} s")
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


def _print(msg: dict[str, Any]) -> None:
    kind = msg.get("type")
    if kind == "error":
        field = f" ({msg['field']})" if msg.get("field") else ""
        _out(f"error{field}: {msg['message']}")
    elif kind == "snapshot" and msg.get("view") == "room":
        room = msg["room"]
        _out(f"{_clock()} snapshot of room {room['id']}")
        _out(room_line(room))
        for meter in msg.get("meters", []):
            for point, t in meter.get("points", {}).items():
                _out(tag_line(f"{meter['id']}.{point}", t))
    elif kind == "snapshot":
        counts = ", ".join(f"{k} {v}" for k, v in msg.get("counts", {}).items() if v)
        _out(f"{_clock()} snapshot: {len(msg.get('rooms', []))} of {msg.get('total')} rooms ({counts})")
    elif kind == "update":
        for r in msg.get("rooms", []):
            _out(room_line(r))
        if msg.get("room"):
            _out(room_line(msg["room"]))
        for name, t in sorted(msg.get("tags", {}).items()):
            _out(tag_line(name, t))
        if msg.get("counts"):
            _out(f"{_clock()} counts: " + ", ".join(f"{k} {v}" for k, v in msg["counts"].items()))


def cmd_watch(args: argparse.Namespace) -> int:
    if args.url:
        base = args.url.rstrip("/")
    else:
        config = config_from_args(args)
        scheme = "https" if config.hmi.tls_cert else "http"
        base = f"{scheme}://{config.hmi.host}:{config.hmi.port}"
    if args.room:
        subscription: dict[str, Any] = {"view": "room", "room": args.room}
    else:
        flt = {k: v for k, v in (("building", args.building), ("floor", args.floor), ("state", args.state)) if v}
        subscription = {"view": "overview", "filter": flt, "page": 1, "page_size": args.page_size}

    async def run() -> int:
        token = os.environ.get("SCADA_TOKEN") or await _token(base, args.user, _read_password())
        return await watch(base, token, subscription, count=args.count, raw=args.json)

    try:
        return asyncio.run(run())
    except FeedError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        return 130


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="tail live room changes from a running server (WebSocket feed)")
    p.add_argument("--url", help="the server's HMI address (default: from --config, or the demo's)")
    p.add_argument("--config", help="TOML config file whose [hmi] address to use")
    p.add_argument("--user", default="admin", help="sign in as (password from SCADA_PASSWORD or a prompt; SCADA_TOKEN skips it)")
    p.add_argument("--room", help="follow one room: its status and every meter value")
    p.add_argument("--building")
    p.add_argument("--floor")
    p.add_argument("--state", choices=["offline", "off", "alarm", "low", "no_account", "ok", "unknown"])
    p.add_argument("--page-size", type=int, default=1000, help="rooms followed (the first N of the filter)")
    p.add_argument("--count", type=int, help="stop after this many updates")
    p.add_argument("--json", action="store_true", help="print the feed's JSON messages as they come")
    p.set_defaults(handler=cmd_watch)
