"""``scada`` builds its parser from the command table and imports only the feature whose
command runs: the table must say what the features' own parsers say."""

from __future__ import annotations

import subprocess
import sys

from scada.cli.commands import FEATURES
from scada.cli.main import build_parser, parse_args


def test_the_table_lists_every_feature_command_with_its_own_help() -> None:
    eager = build_parser()  # every feature's register run
    lazy = build_parser(load=())  # the table only
    assert lazy.format_help() == eager.format_help()
    for feature in FEATURES:
        one = build_parser(load=(feature,))
        assert one.format_help() == eager.format_help(), feature.register


def test_a_command_parses_with_its_feature_loaded() -> None:
    args = parse_args(["--log-level", "debug", "user", "add", "ann", "--role", "cashier"])
    assert (args.command, args.name, args.role, args.log_level) == ("user", "ann", "cashier", "debug")
    assert callable(args.handler) and not hasattr(args, "feature")
    args = parse_args(["report", "energy", "--from", "2026-01-01", "--to", "2026-01-31", "--out", "x.csv"])
    assert args.kind == "energy" and callable(args.handler)


def test_help_and_one_command_import_no_other_feature() -> None:
    probe = (
        "import sys\n"
        "from scada.cli.main import build_parser, parse_args\n"
        "build_parser(load=()).format_help()\n"
        "parse_args(['user', 'list'])\n"
        "heavy = ['scada.server', 'hmi', 'pandas', 'asyncua', 'scada.alarms.cli', 'scada.reports.cli', 'scada.payments.cli', 'hmi.watch']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "", f"imported for `scada user list`: {out}"
