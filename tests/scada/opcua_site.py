"""A running server with OPC UA for the tests: a small imported site, users of each role, and
meter tags registered and written the way the poller does it (until the poller is on main)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from protocols.opcua import OpcUaServer
from scada.audit import Actor
from scada.config import ScadaConfig, load_config
from scada.foundation import TAGDB, USERS
from scada.opcua import OPCUA
from scada.runtime import Runtime
from tags import DataType, TagDB, TagMeta, TagWrite
from tags.names import meter_tag

from ..harness import running_server

SITE = """
[site]
id = "interop"
name = "Interop Site"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B1"
name = "Building 1"

[[floors]]
id = "B1-F1"
building = "B1"
level = 1
name = "F1"

[[floors]]
id = "B1-F2"
building = "B1"
level = 2
name = "F2"

[[rooms]]
id = "B1-R101"
floor = "B1-F1"
name = "R101"

[[rooms]]
id = "B1-R102"
floor = "B1-F1"
name = "R102"

[[rooms]]
id = "B1-R201"
floor = "B1-F2"
name = "R201"

[[meters]]
id = "E-101"
kind = "electricity"
room = "B1-R101"
profile = "acrel-ddsy1352"
link = "gw-1"
unit_id = 1

[[meters]]
id = "W-101"
kind = "water"
room = "B1-R101"
profile = "water-valve"
link = "gw-1"
unit_id = 2

[[meters]]
id = "E-102"
kind = "electricity"
room = "B1-R102"
profile = "acrel-ddsy1352"
link = "gw-1"
unit_id = 3

[[meters]]
id = "E-201"
kind = "electricity"
room = "B1-R201"
profile = "acrel-ddsy1352"
link = "gw-1"
unit_id = 4

[[meters]]
id = "E-COMMON"
kind = "electricity"
role = "common"
building = "B1"
profile = "acrel-ddsy1352"
link = "gw-1"
unit_id = 5
"""

ELECTRICITY = {
    "energy_total": (DataType.FLOAT, "kWh"), "energy_peak": (DataType.FLOAT, "kWh"), "power": (DataType.FLOAT, "kW"),
    "voltage": (DataType.FLOAT, "V"), "current": (DataType.FLOAT, "A"), "power_factor": (DataType.FLOAT, ""),
    "relay_closed": (DataType.BOOL, ""), "comm_ok": (DataType.BOOL, ""),
}
WATER = {"volume_total": (DataType.FLOAT, "m3"), "flow": (DataType.FLOAT, "m3/h"), "valve_open": (DataType.BOOL, ""), "comm_ok": (DataType.BOOL, "")}
NO_RELAY = {p: v for p, v in ELECTRICITY.items() if p != "relay_closed"}
POINTS = {"E-101": ELECTRICITY, "W-101": WATER, "E-102": ELECTRICITY, "E-201": ELECTRICITY, "E-COMMON": NO_RELAY}

PASSWORDS = {"op1": "operator-password", "view1": "viewer-password", "cash1": "cashier-password"}


def write_config(tmp_path: Path, *, security: str, anonymous: bool) -> Path:
    (tmp_path / "site.toml").write_text(SITE)
    path = tmp_path / "scada.toml"
    path.write_text(f"""
[site]
name = "Interop Site"
timezone = "Asia/Shanghai"
import_file = "site.toml"

[database]
url = "sqlite:///{tmp_path / 'scada.db'}"

[runtime]
data_dir = "var"

[hmi]
port = 0

[admin]
password = {{ env = "SCADA_TEST_ADMIN_PASSWORD" }}

[[links]]
name = "gw-1"
host = "127.0.0.1"
port = 5020

[opcua]
port = 0
application_uri = "urn:test:prepaid-scada"
security = {security}
allow_anonymous = {"true" if anonymous else "false"}
""")
    return path


def register_meter_tags(tagdb: TagDB, meter_id: str, points: dict[str, tuple[DataType, str]]) -> None:
    for point, (data_type, unit) in points.items():
        tagdb.register(TagMeta(meter_tag(meter_id, point), data_type, unit, meter_id=meter_id, point=point))


def sample(point: str, data_type: DataType, i: int) -> object:
    if data_type is DataType.BOOL:
        return True
    return round(100.0 + i + len(point), 3)


async def feed_meters(rt: Runtime, ts: datetime, meters: dict[str, dict[str, tuple[DataType, str]]] | None = None) -> None:
    """Register and write every meter's points, then wait until OPC UA published them all
    (nodes for late tags, SetRelay on meters with a relay or valve)."""
    tagdb = rt.ctx[TAGDB]
    meters = meters if meters is not None else POINTS
    writes = []
    for i, (meter_id, points) in enumerate(meters.items()):
        register_meter_tags(tagdb, meter_id, points)
        writes += [TagWrite(meter_tag(meter_id, p), sample(p, dt, i), source_ts=ts) for p, (dt, _u) in points.items()]
    tagdb.write_many(writes)
    site = rt.ctx[OPCUA].site

    def published() -> bool:
        return all(site.has_tag(w.name) for w in writes) and all(
            site.has_node(f"meter:{m}/SetRelay") for m, pts in meters.items() if "relay_closed" in pts or "valve_open" in pts
        )

    await wait_until(published)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@dataclass
class OpcUaSite:
    rt: Runtime
    config_file: Path
    config: ScadaConfig

    @property
    def server(self) -> OpcUaServer:
        return self.rt.ctx[OPCUA]

    @property
    def url(self) -> str:
        return self.server.url

    def node(self, ident: str) -> str:
        return f"ns={self.server.ns};s={ident}"


@asynccontextmanager
async def opcua_site(tmp_path: Path, *, security: str = '["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"]', anonymous: bool = True) -> AsyncIterator[OpcUaSite]:
    config_file = write_config(tmp_path, security=security, anonymous=anonymous)
    config = load_config(config_file)
    async with running_server(config) as rt:
        users = rt.ctx[USERS]
        actor = Actor("test", "cli")
        await users.add("op1", "operator", PASSWORDS["op1"], actor)
        await users.add("view1", "viewer", PASSWORDS["view1"], actor)
        await users.add("cash1", "cashier", PASSWORDS["cash1"], actor)
        yield OpcUaSite(rt, config_file, config)
