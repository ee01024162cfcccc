"""A running server with OPC UA for the tests: a small imported site served by the Modbus
simulator and polled by the real poller, the command path, and users of each role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from protocols.opcua import OpcUaServer
from scada.config import ScadaConfig, load_config
from scada.core.runtime import Runtime
from scada.core.tags import TAGDB
from scada.opcua.component import OPCUA
from scada.simulator.component import SIMULATOR
from scada.users.audit import Actor
from scada.users.component import USERS

from ..harness import passwords_hashed_once, running_server
from ..services import free_port

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

PASSWORDS = {"op1": "operator-password", "view1": "viewer-password", "cash1": "cashier-password"}
METERS = ("E-101", "W-101", "E-102", "E-201", "E-COMMON")


def write_config(tmp_path: Path, *, security: str, anonymous: bool, extra: str = "", link_extra: str = "") -> Path:
    """The server's config; ``extra`` is appended (more sections), ``link_extra`` goes into the link."""
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
port = {free_port()}
timeout_s = 0.5
{link_extra}

[simulator]
enabled = true
control_port = 0

[modbus]
poll_intervals = {{ fast = 0.3, energy = 0.5, volume = 0.5 }}
start_spread = 0.5

[commands]
retries = 1
confirm_timeout_s = 3

[opcua]
port = 0
application_uri = "urn:test:prepaid-scada"
security = {security}
allow_anonymous = {"true" if anonymous else "false"}
{extra}
""")
    return path


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def meters_live(rt: Runtime, meters: tuple[str, ...] = METERS) -> None:
    """Every meter polled (from the simulator) and its values published as nodes."""
    tagdb = rt.ctx[TAGDB]
    site = rt.ctx[OPCUA].site

    def live() -> bool:
        for m in meters:
            comm = tagdb.get(f"{m}.comm_ok")
            if comm is None or comm.value is not True:
                return False
            for name in tagdb.names(lambda n, m=m: n.startswith(f"{m}.")):
                if not site.has_tag(name):
                    return False
            total = tagdb.get(f"{m}.energy_total") or tagdb.get(f"{m}.volume_total")
            if total is None or not total.good:
                return False
        return True

    await wait_until(live, what=f"meters {', '.join(meters)} polled and published")


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

    @property
    def control_url(self) -> str:
        url = self.rt.ctx[SIMULATOR].control_url
        assert url is not None
        return url

    def node(self, ident: str) -> str:
        return f"ns={self.server.ns};s={ident}"


@asynccontextmanager
async def opcua_site(
    tmp_path: Path, *, security: str = '["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"]', anonymous: bool = True,
    extra: str = "", link_extra: str = "",
) -> AsyncIterator[OpcUaSite]:
    config_file = write_config(tmp_path, security=security, anonymous=anonymous, extra=extra, link_extra=link_extra)
    config = load_config(config_file)
    async with running_server(config) as rt:
        users = rt.ctx[USERS]
        actor = Actor("test", "cli")
        with passwords_hashed_once():
            await users.add("op1", "operator", PASSWORDS["op1"], actor)
            await users.add("view1", "viewer", PASSWORDS["view1"], actor)
            await users.add("cash1", "cashier", PASSWORDS["cash1"], actor)
        yield OpcUaSite(rt, config_file, config)
