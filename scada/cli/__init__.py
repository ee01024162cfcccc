"""The ``scada`` command line: the entry point that collects every feature's sub-commands."""

from scada.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
