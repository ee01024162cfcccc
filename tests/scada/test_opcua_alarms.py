"""Alarms & Conditions end to end, seen by node-opcua (a client stack that is not ours): a meter the
simulator stops answering raises a communication-loss event at an event subscription on
``Server`` (and at its floor) within the poll interval + 2 s, with the meter as its source;
anonymous sessions receive it but may not acknowledge it; an operator's Acknowledge, Confirm and
AddComment over OPC UA are the engine's actions (in the HMI's API at once, audited); an
acknowledgement, comment, confirmation and shelving in the HMI reach OPC UA as events (AckedState
true, the Comment, ConfirmedState true, ShelvingState); shelving over OPC UA needs
``alarm_shelve``; ConditionRefresh resends what stands; a cleared, acknowledged alarm ends with
Retain false.

One server, one story (the steps build on each other)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asyncua import ua

from hmi.component import HMI_URL
from scada.simulator.component import SIMULATOR
from scada.users.audit import Actor
from scada.users.component import AUDIT, USERS

from ..protocols.opcua.nodeclient import NodeClient
from ..simulation import Control
from .opcua_site import PASSWORDS, meters_live, opcua_site

pytestmark = pytest.mark.slow

POLL_S = 0.5  # the slowest poll class of the test config (opcua_site: fast 0.3, energy 0.5, volume 0.5)
FIELDS = [
    "EventId", "EventType", "SourceNode", "SourceName", "Time", "Message", "Severity", "ConditionId", "ConditionName",
    "Retain", "ActiveState", "ActiveState.Id", "AckedState.Id", "ConfirmedState.Id", "ShelvingState.CurrentState",
    "Comment", "ClientUserId", "InputNode",
]
SERVER = "ns=0;i=2253"


@pytest.fixture(autouse=True)
def _admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")


async def event_where(c: NodeClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    """The first event notification that satisfies ``predicate`` (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("timed out waiting for an event")
        event = await c.next_event(left)
        if event.get("event") == "ev" and predicate(event["fields"]):
            return event


async def test_alarms_as_conditions_through_node_opcua(tmp_path: Path) -> None:
    extra = """
[alarms]
sync_interval_s = 60
[alarms.classes.comm_loss]
delay_on_s = 0
delay_off_s = 0
"""
    # one failed poll (no retry) takes a meter offline: the alarm follows the poll
    link_extra = "retries = 0\noffline_after_failures = 1"
    async with opcua_site(tmp_path, extra=extra, link_extra=link_extra) as s, aiohttp.ClientSession() as http:
        await meters_live(s.rt)
        sim = Control.of(http, s.rt.ctx[SIMULATOR])
        users = s.rt.ctx[USERS]
        await users.add("maint1", "maintenance", "maintenance-password", Actor("test", "cli"))
        token = await users.issue_token(await users.get("op1"))  # type: ignore[arg-type]
        api = s.rt.ctx[HMI_URL] + "/api/v1"

        async def call_api(method: str, path: str, body: Any = None, *, as_token: str | None = None) -> Any:
            async with http.request(method, api + path, json=body, headers={"Authorization": f"Bearer {as_token or token}"}) as r:
                assert r.status == 200, (path, await r.text())
                return await r.json()

        def condition(key: str) -> str:
            return s.node(f"condition:{key}")

        e101, e102 = condition("comm_loss:meter:E-101"), condition("comm_loss:meter:E-102")
        async with NodeClient(tmp_path / "pki-op") as op, NodeClient(tmp_path / "pki-other") as other:
            await op.connect(s.url, user="op1", password=PASSWORDS["op1"])
            await other.connect(s.url)  # anonymous
            await op("subscribe_events", nodeId=SERVER, fields=FIELDS, publishingInterval=50)
            await other("subscribe_events", nodeId=s.node("floor:B1-F1"), fields=FIELDS, publishingInterval=50)

            # -- a simulator fault: the communication-loss event, the meter as its source
            t0 = time.time()
            await sim.fault("E-101", "timeout")
            raised = await event_where(op, lambda f: f["ConditionId"] == e101)
            assert raised["received"] / 1000 - t0 < POLL_S + 2, raised["received"] / 1000 - t0
            f = raised["fields"]
            assert (f["SourceNode"], f["SourceName"], f["ConditionName"]) == (s.node("meter:E-101"), "E-101", "comm_loss")
            assert f["EventType"] == f"ns=0;i={ua.ObjectIds.InstrumentDiagnosticAlarmType}"  # an OffNormalAlarmType
            assert f["Message"] == "Communication lost: meter E-101 (room R101)" and f["Severity"] == 500  # medium
            assert (f["ActiveState"], f["ActiveState.Id"], f["AckedState.Id"], f["Retain"]) == ("Active", True, False, True)
            assert f["ShelvingState.CurrentState"] == "Unshelved" and f["InputNode"] == s.node("E-101.comm_ok")
            # an anonymous session receives it too, at the meter's floor
            seen = await event_where(other, lambda f: f["ConditionId"] == e101)
            assert seen["fields"]["EventId"] == f["EventId"]
            [alarm] = [a for a in (await call_api("GET", "/alarms"))["alarms"] if a["meter_id"] == "E-101"]
            assert alarm["state"] == "active_unack" and alarm["class"] == "comm_loss"

            # -- anonymous may not act on it
            refused = await other("acknowledge", conditionId=e101, eventId=f["EventId"], comment="me too")
            assert refused["status"] == "BadUserAccessDenied"

            # -- the operator acknowledges over OPC UA: the HMI's API shows it at once
            done = await op("acknowledge", conditionId=e101, eventId=f["EventId"], comment="crew informed")
            assert done["status"] == "Good"
            body = await call_api("GET", f"/alarms/{alarm['id']}")
            assert (body["alarm"]["state"], body["alarm"]["acked_by"], body["alarm"]["ack_reason"]) == ("active_ack", "op1", "crew informed")
            assert [(t["event"], t["actor"]) for t in body["transitions"]][-1] == ("acknowledge", "op1")
            [listed] = [a for a in (await call_api("GET", "/alarms"))["alarms"] if a["id"] == alarm["id"]]
            assert listed["acknowledged"] is True
            acked = await event_where(op, lambda f: f["ConditionId"] == e101 and f["AckedState.Id"] is True)
            assert (acked["fields"]["Comment"], acked["fields"]["ClientUserId"]) == ("crew informed", "op1")
            # Confirm (node-opcua's helper) and AddComment (the type's method, called on the ConditionId)
            assert (await op("confirm", conditionId=e101, eventId=acked["fields"]["EventId"], comment="cable checked"))["status"] == "Good"
            added = await op("call", objectId=e101, methodId=f"ns=0;i={ua.ObjectIds.ConditionType_AddComment}", args=[
                {"dataType": "ByteString", "value": acked["fields"]["EventId"]}, {"dataType": "LocalizedText", "value": "waiting for a spare"},
            ])
            assert added["status"] == "Good"
            body = await call_api("GET", f"/alarms/{alarm['id']}")
            assert (body["alarm"]["confirmed_by"], body["alarm"]["comment"], body["alarm"]["comment_by"]) == ("op1", "waiting for a spare", "op1")
            assert [t["event"] for t in body["transitions"]][-3:] == ["acknowledge", "confirm", "comment"]
            confirmed = await event_where(op, lambda f: f["ConditionId"] == e101 and f["ConfirmedState.Id"] is True)
            assert confirmed["fields"]["AckedState.Id"] is True

            # -- acknowledged in the HMI: OPC UA clients get the event with AckedState true
            await sim.fault("E-102", "timeout")
            second = await event_where(op, lambda f: f["ConditionId"] == e102)
            assert second["fields"]["AckedState.Id"] is False
            [alarm2] = [a for a in (await call_api("GET", "/alarms"))["alarms"] if a["meter_id"] == "E-102"]
            await call_api("POST", f"/alarms/{alarm2['id']}/acknowledge", {"reason": "seen on the console"})
            from_hmi = await event_where(op, lambda f: f["ConditionId"] == e102 and f["AckedState.Id"] is True)
            assert (from_hmi["fields"]["Comment"], from_hmi["fields"]["ClientUserId"]) == ("seen on the console", "op1")
            # the console's comment and confirm reach OPC UA the same way
            await call_api("POST", f"/alarms/{alarm2['id']}/comment", {"comment": "gateway rebooted"})
            commented = await event_where(op, lambda f: f["ConditionId"] == e102 and f["Comment"] == "gateway rebooted")
            assert commented["fields"]["ClientUserId"] == "op1"
            await call_api("POST", f"/alarms/{alarm2['id']}/confirm", {"reason": "checked on site"})
            assert (await event_where(op, lambda f: f["ConditionId"] == e102 and f["ConfirmedState.Id"] is True))["fields"]["Retain"]

            # -- shelving needs alarm_shelve: the operator may not, maintenance may
            shelve = {"objectId": e102, "methodId": f"ns=0;i={ua.ObjectIds.AlarmConditionType_ShelvingState_TimedShelve}",
                      "args": [{"dataType": "Double", "value": 600_000.0}]}
            assert (await op("call", **shelve))["status"] == "BadUserAccessDenied"
            await other("close")
            await other.connect(s.url, user="maint1", password="maintenance-password")
            assert (await other("call", **shelve))["status"] == "Good"
            body = await call_api("GET", f"/alarms/{alarm2['id']}")
            assert (body["alarm"]["state"], body["alarm"]["shelved_by"]) == ("shelved", "maint1")
            shelved = await event_where(op, lambda f: f["ConditionId"] == e102 and f["ShelvingState.CurrentState"] == "Timed Shelved")
            assert shelved["fields"]["Retain"] is True
            # unshelved and shelved again in the console (maintenance's token): OPC UA follows
            maint_token = await users.issue_token(await users.get("maint1"))  # type: ignore[arg-type]
            await call_api("POST", f"/alarms/{alarm2['id']}/unshelve", {"reason": "back"}, as_token=maint_token)
            await event_where(op, lambda f: f["ConditionId"] == e102 and f["ShelvingState.CurrentState"] == "Unshelved")
            await call_api("POST", f"/alarms/{alarm2['id']}/shelve", {"reason": "works", "minutes": 10}, as_token=maint_token)
            await event_where(op, lambda f: f["ConditionId"] == e102 and f["ShelvingState.CurrentState"] == "Timed Shelved")

            # -- ConditionRefresh: what stands, between RefreshStart and RefreshEnd
            assert (await op("condition_refresh", sub=0))["status"] == "Good"
            refresh_start = await event_where(op, lambda f: f["EventType"] == f"ns=0;i={ua.ObjectIds.RefreshStartEventType}")
            assert refresh_start["fields"]["SourceNode"] == SERVER
            resent: list[str] = []
            while True:
                event = await event_where(op, lambda f: True)
                if event["fields"]["EventType"] == f"ns=0;i={ua.ObjectIds.RefreshEndEventType}":
                    break
                resent.append(event["fields"]["ConditionId"])
            # each standing condition once; on a loaded machine another meter may miss a 0.5 s poll with
            # no retry and stand in comm_loss too, which is right but not this test's business
            assert sorted(c for c in resent if c in (e101, e102)) == sorted([e101, e102])
            assert all(":comm_loss:meter:" in c for c in resent if c not in (e101, e102)), resent

            # -- the meter answers again: its acknowledged alarm ends, and says so
            await sim.fault("E-101", "none")
            ended = await event_where(op, lambda f: f["ConditionId"] == e101 and f["ActiveState.Id"] is False, timeout=15)
            assert ended["fields"]["Retain"] is False
            body = await call_api("GET", f"/alarms/{alarm['id']}")
            assert body["alarm"]["state"] == "normal"
            gone = await op("acknowledge", conditionId=e101, eventId=ended["fields"]["EventId"], comment="")
            assert gone["status"] == "BadNodeIdUnknown"  # nothing stands for it any more

        entries = await s.rt.ctx[AUDIT].query(limit=500)
        seen_audit = {(e.action, e.actor, e.source, e.outcome) for e in entries}
        assert ("alarm.acknowledge", "op1", "opcua", "ok") in seen_audit  # the engine's own record, by the OPC UA user
        assert ("alarm.confirm", "op1", "opcua", "ok") in seen_audit
        assert ("alarm.comment", "op1", "opcua", "ok") in seen_audit
        assert ("alarm.shelve", "maint1", "opcua", "ok") in seen_audit
        assert ("opcua.alarm.acknowledge", "anonymous", "opcua", "denied") in seen_audit
        assert ("opcua.alarm.timedshelve", "op1", "opcua", "denied") in seen_audit
