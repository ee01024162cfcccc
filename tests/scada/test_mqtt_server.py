"""MQTT gateways through the whole server, on a real Mosquitto: 1,000 meters behind 10 Sparkplug B
edge nodes (simulated gateways of ours, each on its own MQTT connection).

- every meter's tags are fed from its gateway's births and data;
- a gateway's connection killed: the broker publishes its NDEATH, its 100 meters are bad within
  the keep-alive, and the alarm console shows one link alarm (the meters' own communication
  alarms suppressed), not a hundred;
- a gap in a node's ``seq``: a rebirth request (NCMD), which the gateway answers with a birth;
- a relay trip through the one command path: a DCMD, confirmed by the gateway's DDATA.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from hmi.component import HMI_URL
from protocols.mqtt.simgw import SimDevice, SimGateway
from scada.alarms.component import ALARMS
from scada.alarms.store import AlarmFilter
from scada.commands.service import COMMANDS, CommandKind, CommandRequest
from scada.core.tags import TAGDB
from scada.polling.component import COMMS, MQTT
from scada.users.audit import Actor
from tags import Quality, QualityReason

from ..harness import running_server, server_config
from ..services import MosquittoServer
from ..simulation import until

pytestmark = pytest.mark.slow

GATEWAYS, PER_GATEWAY = 10, 100
KEEPALIVE_S = 5


def site_toml() -> str:
    out = ['[site]\nid = "mq"\nname = "MQ"\ntimezone = "Asia/Shanghai"\n[[buildings]]\nid = "B"\nname = "B"\n']
    for g in range(1, GATEWAYS + 1):
        out.append(f'[[floors]]\nid = "F{g}"\nbuilding = "B"\nlevel = {g}\nname = "F{g}"\n')
        for i in range(1, PER_GATEWAY + 1):
            out.append(
                f'[[rooms]]\nid = "R{g}-{i}"\nfloor = "F{g}"\nname = "{g}{i:02d}"\n'
                f'[[meters]]\nid = "E-{g}-{i}"\nkind = "electricity"\nroom = "R{g}-{i}"\nprofile = "mqtt-electricity"\n'
                f'link = "gw-{g}"\naddress = "m{i}"\ninitial_reading = "0"\n'
            )
    return "".join(out)


def links(port: int) -> str:
    return "".join(
        f'[[links]]\nname = "gw-{g}"\nkind = "mqtt"\nhost = "127.0.0.1"\nport = {port}\ngroup_id = "plant"\n'
        f"keepalive_s = {KEEPALIVE_S}\nrebirth_interval_s = 0\n"
        for g in range(1, GATEWAYS + 1)
    )


def gateway(port: int, g: int) -> SimGateway:
    devices = [
        SimDevice(f"m{i}", {"energy_total": 1000.0 + i, "power": 0.5, "voltage": 230.0, "current": 2.2, "relay_closed": True})
        for i in range(1, PER_GATEWAY + 1)
    ]
    return SimGateway("127.0.0.1", port, f"gw-{g}", devices, group="plant", keepalive=KEEPALIVE_S)


async def test_a_thousand_meters_behind_ten_sparkplug_gateways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mqtt_broker: MosquittoServer
) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    (tmp_path / "site.toml").write_text(site_toml())
    config = server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", links(mqtt_broker.port) + """
[alarms.classes.link_down]
delay_on_s = 1
[alarms.classes.comm_loss]
delay_on_s = 1

