"""``scada simulate``: a stand-alone simulator of synthetic meters.

``scada simulate --meters N --port P`` runs N synthetic meters: meter ``i`` (0-based) is
``SIM-<i+1:05d>``, on port ``P + i // per_port`` (all on free ports with ``--port 0``), unit id
``1 + i % per_port``, profiles taken in turn from ``--profile``. With ``--protocol dlt645`` the
ports are DL/T 645 buses and meter ``i`` has the 12-digit address ``i + 1``
(``000000000001``…; default profile ``dlt645-single-phase``). The HTTP control API is off
unless ``--control-port`` is given; it listens on loopback and takes the token kept in
``<--data-dir>/simulator-control.token`` (the line ``control URL token-file PATH`` says where).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
from pathlib import Path
from typing import Any, Literal

from protocols.library import load_library
from protocols.modbus.sim import MeterSpec, Simulator, TouSchedule
from protocols.modbus.sim.control import MAX_SPEED, TOKEN_FILE, control_token
from protocols.modbus.sim.site import SimLink
from scada.core.console import out

__all__ = ["register"]


async def _simulate(args: argparse.Namespace) -> int:
    profiles = load_library()
    dlt645 = args.protocol == "dlt645"
    names = args.profile or ["dlt645-single-phase" if dlt645 else "acrel-ddsy1352"]
    for name in names:
        if name not in profiles:
            raise SystemExit(f"--profile: unknown device profile {name!r} (known: {', '.join(profiles.names())})")
        if (getattr(profiles[name], "protocol", "modbus") == "dlt645") != dlt645:
            raise SystemExit(f"--profile: {name!r} is not a {args.protocol} profile")
    per_port = args.per_port
    units = -(-args.meters // (max(profiles[n].circuits for n in names) if args.fill_circuits else 1))
    n_ports = (units + per_port - 1) // per_port
    framing: Literal["tcp", "rtu", "dlt645"] = "dlt645" if dlt645 else "rtu" if args.rtu else "tcp"
    links = [SimLink(f"port{k}", (args.port + k) if args.port else 0, framing) for k in range(n_ports)]
    token_file = Path(args.data_dir) / TOKEN_FILE
    token = await asyncio.to_thread(control_token, token_file) if args.control_port is not None else None
    sim = Simulator(
        profiles, links, host=args.host, control_port=args.control_port, speed=args.speed,
        tou=TouSchedule(timezone=args.timezone), seed=args.seed, control_token=token,
    )
    circuits = max(profiles[n].circuits for n in names) if args.fill_circuits else 1
    if circuits > 1 and len(names) > 1:
        raise SystemExit("--fill-circuits: give one multi-circuit --profile")
    for i in range(args.meters):
        profile = profiles[names[i % len(names)]]
        unit = i // circuits  # with --fill-circuits, every circuit of a unit is a meter
        sim.add_meter(MeterSpec(
            f"SIM-{i + 1:05d}", profile.name, f"port{unit // per_port}", 1 + unit % per_port,
            (i % circuits) + 1 if profile.circuits > 1 else None, args.max_power_kw, address=f"{i + 1:012d}" if dlt645 else None,
        ))
    await sim.start()
    try:
        for k, link in enumerate(links):
            count = min(per_port, units - k * per_port)
            if dlt645:
                first = k * per_port + 1
                out(f"dlt645 {link.name} {args.host}:{sim.ports[link.name]} addresses {first:012d}-{first + count - 1:012d}")
            else:
                out(f"modbus {link.name} {args.host}:{sim.ports[link.name]} ({framing}) units 1-{count}")
        if sim.control_url:
            out(f"control {sim.control_url} token-file {token_file}")
        out(f"simulating {args.meters} meters at speed {args.speed:g}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.meters < 1:
        raise SystemExit("--meters: at least 1")
    if not 1 <= args.per_port <= (10**6 if args.protocol == "dlt645" else 247):
        raise SystemExit("--per-port: 1 to 247 unit ids per port")
    if not (math.isfinite(args.speed) and 0 <= args.speed <= MAX_SPEED):
        raise SystemExit(f"--speed: 0 to {MAX_SPEED:g} simulated seconds per second")
    return asyncio.run(_simulate(args))


def register(sub: Any) -> None:
    """Add ``scada simulate`` to the command line."""
    p = sub.add_parser("simulate", help="run a stand-alone meter simulator (Modbus or DL/T 645)")
    p.add_argument("--protocol", choices=["modbus", "dlt645"], default="modbus", help="what the ports speak (default modbus)")
    p.add_argument("--meters", type=int, default=10, help="number of simulated meters (default 10)")
    p.add_argument("--port", type=int, default=5020, help="first Modbus port; 0 binds free ports (default 5020)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--per-port", type=int, default=247, help="meters (unit ids) per port (default 247)")
    p.add_argument("--profile", action="append", help="device profile, repeatable to mix (default acrel-ddsy1352)")
    p.add_argument("--rtu", action="store_true", help="RTU framing over TCP instead of Modbus TCP")
    p.add_argument("--fill-circuits", action="store_true",
                   help="with a multi-circuit --profile, a meter on every circuit of a unit (default: circuit 1 only)")
    p.add_argument("--control-port", type=int, default=None,
                   help="serve the HTTP control API on this loopback port (0: a free one); off by default")
    p.add_argument("--data-dir", default="var/simulate", help="where the control API's token is kept (default var/simulate)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timezone", default="UTC", help="time zone of the TOU schedule (default UTC)")
    p.add_argument("--max-power-kw", type=float, default=8.0, help="rating of each meter (sets its load)")
    p.set_defaults(handler=_cmd_simulate)
