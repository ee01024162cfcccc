"""The alarm console's REST API on a running server: list, acknowledge, shelve, out of service,
with permissions, the alarm classes' allowed roles, and clear errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmi.component import HMI_URL
from scada.alarms.component import ALARMS
from scada.core.tags import TAGDB
from scada.users.audit import Actor
from scada.users.component import AUDIT, USERS

from ..harness import passwords_hashed_once
from ..scada.alarms.server import alarm_server, write_config

USERS_ = {"olga": "operator", "max": "maintenance", "vic": "viewer", "eve": "engineer"}


@pytest.fixture
async def api(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    path = write_config(tmp_path, migrated_db_url, """
max_shelve_hours = 8
[alarms.classes.comm_loss]
delay_on_s = 0
delay_off_s = 0
[alarms.classes.tamper]
ack_roles = ["maintenance"]
""")
    async with alarm_server(path) as rt:
        users = rt.ctx[USERS]
        tokens = {}
        for name, role in USERS_.items():
            with passwords_hashed_once():
                user = await users.add(name, role, f"{name}-password", Actor("t", "cli"))
            tokens[name] = await users.issue_token(user)
        base = rt.ctx[HMI_URL] + "/api/v1"
        async with aiohttp.ClientSession() as http:
            engine, tags = rt.ctx[ALARMS], rt.ctx[TAGDB]
            tags.write("E-R001.comm_ok", False)
            tags.write("E-R002.tamper", True)
            await engine.settle()

            async def call(method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {tokens[user]}"}
                async with http.request(method, base + path, json=body, headers=headers) as r:
                    return r.status, await r.json()

            yield {"call": call, "engine": engine, "rt": rt, "tags": tags, "http": http, "base": base}


def ids_by_class(body: dict[str, Any]) -> dict[str, int]:
    return {a["class"]: a["id"] for a in body["alarms"]}


async def test_list_and_filters(api: dict[str, Any]) -> None:
    call = api["call"]
    status, body = await call("GET", "/alarms", "vic")
    assert status == 200 and body["count"] == 2
    # console order: unacknowledged first, then priority (tamper is high, comm loss medium)
    assert [a["class"] for a in body["alarms"]] == ["tamper", "comm_loss"]
    first = body["alarms"][0]
    assert first["state"] == "active_unack" and first["priority_name"] == "high" and first["room_id"] == "R002"
    status, body = await call("GET", "/alarms?classes=comm_loss", "vic")
    assert [a["meter_id"] for a in body["alarms"]] == ["E-R001"]
    status, body = await call("GET", "/alarms?room=R002&min_priority=3", "vic")
    assert [a["class"] for a in body["alarms"]] == ["tamper"]
    status, body = await call("GET", "/alarms?classes=nonsense", "vic")
    assert status == 422 and body["field"] == "classes" and "nonsense" in body["error"]
    status, body = await call("GET", "/alarms?state=bogus", "vic")
    assert status == 422 and body["field"] == "state"
    async with api["http"].get(api["base"] + "/alarms") as r:
        assert r.status == 401


async def test_acknowledge_with_permissions_and_class_roles(api: dict[str, Any]) -> None:
    call = api["call"]
    ids = ids_by_class((await call("GET", "/alarms", "vic"))[1])
    status, body = await call("POST", f"/alarms/{ids['comm_loss']}/acknowledge", "vic", {"reason": "x"})
    assert status == 403 and "may not alarm_ack" in body["error"]
    status, body = await call("POST", f"/alarms/{ids['tamper']}/acknowledge", "olga", {"reason": "x"})
    assert status == 403 and body["error"] == "role operator may not acknowledge tamper alarms (allowed: maintenance)"
    status, body = await call("POST", f"/alarms/{ids['comm_loss']}/acknowledge", "olga", {"reason": "crew on the way"})
    assert status == 200
    assert body["alarm"]["state"] == "active_ack" and body["alarm"]["acked_by"] == "olga"
    assert body["alarm"]["ack_reason"] == "crew on the way"
    status, body = await call("POST", f"/alarms/{ids['comm_loss']}/acknowledge", "olga", {})
    assert status == 409 and body["error"] == "the alarm is already acknowledged"
    status, body = await call("POST", "/alarms/99999/acknowledge", "olga", {})
    assert status == 404 and body["error"] == "no alarm 99999"
    status, body = await call("POST", "/alarms/abc/acknowledge", "olga", {})
    assert status == 404
    status, body = await call("POST", f"/alarms/{ids['tamper']}/acknowledge", "olga", {"reason": 5})
    assert status == 422 and body["field"] == "reason"

    # several at once: each answers for itself
    status, body = await call("POST", "/alarms/acknowledge", "max", {"ids": [ids["tamper"], ids["comm_loss"]], "reason": "seen"})
    assert status == 200 and body["acknowledged"] == 1
    assert [(r["id"], r["ok"], r.get("status")) for r in body["results"]] == [
        (ids["tamper"], True, None), (ids["comm_loss"], False, 409),
    ]
    status, body = await call("GET", f"/alarms/{ids['comm_loss']}", "vic")
    assert [(t["event"], t["actor"], t["reason"]) for t in body["transitions"]] == [
        ("activate", "system:alarms", ""), ("acknowledge", "olga", "crew on the way"),
    ]
    # the engine audited the acknowledgement; the API audited the calls and the refusals of the
    # engine (403, 409, 404 for 99999), not the malformed requests (the id "abc", the body
    # {"reason": 5}), which were refused before any work and wrote nothing
    audit = api["rt"].ctx[AUDIT]
    assert {e.actor for e in await audit.query(action="alarm.acknowledge")} == {"olga", "max"}
    outcomes = [e.outcome for e in await audit.query(action="api.alarms.acknowledge", actor="olga")]
    assert sorted(outcomes) == ["denied", "ok", "rejected", "rejected"]


async def test_comment_and_confirm(api: dict[str, Any]) -> None:
    call = api["call"]
    ids = ids_by_class((await call("GET", "/alarms", "vic"))[1])
    alarm = ids["comm_loss"]
    status, body = await call("POST", f"/alarms/{alarm}/comment", "vic", {"comment": "x"})
    assert status == 403 and "may not alarm_ack" in body["error"]
    status, body = await call("POST", f"/alarms/{alarm}/comment", "olga", {"comment": ""})
    assert status == 422 and body["field"] == "comment"
    status, body = await call("POST", f"/alarms/{alarm}/comment", "olga", {"comment": "gateway cabinet opened"})
    assert status == 200 and (body["alarm"]["comment"], body["alarm"]["comment_by"]) == ("gateway cabinet opened", "olga")
    status, body = await call("POST", f"/alarms/{alarm}/confirm", "olga", {})
    assert status == 409 and "acknowledge it before confirming" in body["error"]
    await call("POST", f"/alarms/{alarm}/acknowledge", "olga", {})
    status, body = await call("POST", f"/alarms/{alarm}/confirm", "olga", {"reason": "cable replaced"})
    assert status == 200 and body["alarm"]["confirmed_by"] == "olga" and body["alarm"]["comment"] == "cable replaced"
    status, body = await call("POST", f"/alarms/{alarm}/confirm", "olga", {})
    assert status == 409 and body["error"] == "the alarm is already confirmed"
    status, body = await call("GET", f"/alarms/{alarm}", "vic")
    assert [t["event"] for t in body["transitions"]] == ["activate", "comment", "acknowledge", "confirm"]
    audit = api["rt"].ctx[AUDIT]
    assert [e.actor for e in await audit.query(action="alarm.confirm")] == ["olga"]
    assert [e.actor for e in await audit.query(action="alarm.comment")] == ["olga"]


async def test_shelve_and_unshelve(api: dict[str, Any]) -> None:
    call = api["call"]
    ids = ids_by_class((await call("GET", "/alarms", "vic"))[1])
    alarm = ids["comm_loss"]
    status, body = await call("POST", f"/alarms/{alarm}/shelve", "olga", {"reason": "noisy", "minutes": 30})
    assert status == 403 and "may not alarm_shelve" in body["error"]
    status, body = await call("POST", f"/alarms/{alarm}/shelve", "max", {"minutes": 30})
    assert status == 422 and body["field"] == "reason"
    status, body = await call("POST", f"/alarms/{alarm}/shelve", "max", {"reason": "noisy", "minutes": 600})
    assert status == 422 and "at most 8 h" in body["error"] and body["field"] == "minutes"
    status, body = await call("POST", f"/alarms/{alarm}/shelve", "max", {"reason": "meter swap tomorrow", "minutes": 30})
    assert status == 200 and body["alarm"]["state"] == "shelved" and body["alarm"]["shelved_by"] == "max"
    status, body = await call("GET", "/alarms", "vic")
    assert [a["class"] for a in body["alarms"]] == ["tamper"]
    status, body = await call("GET", "/alarms?state=shelved", "vic")
    assert [a["id"] for a in body["alarms"]] == [alarm]
    status, body = await call("POST", f"/alarms/{alarm}/unshelve", "max", {"reason": "swap done early"})
    assert status == 200 and body["alarm"]["state"] == "active_unack"


async def test_out_of_service_and_history(api: dict[str, Any]) -> None:
    call = api["call"]
    status, body = await call("POST", "/alarms/out-of-service", "olga", {"object_type": "meter", "object_id": "E-R002", "reason": "x"})
    assert status == 403
    status, body = await call("POST", "/alarms/out-of-service", "eve", {"object_type": "meter", "object_id": "E-R002"})
    assert status == 422 and body["field"] == "reason"
    status, body = await call("POST", "/alarms/out-of-service", "eve", {"object_type": "meter", "object_id": "E-R999", "reason": "x"})
    assert status == 404 and body["error"] == "no meter 'E-R999'"
    status, body = await call("POST", "/alarms/out-of-service", "eve", {"object_type": "meter", "object_id": "E-R002", "reason": "replacing the meter"})
    assert status == 200 and body["out_of_service"]["actor"] == "eve"
    status, body = await call("GET", "/alarms", "vic")
    assert [a["class"] for a in body["alarms"]] == ["comm_loss"]
    status, body = await call("GET", "/alarms/out-of-service", "vic")
    assert [(o["object_type"], o["object_id"], o["reason"]) for o in body["out_of_service"]] == [("meter", "E-R002", "replacing the meter")]
    status, body = await call("POST", "/alarms/out-of-service", "eve", {"object_type": "meter", "object_id": "E-R002", "reason": "again"})
    assert status == 409 and "already out of service" in body["error"]
    api["tags"].write("E-R002.tamper", False)
    await api["engine"].settle()
    status, body = await call("POST", "/alarms/return-to-service", "eve", {"object_type": "meter", "object_id": "E-R002", "reason": "done"})
    assert status == 200
    status, body = await call("GET", "/alarms/history?classes=tamper", "vic")
    [tamper] = body["alarms"]
    assert tamper["state"] == "normal" and tamper["closed_at"] is not None
    status, body = await call("GET", "/alarms/history?since=2020-01-01T00:00:00", "vic")
    assert status == 422 and body["field"] == "since"
    status, body = await call("GET", "/alarms/deliveries", "vic")
    assert status == 403
    status, body = await call("GET", "/alarms/deliveries", "max")
    assert status == 200 and body["deliveries"] == []


async def test_openapi_lists_the_alarm_routes(api: dict[str, Any]) -> None:
    async with api["http"].get(api["base"] + "/openapi.json") as r:
        doc = await r.json()
    paths = doc["paths"]
    assert "/api/v1/alarms" in paths and "/api/v1/alarms/{alarm_id}/shelve" in paths
    shelve = paths["/api/v1/alarms/{alarm_id}/shelve"]["post"]
    assert shelve["description"] == "Requires the permission `alarm_shelve`."
    assert {"reason", "minutes"} <= set(doc["components"]["schemas"]["ShelveIn"]["properties"])
