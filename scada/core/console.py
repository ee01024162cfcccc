"""What the command-line tools share: writing a line to the terminal and asking for a password."""

from __future__ import annotations

import getpass
import os
import sys

__all__ = ["out", "read_password"]


def out(message: str) -> None:
    """Write one line to standard output now (commands report their results this way, not by logging)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def read_password(env: str = "SCADA_PASSWORD") -> str:
    """A password from the environment variable ``env``, else asked twice at the terminal."""
    password = os.environ.get(env)
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit(f"no password: set {env} or run in a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat: "):
        raise SystemExit("passwords differ")
    return first
