"""The OPC UA server in the running runtime — meters served by the Modbus simulator, polled by
the poller, switched through the command path, accounts in the prepaid ledger — seen by
node-opcua (a client stack that is not ours): browse and find meters by type, read and
subscribe to changes that start in the simulator, SetRelay with the simulator's relay following,
Recharge into the ledger, refusals by role (audited), signed and encrypted sessions with a
certificate accepted through the trust list, and the address space following the registry."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scada.core.tags import TAGDB
from scada.prepaid.accounts import OpenRequest
from scada.prepaid.engine import PREPAID
from scada.prepaid.tariff_definition import TariffDefinition
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.users.audit import Actor
from scada.users.component import AUDIT, LOGINS, USERS

from ..protocols.opcua.nodeclient import NodeClient
from ..simulation import Control
from .opcua_site import PASSWORDS, meters_live, opcua_site, wait_until


@pytest.fixture(autouse=True)
def _admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI and wait for it (only where no server runs on this test's loop: see :func:`acli`)."""
    return subprocess.run(
        [sys.executable, "-m", "scada", *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


async def acli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI beside a server on this test's loop: waiting for it on the loop would freeze the
    server, which may be inside a write transaction, and the CLI would then wait for its lock."""
    return await asyncio.to_thread(cli, *args, cwd=cwd)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def change_where(c: NodeClient, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The first data change notification that satisfies ``predicate``."""
    while True:
        event = await c.next_event(timeout)
        if predicate(event):
            return event


async def test_browse_find_meters_by_type_read_and_subscribe_to_the_simulator(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s, aiohttp.ClientSession() as http:
        await meters_live(s.rt)
        sim = Control.of(http, s.rt.ctx[SIMULATOR])
        ns = s.server.ns
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)
            tree = await c("tree", nodeId=s.node("site"), path="/Site")
            by_type: dict[str, set[str]] = {}
            for node in tree:
                by_type.setdefault(node["typeDefinition"], set()).add(node["path"])
            assert by_type[f"ns={ns};s=type:ElectricityMeterType"] == {
                "/Site/Building 1/F1/R101/E-101", "/Site/Building 1/F1/R102/E-102",
                "/Site/Building 1/F2/R201/E-201", "/Site/Building 1/E-COMMON",
            }
            assert by_type[f"ns={ns};s=type:WaterMeterType"] == {"/Site/Building 1/F1/R101/W-101"}
            assert by_type[f"ns={ns};s=type:RoomType"] == {
                "/Site/Building 1/F1/R101", "/Site/Building 1/F1/R102", "/Site/Building 1/F2/R201",
            }
            paths = {n["path"] for n in tree}
            e101, w101, r101 = "/Site/Building 1/F1/R101/E-101", "/Site/Building 1/F1/R101/W-101", "/Site/Building 1/F1/R101"
            assert {f"{e101}/{p}" for p in ("EnergyTotal", "EnergySharp", "EnergyPeak", "EnergyFlat", "EnergyValley", "Power",
                                              "Voltage", "Current", "PowerFactor", "RelayClosed", "CommOk", "SetRelay")} <= paths
            assert {f"{w101}/{p}" for p in ("VolumeTotal", "Flow", "ValveOpen", "CommOk", "SetRelay")} <= paths
            assert {f"{r101}/{p}" for p in ("Balance", "SupplyState", "AlarmLevel", "AccountState", "Recharge")} <= paths
            # the command path's and the alarm engine's condition tags
            assert {f"{e101}/RelayFault", f"{e101}/ActiveAlarms", f"{r101}/ActiveAlarms", f"{r101}/AlarmPriority"} <= paths
            translated = await c("translate", path=f"/Objects/{ns}:Site/{ns}:Building 1/{ns}:F1/{ns}:R101/{ns}:E-101/{ns}:Power")
            assert translated["nodeId"] == s.node("E-101.power")

            # values read from the simulator: Good, with source and server timestamps
            energy, volume, relay, balance = await c("read", nodes=[
                s.node("E-101.energy_total"), s.node("W-101.volume_total"), s.node("E-101.relay_closed"), s.node("room:B1-R101.balance"),
            ])
            now = datetime.now(UTC)
            for dv, data_type in ((energy, "Double"), (volume, "Double"), (relay, "Boolean")):
                assert dv["status"] == "Good" and dv["dataType"] == data_type, dv
                assert now - timedelta(seconds=30) < ts(dv["sourceTimestamp"]) <= now + timedelta(seconds=1)
                assert dv["serverTimestamp"] is not None
            assert relay["value"] is True
            assert balance["status"] in ("Good", "UncertainInitialValue")  # a room without an account
            attrs = await c("read_attributes", nodeId=s.node("E-101.energy_total"), attributes=["DataType", "Description"])
            assert attrs["DataType"]["value"] == "ns=0;i=11"

            # a load change in the simulator reaches a subscriber
            await c("subscribe", nodes=[s.node("E-101.power")], publishingInterval=50)
            first = await c.next_event()
            assert first["status"] == "Good"
            await sim.load("E-101", kw=3.25)
            changed = await change_where(c, lambda e: e["status"] == "Good" and abs((e["value"] or 0) - 3.25) < 0.01)
            assert ts(changed["sourceTimestamp"]) > ts(first["sourceTimestamp"])
            # the meter stops answering: the subscriber is told why, not just that
            await sim.fault("E-101", "timeout")
            offline = await change_where(c, lambda e: e["status"] != "Good", timeout=20)
            assert offline["status"] in ("BadCommunicationError", "BadTimeout") and offline["value"] is None


async def test_set_relay_through_the_command_path_and_refusals_by_role(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s, aiohttp.ClientSession() as http:
        await meters_live(s.rt)
        sim = Control.of(http, s.rt.ctx[SIMULATOR])
        set_relay = {"objectId": s.node("meter:E-101"), "methodId": s.node("meter:E-101/SetRelay")}
        open_relay = {**set_relay, "args": [{"dataType": "Boolean", "value": False}]}
        recharge = {"objectId": s.node("room:B1-R101"), "methodId": s.node("room:B1-R101/Recharge"),
                    "args": [{"dataType": "Double", "value": 50.0}, {"dataType": "String", "value": "PAY-7"}]}
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)  # anonymous
            assert (await c("call", **open_relay))["status"] == "BadUserAccessDenied"
            write = await c.request("write", nodeId=s.node("E-101.power"), dataType="Double", value=1.0)
            assert not write["ok"] and write["status"] == "BadUserAccessDenied"
            await c("close")
            await c.connect(s.url, user="view1", password=PASSWORDS["view1"])
            assert (await c("call", **open_relay))["status"] == "BadUserAccessDenied"
            assert (await c("call", **recharge))["status"] == "BadUserAccessDenied"
            await c("close")
            assert (await sim.meter("E-101"))["supply_on"] is True  # nothing moved

            await c.connect(s.url, user="op1", password=PASSWORDS["op1"])
            await c("subscribe", nodes=[s.node("E-101.relay_closed")], publishingInterval=50)
            assert (await c.next_event())["value"] is True
            result = await c("call", **open_relay, timeout=60)
            assert result == {"status": "Good", "outputs": ["confirmed"], "inputArgumentResults": ["Good"]}
            assert (await sim.meter("E-101"))["supply_on"] is False  # the simulator's relay followed
            assert (await change_where(c, lambda e: e["value"] is False))["status"] == "Good"
            closed = await c("call", **set_relay, args=[{"dataType": "Boolean", "value": True}], timeout=60)
            assert closed["outputs"] == ["confirmed"] and (await sim.meter("E-101"))["supply_on"] is True
            # a relay that accepts the command but does not move: the command path says so
            await sim.relay("E-101", stuck=True)
            stuck = await c("call", **open_relay, timeout=60)
            assert stuck["status"] == "Good" and stuck["outputs"][0].startswith("failed:")
            await sim.relay("E-101", stuck=False)
            # a water meter's valve, the same way
            valve = await c("call", objectId=s.node("meter:W-101"), methodId=s.node("meter:W-101/SetRelay"),
                            args=[{"dataType": "Boolean", "value": False}], timeout=60)
            assert valve["outputs"] == ["confirmed"] and (await sim.meter("W-101"))["valve_open"] is False
            assert (await c("call", **recharge))["status"] == "BadUserAccessDenied"  # operators do not recharge
            bad_args = await c("call", **{**set_relay, "args": [{"dataType": "String", "value": "yes"}]})
            assert bad_args["status"] == "BadInvalidArgument" and bad_args["inputArgumentResults"] == ["BadTypeMismatch"]
            await c("close")

            refused = await c.request("connect", endpoint=s.url, securityMode="None", securityPolicy="None",
                                      pkiDir=str(tmp_path / "client-pki"), user="cash1", password="wrong-password")
            assert not refused["ok"] and refused["status"] == "BadUserAccessDenied"
        entries = await s.rt.ctx[AUDIT].query(limit=200)
        seen = {(e.action, e.actor, e.source, e.target_id, e.outcome) for e in entries}
        assert ("opcua.set_relay", "anonymous", "opcua", "E-101", "denied") in seen
        assert ("opcua.set_relay", "view1", "opcua", "E-101", "denied") in seen
        assert ("opcua.recharge", "view1", "opcua", "B1-R101", "denied") in seen
        assert ("opcua.recharge", "op1", "opcua", "B1-R101", "denied") in seen
        assert ("opcua.write", "anonymous", "opcua", "Write", "denied") in seen
        # the failed login is counted by the server's one login limiter, not written row by row
        assert not any(e.action == "opcua.login" and e.outcome == "denied" for e in entries)
        assert s.rt.ctx[LOGINS].take_summary().by_user == [("cash1", 1)]
        assert ("opcua.login", "op1", "opcua", "op1", "ok") in seen
        # the allowed calls are in the command path's own audit trail, by the OPC UA user
        commands = [e for e in entries if e.actor == "op1" and e.source == "opcua" and e.target_id == "E-101" and not e.action.startswith("opcua.")]
        assert {e.outcome for e in commands} >= {"queued", "confirmed", "failed"}
        assert all("OPC UA SetRelay" in e.reason for e in commands)
        denied = next(e for e in entries if e.action == "opcua.set_relay" and e.actor == "view1")
        assert denied.after == {"closed": False} and "relay_control" in denied.reason and "127.0.0.1" in denied.reason


async def test_recharge_through_the_ledger(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s, aiohttp.ClientSession() as http:
        sim = Control.of(http, s.rt.ctx[SIMULATOR])
        await sim.load("E-101", kw=0)  # nothing consumed while the test runs: the balance moves only by recharges
        await sim.load("W-101", m3_per_h=0)
        engine = s.rt.ctx[PREPAID]
        cashier = Actor("setup", "cli", "cashier")
        await engine.tariffs.create("FLAT", "Flat", "electricity", TariffDefinition.model_validate({"price": "0.5"}), cashier)
        await engine.tariffs.create("WATER", "Water", "water", TariffDefinition.model_validate({"price": "3.2"}), cashier)
        base = engine.defaults()
        await engine.open_account(
            OpenRequest("B1-R101", base, electricity_tariff_id="FLAT", water_tariff_id="WATER", opening_minor=10_000), cashier
        )
        site = s.server.site
        await wait_until(lambda: (v := site.value("room:B1-R101.balance")) is not None and v.StatusCode.is_good(), what="balance published")

        def recharge(room: str, amount: Any, reference: str, data_type: str = "Double") -> dict[str, Any]:
            return {"objectId": s.node(f"room:{room}"), "methodId": s.node(f"room:{room}/Recharge"),
                    "args": [{"dataType": data_type, "value": amount}, {"dataType": "String", "value": reference}]}

        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)
            balance, supply, account = await c("read", nodes=[s.node("room:B1-R101.balance"), s.node("room:B1-R101.supply_state"), s.node("room:B1-R101.account_state")])
            assert (balance["status"], balance["value"]) == ("Good", 100.0)
            assert (supply["value"], account["value"]) == ("on", "open")
            await c("close")
            await c.connect(s.url, user="cash1", password=PASSWORDS["cash1"])
            await c("subscribe", nodes=[s.node("room:B1-R101.balance")], publishingInterval=50)
            assert (await c.next_event())["value"] == 100.0
            done = await c("call", **recharge("B1-R101", 50.1, "PAY-7"))
            assert done == {"status": "Good", "outputs": [150.1], "inputArgumentResults": ["Good", "Good"]}
            assert (await change_where(c, lambda e: e["value"] == 150.1))["status"] == "Good"
            # the same payment again credits nothing more; with another amount it is refused
            assert (await c("call", **recharge("B1-R101", 50.1, "PAY-7")))["outputs"] == [150.1]
            assert (await c("call", **recharge("B1-R101", 20.0, "PAY-7")))["status"] == "BadInvalidState"
            for bad in (0.001, -5.0, 0.0, 2e9):  # too many decimals, negative, zero, above the maximum
                assert (await c("call", **recharge("B1-R101", bad, f"BAD-{bad}")))["status"] == "BadInvalidArgument", bad
            assert (await c("call", **recharge("B1-R101", "NaN", "X")))["status"] == "BadInvalidArgument"
            assert (await c("call", **recharge("B1-R101", 5.0, "  ")))["status"] == "BadInvalidArgument"
            # the reference is bounded like the HTTP API's text: no control character, at most 128
            for bad_reference in ("PAY\x00-9", "PAY-\x1b[31m", "R" * 129, "X" * 100_000):
                refused = await c("call", **recharge("B1-R101", 5.0, bad_reference))
                assert refused["status"] == "BadInvalidArgument", (bad_reference[:20], refused)
            assert (await c("call", **recharge("B1-R101", 5, "INT", data_type="Int32")))["status"] == "BadInvalidArgument"
            assert (await c("call", **recharge("B1-R102", 5.0, "PAY-8")))["status"] == "BadNotFound"  # no account there
        # the same refusal through asyncua's client
        from asyncua import Client, ua

        client = Client(s.url)
        client.set_user("cash1")
        client.set_password(PASSWORDS["cash1"])
        async with client:
            room = client.get_node(ua.NodeId("room:B1-R101", s.server.ns))
            with pytest.raises(ua.uaerrors.BadInvalidArgument):
                await room.call_method(ua.NodeId("room:B1-R101/Recharge", s.server.ns), ua.Variant(5.0, ua.VariantType.Double),
                                       ua.Variant("PAY\x00-10", ua.VariantType.String))
        entries = await s.rt.ctx[AUDIT].query(limit=200)
        credited = [e for e in entries if e.action == "account.recharge"]
        assert len(credited) == 1 and credited[0].actor == "cash1" and credited[0].source == "opcua"
        assert credited[0].after["amount"] == "50.10" and credited[0].after["channel"] == "opcua" and credited[0].after["reference"] == "PAY-7"
        failures = {e.reason.split(";")[0] for e in entries if e.action == "opcua.recharge" and e.outcome == "failed"}
        assert any("more than 2 decimals" in f for f in failures) and any("negative" in f for f in failures)
        assert any("control character U+0000" in f for f in failures) and any("control character U+001B" in f for f in failures)
        assert sum(1 for e in entries if e.action == "opcua.recharge" and e.outcome == "failed") == 12
        # a refused reference is quoted short in the audit, never whole
        assert max(len(str(e.after)) for e in entries if e.action == "opcua.recharge") < 1000
        # the ledger holds the exact amount
        view = await engine.accounts.account_of_room("B1-R101")
        assert view is not None and view.balance_minor == 15_010


async def test_signed_and_encrypted_session_after_trusting_the_client(tmp_path: Path) -> None:
    async with opcua_site(tmp_path, security='["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"]', anonymous=False) as s:
        await meters_live(s.rt, ("E-101",))
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.client_certificate()
            secure = {"endpoint": s.url, "securityMode": "SignAndEncrypt", "securityPolicy": "Basic256Sha256",
                      "pkiDir": str(tmp_path / "client-pki"), "user": "op1", "password": PASSWORDS["op1"]}
            untrusted = await c.request("connect", **secure)
            assert not untrusted["ok"] and untrusted["status"] == "BadCertificateUntrusted"
            listing = await acli("opcua", "certs", "--config", str(s.config_file), cwd=tmp_path)
            assert listing.returncode == 0, listing.stderr
            rejected = listing.stdout.split("rejected client certificates")[1].splitlines()[1].split()
            thumbprint = rejected[0]
            assert len(thumbprint) == 40 and "urn:scada-interop-test" in listing.stdout
            trusted = await acli("opcua", "trust", thumbprint[:12], "--config", str(s.config_file), "--reason", "interop test", cwd=tmp_path)
            assert trusted.returncode == 0, trusted.stderr
            assert thumbprint in trusted.stdout
            # the running server accepts it now, without a restart
            session = await c("connect", **secure)
            assert session["securityMode"] == "SignAndEncrypt"
            (energy,) = await c("read", nodes=[s.node("E-101.energy_total")])
            assert energy["status"] == "Good"
            await c("close")
            signed = await c("connect", **{**secure, "securityMode": "Sign"})
            assert signed["securityMode"] == "Sign"
            await c("close")
            no_user = {k: v for k, v in secure.items() if k not in ("user", "password")}
            anonymous = await c.request("connect", **no_user)
            # the server offers no anonymous token at all, so node-opcua does not even try
            # (a client that tries anyway is refused: tests/protocols/opcua/test_server.py)
            assert not anonymous["ok"] and "ANONYMOUS user token policy" in anonymous["error"]
            plain = await c.request("connect", **{**secure, "securityMode": "None", "securityPolicy": "None"})
            assert not plain["ok"]  # no endpoint without security is offered
        trust_entries = await s.rt.ctx[AUDIT].query(action="opcua.trust")
        assert trust_entries and trust_entries[0].target_id == thumbprint and trust_entries[0].reason == "interop test"


async def test_address_space_follows_the_registry(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s:
        await meters_live(s.rt)
        assets = s.rt.ctx[ASSETS]
        actor = Actor("test", "cli")
        await assets.replace_meter("E-102", "E-102B", actor, reason="meter swapped")
        await wait_until(lambda: s.server.site.has_object("meter:E-102B") and not s.server.site.has_object("meter:E-102"))
        await assets.set_active("E-201", False, actor, reason="out of service")
        await wait_until(lambda: not s.server.site.has_object("meter:E-201"))
        await meters_live(s.rt, ("E-102B",))  # the new meter is polled from the simulator and published
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)
            room = await c("browse", nodeId=s.node("room:B1-R102"))
            names = {r["browseName"].split(":", 1)[1] for r in room["references"]}
            assert "E-102B" in names and "E-102" not in names
            (energy,) = await c("read", nodes=[s.node("E-102B.energy_total")])
            assert energy["status"] == "Good"
            r201 = await c("browse", nodeId=s.node("room:B1-R201"))
            assert "E-201" not in {r["browseName"].split(":", 1)[1] for r in r201["references"]}
            await assets.set_active("E-201", True, actor, reason="back in service")
            await meters_live(s.rt, ("E-201",))
            e201 = await c("browse", nodeId=s.node("meter:E-201"))
            assert {"Power", "SetRelay"} <= {r["browseName"].split(":", 1)[1] for r in e201["references"]}
        assert "E-102.energy_total" not in s.rt.ctx[TAGDB]


def test_cli_needs_an_opcua_section(tmp_path: Path) -> None:
    cfg = tmp_path / "scada.toml"
    cfg.write_text('[site]\nname = "X"\n')
    result = cli("opcua", "certs", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0 and "no [opcua] section" in result.stderr
    cfg.write_text('[site]\nname = "X"\n[opcua]\nport = 0\n')
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    result = cli("opcua", "trust", str(junk), "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0 and "not a DER or PEM X.509 certificate" in result.stderr


async def test_disabling_a_user_ends_web_sessions_api_tokens_and_opcua_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user signed in three ways (a page session, an API token, an asyncua client reading and
    subscribing) is disabled by an administrator: each way stops at once; another user's OPC UA
    session goes on."""
    import asyncio

    from asyncua import Client, ua

    from hmi.component import HMI_URL
    from scada.opcua.component import OpcUaComponent

    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    async with opcua_site(tmp_path) as s, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await meters_live(s.rt)
        api = s.rt.ctx[HMI_URL] + "/api/v1"

        async def token(user: str, password: str) -> dict[str, str]:
            async with http.post(api + "/auth/token", json={"user": user, "password": password}) as r:
                assert r.status == 200, await r.text()
                return {"Authorization": f"Bearer {(await r.json())['token']}"}

        admin, viewer = await token("admin", "admin-password-1"), await token("view1", PASSWORDS["view1"])
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
            async with web.get(s.rt.ctx[HMI_URL] + "/login") as r:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
            async with web.post(s.rt.ctx[HMI_URL] + "/login", data={"user": "view1", "password": PASSWORDS["view1"], "csrf": csrf, "next": "/"}) as r:
                assert r.status == 200 and r.url.path == "/"

            victim, bystander = Client(s.url), Client(s.url)
            victim.set_user("view1")
            victim.set_password(PASSWORDS["view1"])
            bystander.set_user("op1")
            bystander.set_password(PASSWORDS["op1"])
            await victim.connect()
            await bystander.connect()
            try:
                power = ua.NodeId("E-101.power", s.server.ns)
                assert (await victim.get_node(power).read_data_value()).StatusCode.is_good()
                changes: list[Any] = []

                class Handler:
                    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                        changes.append(value)

                subscription = await victim.create_subscription(50, Handler())
                await subscription.subscribe_data_change(victim.get_node(power))
                await wait_until(lambda: bool(changes), what="the victim's first notification")

                async with http.put(api + "/users/view1", json={"active": False, "reason": "left the company"}, headers=admin) as r:
                    assert r.status == 200, await r.text()
                    ended = await r.json()
                assert ended["opcua_sessions_ended"] == 1 and ended["web_sessions_ended"] == 1 and ended["tokens_revoked"] == 1
                assert ended["sessions_ended"] == 2

                # the page session and the API token are refused at once
                async with web.get(s.rt.ctx[HMI_URL] + "/", allow_redirects=False) as r:
                    assert r.status == 303
                async with http.get(api + "/me", headers=viewer) as r:
                    assert r.status == 401
                # the OPC UA session can neither read nor receive
                with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError, OSError)):
                    await asyncio.wait_for(victim.get_node(power).read_data_value(), 5)
                seen = len(changes)
                await s.rt.ctx[SIMULATOR].advance_clock(60)
                await asyncio.sleep(1.0)
                assert len(changes) == seen
                assert s.server.principals() and all(p.name != "view1" for p in s.server.principals())
                # the other user's session goes on
                assert (await bystander.get_node(power).read_data_value()).StatusCode.is_good()
            finally:
                for client in (victim, bystander):
                    with contextlib.suppress(Exception):
                        await client.disconnect()
        entries = await s.rt.ctx[AUDIT].query(action="opcua.session.end")
        assert entries and entries[0].target_id == "view1" and entries[0].after == {"sessions": 1}

        # a user disabled where the OPC UA server is not told (another process) is found by the sweep
        again = Client(s.url)
        again.set_user("op1")
        again.set_password(PASSWORDS["op1"])
        await again.connect()
        try:
            component = next(c for c in s.rt.components if isinstance(c, OpcUaComponent))
            assert await component.sweep_sessions() == 0
            await s.rt.ctx[USERS].update("op1", Actor("test", "cli"), active=False, reason="elsewhere")
            assert await component.sweep_sessions() == 1
        finally:
            with contextlib.suppress(Exception):
                await again.disconnect()


async def test_a_large_address_space_is_frozen_with_the_collector_off_until_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as at a large site (FREEZE_AFTER_NODES lowered to this small one): the build and the freeze
    # run with the collector off, so no full collection of the fresh heap runs on the event loop
    # between them; afterwards it is on again, and the address space is complete
    import gc

    from scada.opcua import component as opcua_component

    enabled_at_freeze: list[bool] = []
    real_freeze = gc.freeze

    def freeze() -> None:
        enabled_at_freeze.append(gc.isenabled())
        real_freeze()

    monkeypatch.setattr(opcua_component, "FREEZE_AFTER_NODES", 1)
    monkeypatch.setattr(opcua_component.gc, "freeze", freeze)
    try:
        async with opcua_site(tmp_path) as s:
            assert enabled_at_freeze[:1] == [False]
            assert gc.isenabled()
            assert s.server.site.has_object("room:B1-R101") and s.server.site.meters
    finally:
        gc.unfreeze()
