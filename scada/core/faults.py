"""Crash points for the crash tests: with ``SCADA_CRASH_AT=<name>`` in its environment the
process kills itself with SIGKILL when it reaches the point of that name — a deterministic
``kill -9`` at the one moment a test needs (between two commits, say). Without the variable (as
in every real deployment) a point costs one environment lookup and does nothing."""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "SCADA_CRASH_AT"
log = logging.getLogger(__name__)


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup, nothing flushed) when ``SCADA_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("crash point reached: killing the process", extra={"point": name})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
