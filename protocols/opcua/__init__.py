"""OPC UA server: every meter and room as nodes, live values, secure methods, history from the
historian, alarms as conditions (asyncua).

The runtime (``scada.opcua.component``) builds :class:`SiteSpec` from the asset registry and the tag
database, feeds tag changes to :meth:`OpcUaServer.push` and plugs users, commands and the ledger
in through :class:`ServerHooks`. Depends on ``tags`` and asyncua only.

Names are imported lazily, so that reading the configuration (``protocols.opcua.config``) does
not load asyncua.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from .conditions import ConditionActions, ConditionClass, ConditionKind, ConditionManager, ConditionState
    from .config import OpcUaConfig, SecurityMode
    from .history import HistoryAccess, HistoryPage, HistorySource
    from .methods import MethodRefused
    from .model import (
        BuildingSpec,
        FloorSpec,
        LinkSpec,
        MeterSpec,
        PointSpec,
        RoomSpec,
        SeriesKind,
        SiteSpec,
        browse_name,
    )
    from .pki import CertInfo, Pki, PkiError
    from .server import OpcUaServer, ServerHooks, default_application_uri
    from .sessions import Caller
    from .site import SyncResult
    from .status import STATUS_TABLE, data_value, status_code, status_name

_EXPORTS = {
    "ConditionActions": "conditions",
    "ConditionClass": "conditions",
    "ConditionKind": "conditions",
    "ConditionManager": "conditions",
    "ConditionState": "conditions",
    "OpcUaConfig": "config",
    "SecurityMode": "config",
    "HistoryAccess": "history",
    "HistoryPage": "history",
    "HistorySource": "history",
    "BuildingSpec": "model",
    "FloorSpec": "model",
    "LinkSpec": "model",
    "MeterSpec": "model",
    "PointSpec": "model",
    "RoomSpec": "model",
    "SeriesKind": "model",
    "SiteSpec": "model",
    "browse_name": "model",
    "CertInfo": "pki",
    "Pki": "pki",
    "PkiError": "pki",
    "MethodRefused": "methods",
    "OpcUaServer": "server",
    "ServerHooks": "server",
    "default_application_uri": "server",
    "Caller": "sessions",
    "SyncResult": "site",
    "STATUS_TABLE": "status",
    "data_value": "status",
    "status_code": "status",
    "status_name": "status",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
