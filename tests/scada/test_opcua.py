"""The OPC UA server in the running runtime, seen by node-opcua (a client stack that is not
ours): browse and find meters by type, read and subscribe, methods refused or allowed by role and
audited, signed and encrypted sessions with a certificate accepted through the trust list, and
the address space following the asset registry."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from scada.audit import Actor
from scada.foundation import ASSETS, AUDIT, TAGDB
from tags import DataType, Quality, QualityReason

from ..protocols.opcua.nodeclient import NodeClient
from .opcua_site import PASSWORDS, feed_meters, opcua_site, wait_until

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scada", *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


async def test_browse_find_meters_by_type_read_and_subscribe(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s:
        await feed_meters(s.rt, T0)
        ns = s.server.ns
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)
            tree = await c("tree", nodeId=s.node("site"), path="/Site")
            by_type: dict[str, set[str]] = {}
            for node in tree:
                by_type.setdefault(node["typeDefinition"], set()).add(node["path"])
            electricity = by_type[f"ns={ns};s=type:ElectricityMeterType"]
            water = by_type[f"ns={ns};s=type:WaterMeterType"]
            assert electricity == {
                "/Site/Building 1/F1/R101/E-101", "/Site/Building 1/F1/R102/E-102",
                "/Site/Building 1/F2/R201/E-201", "/Site/Building 1/E-COMMON",
            }
            assert water == {"/Site/Building 1/F1/R101/W-101"}
            assert by_type[f"ns={ns};s=type:RoomType"] == {
                "/Site/Building 1/F1/R101", "/Site/Building 1/F1/R102", "/Site/Building 1/F2/R201",
            }
            paths = {n["path"] for n in tree}
            assert {"/Site/Building 1/F1/R101/E-101/EnergyTotal", "/Site/Building 1/F1/R101/E-101/RelayClosed",
                    "/Site/Building 1/F1/R101/E-101/CommOk", "/Site/Building 1/F1/R101/W-101/VolumeTotal",
                    "/Site/Building 1/F1/R101/W-101/ValveOpen", "/Site/Building 1/F1/R101/Balance",
                    "/Site/Building 1/F1/R101/SupplyState", "/Site/Building 1/F1/R101/AlarmLevel",
                    "/Site/Building 1/F1/R101/AccountState"} <= paths
            # the alarm engine's count tags, where it runs (it does by default)
            assert {"/Site/Building 1/F1/R101/E-101/ActiveAlarms", "/Site/Building 1/F1/R101/ActiveAlarms",
                    "/Site/Building 1/F1/R101/AlarmPriority"} <= paths
            (alarms,) = await c("read", nodes=[s.node("room:B1-R101.alarm_priority")])
            assert alarms["dataType"] == "Int32" and alarms["status"] in ("Good", "UncertainInitialValue")
            translated = await c("translate", path=f"/Objects/{ns}:Site/{ns}:Building 1/{ns}:F1/{ns}:R101/{ns}:E-101/{ns}:Power")
            assert translated["nodeId"] == s.node("E-101.power")
            # values: Good with the source timestamp the producer gave; rooms uncertain until fed
            energy, balance, level = await c("read", nodes=[s.node("E-101.energy_total"), s.node("room:B1-R101.balance"), s.node("room:B1-R101.alarm_level")])
            assert energy["status"] == "Good" and energy["dataType"] == "Double" and energy["value"] > 100
            assert datetime.fromisoformat(energy["sourceTimestamp"].replace("Z", "+00:00")) == T0
            assert energy["serverTimestamp"] is not None
            assert balance["status"] == "UncertainInitialValue" and level["status"] == "UncertainInitialValue"
            attrs = await c("read_attributes", nodeId=s.node("E-101.energy_total"), attributes=["DataType", "Description", "BrowseName"])
            assert attrs["DataType"]["value"] == "ns=0;i=11"
            # subscribe, then the value changes at the source
            await c("subscribe", nodes=[s.node("E-101.power")], publishingInterval=50)
            first = await c.next_event()
            assert first["status"] == "Good"
            s.rt.ctx[TAGDB].write("E-101.power", 4.75, source_ts=T0 + timedelta(seconds=5))
            changed = await c.next_event()
            assert changed["value"] == 4.75 and changed["status"] == "Good"
            assert datetime.fromisoformat(changed["sourceTimestamp"].replace("Z", "+00:00")) == T0 + timedelta(seconds=5)
            # the meter stops answering: the client sees why
            s.rt.ctx[TAGDB].set_quality(["E-101.power"], Quality.BAD, QualityReason.COMM_FAILURE)
            offline = await c.next_event()
            assert offline["status"] == "BadCommunicationError" and offline["value"] is None


async def test_methods_by_role_and_audit(tmp_path: Path) -> None:
    async with opcua_site(tmp_path) as s:
        await feed_meters(s.rt, T0)
        set_relay = {"objectId": s.node("meter:E-101"), "methodId": s.node("meter:E-101/SetRelay"),
                     "args": [{"dataType": "Boolean", "value": False}]}
        recharge = {"objectId": s.node("room:B1-R101"), "methodId": s.node("room:B1-R101/Recharge"),
                    "args": [{"dataType": "Double", "value": 50.0}, {"dataType": "String", "value": "PAY-7"}]}
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)  # anonymous
            assert (await c("call", **set_relay))["status"] == "BadUserAccessDenied"
            write = await c.request("write", nodeId=s.node("E-101.power"), dataType="Double", value=1.0)
            assert not write["ok"] and write["status"] == "BadUserAccessDenied"
            await c("close")
            await c.connect(s.url, user="view1", password=PASSWORDS["view1"])
            assert (await c("call", **set_relay))["status"] == "BadUserAccessDenied"
            assert (await c("call", **recharge))["status"] == "BadUserAccessDenied"
            await c("close")
            await c.connect(s.url, user="op1", password=PASSWORDS["op1"])
            # allowed; the command path is not in this server yet, so it says so (no fake success)
            assert (await c("call", **set_relay))["status"] == "BadNotImplemented"
            assert (await c("call", **recharge))["status"] == "BadUserAccessDenied"  # operators do not recharge
            bad_args = await c("call", **{**set_relay, "args": [{"dataType": "String", "value": "yes"}]})
            assert bad_args["status"] == "BadInvalidArgument" and bad_args["inputArgumentResults"] == ["BadTypeMismatch"]
            await c("close")
            await c.connect(s.url, user="cash1", password=PASSWORDS["cash1"])
            assert (await c("call", **recharge))["status"] == "BadNotImplemented"  # until the ledger is on main
            nan = await c("call", **{**recharge, "args": [{"dataType": "Double", "value": "NaN"}, {"dataType": "String", "value": "X"}]})
            assert nan["status"] == "BadInvalidArgument"
            refused = await c.request("connect", endpoint=s.url, securityMode="None", securityPolicy="None",
                                      pkiDir=str(tmp_path / "client-pki"), user="cash1", password="wrong-password")
            assert not refused["ok"] and refused["status"] == "BadUserAccessDenied"
        entries = await s.rt.ctx[AUDIT].query(limit=100)
        seen = {(e.action, e.actor, e.target_id, e.outcome) for e in entries}
        assert ("opcua.set_relay", "anonymous", "E-101", "denied") in seen
        assert ("opcua.set_relay", "view1", "E-101", "denied") in seen
        assert ("opcua.recharge", "view1", "B1-R101", "denied") in seen
        assert ("opcua.set_relay", "op1", "E-101", "failed") in seen
        assert ("opcua.recharge", "op1", "B1-R101", "denied") in seen
        assert ("opcua.recharge", "cash1", "B1-R101", "failed") in seen
        assert ("opcua.write", "anonymous", "Write", "denied") in seen
        assert ("opcua.login", "cash1", "cash1", "denied") in seen
        assert ("opcua.login", "op1", "op1", "ok") in seen
        denied = next(e for e in entries if e.action == "opcua.set_relay" and e.actor == "view1")
        assert denied.after == {"closed": False} and "relay_control" in denied.reason and "127.0.0.1" in denied.reason


async def test_signed_and_encrypted_session_after_trusting_the_client(tmp_path: Path) -> None:
    async with opcua_site(tmp_path, security='["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"]', anonymous=False) as s:
        await feed_meters(s.rt, T0, {"E-101": {"energy_total": (DataType.FLOAT, "kWh")}})
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.client_certificate()
            secure = {"endpoint": s.url, "securityMode": "SignAndEncrypt", "securityPolicy": "Basic256Sha256",
                      "pkiDir": str(tmp_path / "client-pki"), "user": "op1", "password": PASSWORDS["op1"]}
            untrusted = await c.request("connect", **secure)
            assert not untrusted["ok"] and untrusted["status"] == "BadCertificateUntrusted"
            listing = cli("opcua", "certs", "--config", str(s.config_file), cwd=tmp_path)
            assert listing.returncode == 0, listing.stderr
            rejected = listing.stdout.split("rejected client certificates")[1].splitlines()[1].split()
            thumbprint = rejected[0]
            assert len(thumbprint) == 40 and "urn:scada-interop-test" in listing.stdout
            trusted = cli("opcua", "trust", thumbprint[:12], "--config", str(s.config_file), "--reason", "interop test", cwd=tmp_path)
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
        await feed_meters(s.rt, T0)
        assets = s.rt.ctx[ASSETS]
        actor = Actor("test", "cli")
        await assets.replace_meter("E-102", "E-102B", actor, reason="meter swapped")
        await wait_until(lambda: s.server.site.has_object("meter:E-102B") and not s.server.site.has_object("meter:E-102"))
        await assets.set_active("E-201", False, actor, reason="out of service")
        await wait_until(lambda: not s.server.site.has_object("meter:E-201"))
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url)
            room = await c("browse", nodeId=s.node("room:B1-R102"))
            names = {r["browseName"].split(":", 1)[1] for r in room["references"]}
            assert "E-102B" in names and "E-102" not in names
            r201 = await c("browse", nodeId=s.node("room:B1-R201"))
            assert "E-201" not in {r["browseName"].split(":", 1)[1] for r in r201["references"]}
            # the new meter's points appear when its producer registers and writes them
            await feed_meters(s.rt, T0, {"E-102B": {"energy_total": (DataType.FLOAT, "kWh"), "relay_closed": (DataType.BOOL, "")}})
            (energy,) = await c("read", nodes=[s.node("E-102B.energy_total")])
            assert energy["status"] == "Good"
            await assets.set_active("E-201", True, actor, reason="back in service")
            await wait_until(lambda: s.server.site.has_object("meter:E-201") and s.server.site.has_tag("E-201.power"))
            r201 = await c("browse", nodeId=s.node("meter:E-201"))
            assert {"Power", "SetRelay"} <= {r["browseName"].split(":", 1)[1] for r in r201["references"]}


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
