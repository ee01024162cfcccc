"""OPC UA server: every meter and room as nodes, live values, secure methods (asyncua).

The runtime (``scada.opcua``) builds :class:`SiteSpec` from the asset registry and the tag
database, feeds tag changes to :meth:`OpcUaServer.push` and plugs users, commands and the ledger
in through :class:`ServerHooks`. Depends on ``tags`` and asyncua only.
"""

from .config import OpcUaConfig, SecurityMode
from .model import BuildingSpec, FloorSpec, MeterSpec, PointSpec, RoomSpec, SiteSpec, browse_name
from .pki import CertInfo, Pki, PkiError
from .server import MethodRefused, OpcUaServer, ServerHooks, default_application_uri
from .sessions import Caller
from .site import SyncResult
from .status import STATUS_TABLE, data_value, status_code, status_name

__all__ = [
    "BuildingSpec",
    "Caller",
    "CertInfo",
    "FloorSpec",
    "MeterSpec",
    "MethodRefused",
    "OpcUaConfig",
    "OpcUaServer",
    "Pki",
    "PkiError",
    "PointSpec",
    "RoomSpec",
    "STATUS_TABLE",
    "SecurityMode",
    "ServerHooks",
    "SiteSpec",
    "SyncResult",
    "browse_name",
    "data_value",
    "default_application_uri",
    "status_code",
    "status_name",
]
