"""Every feature's ``scada`` sub-commands, listed by name and help, imported only when run.

A command process runs one command: importing every feature to build the whole parser cost
each ``scada ...`` about 3 s of CPU before it did anything (pandas, asyncua, the HMI). So
``scada --help`` and the choice of a command use this table alone, and only the feature whose
command runs imports its ``cli`` module and adds its real sub-parsers. The table's names and
help must match what each feature's ``register`` adds; a test builds the parser both ways and
compares their help.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FEATURES", "Feature"]


@dataclass(frozen=True)
class Feature:
    """One feature's commands: ``register`` ("module:function") adds its sub-parsers to the
    sub-parsers object; ``commands`` are the top-level (name, help) pairs it adds, in order."""

    register: str
    commands: tuple[tuple[str, str], ...]

    def load(self) -> Callable[[Any], None]:
        """The feature's ``register`` function (imports the feature)."""
        module, _, name = self.register.partition(":")
        register: Callable[[Any], None] = getattr(importlib.import_module(module), name)
        return register


def register_reports(sub: Any) -> None:
    """``scada report``, with the HMI's printable PDF and column labels."""
    from hmi.reports import labels_for, pdf_for_command_line  # noqa: PLC0415 - loaded only when `scada report` runs
    from scada.reports import cli  # noqa: PLC0415 - as above

    cli.register(sub, pdf=pdf_for_command_line, labels=labels_for)


# in the order of `scada --help`
FEATURES: tuple[Feature, ...] = (
    Feature("scada.db.cli:register", (("db", "database maintenance"),)),
    Feature("scada.users.cli:register", (("user", "manage users"),)),
    Feature("scada.site.cli:register", (
        ("profiles", "device profiles: list them, check a profile file"),
        ("import-site", "import buildings, floors, rooms and meters (TOML or CSV)"),
    )),
    Feature("scada.alarms.cli:register", (
        ("alarms", "list, acknowledge, confirm, comment and shelve alarms (works on the database)"),
    )),
    Feature("scada.prepaid.cli:register", (
        ("reconcile", "check every prepaid account and billed reading; non-zero exit on a mismatch"),
    )),
    Feature("scada.payments.cli:register", (
        ("payments", "online payment: orders, the sandbox provider, reconciliation"),
    )),
    Feature("hmi.watch:register", (("watch", "tail live room changes from a running server (WebSocket feed)"),)),
    Feature("scada.simulator.cli:register", (("simulate", "run a stand-alone meter simulator (Modbus or DL/T 645)"),)),
    Feature("scada.history.cli:register", (("history", "query the historian"),)),
    Feature("scada.opcua.cli:register", (("opcua", "OPC UA server certificates (trust list)"),)),
    Feature("scada.cli.commands:register_reports", (
        ("report", "write a report (energy, compare, finance, arrears, losses) to a file"),
    )),
)
