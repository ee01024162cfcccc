"""The ``scada`` command line.

``run``, ``demo`` and ``check-config`` live here; every other command belongs to its feature
(``scada/<feature>/cli.py``) and is listed in :data:`scada.cli.commands.FEATURES`, which imports
a feature only when one of its commands runs (``scada --help`` imports none). Commands that
work on a server's database take ``--config FILE``; without it they use the embedded demo
configuration (``var/demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Collection
from typing import NoReturn

from scada.cli.commands import FEATURES, Feature
from scada.config import ConfigError, ScadaConfig, config_from_args, load_config, security_problems
from scada.core.console import out
from scada.core.gctune import freeze_startup, tune_for_server, watch_slow_collections
from scada.core.logs import configure_logging

__all__ = ["build_parser", "entry", "main", "parse_args"]

log = logging.getLogger("scada")


async def _serve(config: ScadaConfig, *, demo: bool) -> int:
    from scada.server import build_runtime  # noqa: PLC0415 - the whole server: only `run` and `demo` load it

    tune_for_server()
    runtime = build_runtime(config, demo=demo, announce=out)

    def ready() -> None:
        freeze_startup()
        # from here on: the full collection just before the freeze is deliberate
        watch_slow_collections()
        log.info("ready", extra={"site": config.site.name})

    return await runtime.run(ready=ready)


def _secure(config: ScadaConfig, source: str) -> ScadaConfig:
    """``config``, unless it would serve insecurely without saying why (``security_problems``)."""
    problems = security_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _source(args: argparse.Namespace) -> str:
    return getattr(args, "config", None) or getattr(args, "file", None) or "<embedded demo.toml>"


def cmd_run(args: argparse.Namespace) -> int:
    config = _secure(config_from_args(args), _source(args))
    _setup_logging(args, config)
    return asyncio.run(_serve(config, demo=False))


def cmd_demo(args: argparse.Namespace) -> int:
    config = _secure(config_from_args(args), _source(args))
    _setup_logging(args, config)
    return asyncio.run(_serve(config, demo=True))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Parse the file (every problem listed) and refuse insecure settings nobody justified."""
    config = _secure(load_config(args.file, args.set or []), args.file)
    out(f"{args.file}: OK (site {config.site.name!r}, {len(config.links)} link(s))")
    for section in (config.opcua, config.hmi):
        if section is not None and section.insecure_ok:
            name = "opcua" if section is config.opcua else "hmi"
            out(f"{args.file}: note: {name} accepts insecure settings because: {section.insecure_reason}")
    return 0


def _setup_logging(args: argparse.Namespace, config: ScadaConfig | None = None) -> None:
    level = args.log_level or (config.logging.level if config else "info")
    fmt = args.log_format or (config.logging.format if config else "human")
    configure_logging(level, fmt)


def build_parser(load: Collection[Feature] | None = None) -> argparse.ArgumentParser:
    """The whole ``scada`` parser: the server commands here, then every feature's. The features
    in ``load`` (all when None) add their real sub-parsers; the others are listed by name and
    help only, and a command of theirs parses to its feature (``args.feature``) to load."""
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

    for feature in FEATURES:
        if load is None or feature in load:
            feature.load()(sub)
            continue
        for name, help in feature.commands:
            # no options of its own and no -h: whatever follows the command is the real parser's
            sub.add_parser(name, help=help, add_help=False).set_defaults(feature=feature)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed, having imported only the feature whose command it runs."""
    known, _ = build_parser(load=()).parse_known_args(argv)
    feature: Feature | None = getattr(known, "feature", None)
    return build_parser(load=() if feature is None else (feature,)).parse_args(argv)


_served = False  # a server ran (``run``/``demo``) and has stopped


def main(argv: list[str] | None = None) -> int:
    """Run one ``scada`` command; returns its exit code (2 for a bad configuration)."""
    global _served
    args = parse_args(argv)
    _served = args.handler in (cmd_run, cmd_demo)
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


def end_process(code: int) -> NoReturn:
    """Exit with ``code``. After a server has stopped, skip the interpreter's teardown: every
    component has stopped by then (the ledger, the historian and the outbox are committed or
    flushed by their own stops, and SQLite's commits were durable when they returned), so all
    that is left is freeing the heap object by object, which at 20,000 meters (millions of
    objects, most frozen out of the collector) took 15-40 s and held up every restart."""
    if not _served:
        raise SystemExit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to flush to
            pass
    os._exit(code)


def entry() -> NoReturn:
    """The ``scada`` executable and ``python -m scada``: :func:`main`, then :func:`end_process`."""
    end_process(main())