[commands]
retries = 0
confirm_timeout_s = 5
confirm_interval_s = 0.1
""")
    config = config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})
    gateways = [gateway(mqtt_broker.port, g) for g in range(1, GATEWAYS + 1)]
    async with running_server(config) as rt, contextlib.AsyncExitStack() as stack:
        tagdb, mqtt, alarms = rt.ctx[TAGDB], rt.ctx[MQTT], rt.ctx[ALARMS]
        for gw in gateways:
            stack.push_async_callback(gw.stop)
            await gw.start()
        await until(lambda: all(tagdb.read(f"E-{g}-{PER_GATEWAY}.energy_total").good for g in range(1, GATEWAYS + 1)), 30, "births")
        assert tagdb.read("E-7-42.energy_total").value == 1042.0
        assert len(mqtt.devices) == GATEWAYS * PER_GATEWAY
        assert {s.name for s in rt.ctx[COMMS].link_stats()} >= {f"gw-{g}" for g in range(1, GATEWAYS + 1)}

        # data: every meter of every gateway
        for gw in gateways:
            for i in range(1, PER_GATEWAY + 1):
                gw.read(f"m{i}", {"energy_total": 1000.5 + i, "power": 0.6})
            await gw.flush()
        await until(lambda: all(tagdb.read(f"E-{g}-{PER_GATEWAY}.energy_total").value == 1000.5 + PER_GATEWAY
                                for g in range(1, GATEWAYS + 1)), 30, "data")

        # gateway 3 dies: its meters bad within the keep-alive, one link alarm
        loop = asyncio.get_running_loop()
        killed = loop.time()
        await gateways[2].kill()
        await until(lambda: all(tagdb.read(f"E-3-{i}.energy_total").quality is Quality.BAD for i in range(1, PER_GATEWAY + 1)),
                    KEEPALIVE_S, "gateway 3's meters bad")
        assert loop.time() - killed < KEEPALIVE_S
        assert tagdb.read("E-3-1.energy_total").reason is QualityReason.COMM_FAILURE
        assert tagdb.read("E-4-1.energy_total").good  # the others go on
        await until(lambda: len(alarms.active()) >= 1, 10, "the link alarm")
        await asyncio.sleep(2.5)  # the meters' own comm_loss delay has passed too
        standing = alarms.active()
        assert [(a.alarm_class, a.object_id) for a in standing] == [("link_down", "gw-3")]
        suppressed = alarms.active(AlarmFilter(states=None, classes=frozenset({"comm_loss"})))
        assert all(a.state.value == "suppressed" for a in suppressed)

        # the HMI's communications: the MQTT gateways with their state and their meters by device id
        async with aiohttp.ClientSession() as http:
            async with http.post(rt.ctx[HMI_URL] + "/api/v1/auth/token", json={"user": "admin", "password": "admin-password-1"}) as r:
                token = (await r.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(rt.ctx[HMI_URL] + "/api/v1/links", headers=headers) as r:
                by_name = {link["name"]: link for link in (await r.json())["links"]}
            assert (by_name["gw-3"]["state"], by_name["gw-3"]["devices_offline"]) == ("down", PER_GATEWAY)
            assert by_name["gw-4"]["kind"] == "mqtt/sparkplug" and by_name["gw-4"]["state"] == "up"
            async with http.get(rt.ctx[HMI_URL] + "/api/v1/links/gw-4/devices", headers=headers) as r:
                devices = (await r.json())["devices"]
            assert len(devices) == PER_GATEWAY and devices[0]["address"] == "m1" and devices[0]["state"] == "online"

        # a lost message of gateway 5: a rebirth request, and its birth follows
        gw5 = gateways[4]
        before = gw5.rebirths
        gw5.skip_seq()
        gw5.read("m1", {"energy_total": 1003.0})
        await gw5.flush()
        await until(lambda: gw5.rebirths == before + 1, 10, "rebirth request")
        assert mqtt.gateways["gw-5"].seq_gaps == 1

        # a relay trip through the command path: DCMD, confirmed by the gateway's DDATA
        result = await rt.ctx[COMMANDS].execute(
            CommandRequest("E-6-17", CommandKind.DISCONNECT, Actor.system("test"), "test trip"), timeout=20
        )
        assert (result.status, result.detail) == ("confirmed", "relay open (confirmed by read-back)")
        assert gateways[5].commands == [("m17", "relay_closed", False)]

        # gateway 3 comes back: its meters good again, its alarm clears
        await gateways[2].start()
        await until(lambda: tagdb.read("E-3-50.energy_total").good and tagdb.read("link:gw-3.comm_ok").value is True, 10, "rebirth of 3")


DEMO_SITE = """
[site]
id = "dm"
name = "DM"
timezone = "Asia/Shanghai"
[[buildings]]
id = "B"
name = "B"
[[floors]]
id = "F"
building = "B"
level = 1
name = "F1"
""" + "".join(
    f'[[rooms]]\nid = "R{i}"\nfloor = "F"\nname = "{i}"\n[[meters]]\nid = "E-{i}"\nkind = "electricity"\nroom = "R{i}"\n'
    f'profile = "mqtt-electricity"\nlink = "mq"\naddress = "dev{i}"\ninitial_reading = "50"\n'
    for i in range(1, 4)
)


@pytest.mark.parametrize("fmt", ["sparkplug", "json"])
async def test_the_demo_gateway_publishes_the_simulated_meters_when_a_broker_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mqtt_broker: MosquittoServer, fmt: str
) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    (tmp_path / "site.toml").write_text(DEMO_SITE)
    config = server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", f"""
[[links]]
name = "mq"
kind = "mqtt"
format = "{fmt}"
host = "127.0.0.1"
port = {mqtt_broker.port}
group_id = "demo-{fmt}"
gateway = "demo-{fmt}"
topic = "meters/{{gateway}}/{{meter}}/data"

[simulator]
enabled = true
links = ["mq"]
control_port = 0
speed = 60

[alarms]
enabled = false

[commands]
retries = 0
confirm_timeout_s = 15
confirm_interval_s = 0.2
""")
    config = config.model_copy(update={"site": config.site.model_copy(update={"import_file": "site.toml"})})
    async with running_server(config) as rt:
        tagdb = rt.ctx[TAGDB]
        await until(lambda: all(tagdb.read(f"E-{i}.energy_total").good for i in range(1, 4)), 20, "the demo gateway's meters")
        assert tagdb.read("E-2.energy_total").value >= 50  # type: ignore[operator]
        assert tagdb.read("link:mq.comm_ok").value is True
        result = await rt.ctx[COMMANDS].execute(
            CommandRequest("E-3", CommandKind.DISCONNECT, Actor.system("test"), "demo trip"), timeout=30
        )
        assert result.status == "confirmed", result.detail
        assert tagdb.read("E-3.relay_closed").value is False
