"""Monitored items without a deep copy of every scalar value they are given.

asyncua 2.1.0 (``MonitoredItemValues.set_current_datavalue``) keeps a ``copy.deepcopy`` of every
value a monitored item sees, to compare the next one with: ~60 µs a value, four fifths of the
time of a 1,000-item CreateMonitoredItems (the event loop held 1.0–1.5 s for each client
subscribing, bench/opcua/scale.py), and again for every change of a monitored variable and
every client monitoring it. The copy was added upstream (FreeOpcUa/opcua-asyncio#1243) so that a
value changed *in place* (a list mutated, then written again) still differs from the one kept.

In this server no value is changed in place: every change of a variable is a new DataValue
(``status.data_value``), and asyncua's own writes (server status, current time) build new ones
too. So a value whose payload is an immutable scalar is kept as it is; anything else (arrays,
structures) is still copied as asyncua does. The replacement is installed for asyncua 2.1.0 only
(``constraints.txt``); with any other version asyncua's own method stays.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from importlib.metadata import version
from typing import Any

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemValues

__all__ = ["install"]

log = logging.getLogger(__name__)

ASYNCUA_VERSION = "2.1.0"  # the version whose method this replaces (read before changing it)
_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes, datetime})


def _set_current_datavalue(self: Any, cur_val: ua.DataValue) -> None:
    self.old_dvalue = self.current_dvalue
    variant = cur_val.Value
    if variant is None or type(variant.Value) in _IMMUTABLE:
        self.current_dvalue = cur_val
    else:
        self.current_dvalue = copy.deepcopy(cur_val)


def install() -> bool:
    """Replace asyncua's method (once; idempotent). Returns whether the replacement is in place."""
    if MonitoredItemValues.set_current_datavalue is _set_current_datavalue:
        return True
    found = version("asyncua")
    if found != ASYNCUA_VERSION:
        log.info("asyncua's monitored items keep their deep copies", extra={"asyncua": found, "expected": ASYNCUA_VERSION})
        return False
    MonitoredItemValues.set_current_datavalue = _set_current_datavalue  # type: ignore[method-assign]
    return True
