"""End to end on a running server: a room's balance crossing each level sends one message per
level to its contact; the command line acknowledges and shelves while the server runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from scada.alarms.alarm import AlarmEvent
from scada.alarms.component import ALARMS, NOTIFIER
from scada.core.tags import TAGDB

from .server import alarm_server, write_config
from .servers import mail_server

CONTACTS = """
[[contacts]]
room = "R001"
name = "Ann Lee"
email = "ann@tenant.test"
language = "en"

[[contacts]]
room = "R002"
name = "王芳"
email = "wang@tenant.test"
phone = "+8613800000002"
language = "zh-CN"
"""


async def test_balance_levels_notify_the_contact_once_per_level(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    monkeypatch.setenv("T_SMTP_PASSWORD", "smtp-secret-1")
    (tmp_path / "contacts.toml").write_text(CONTACTS, encoding="utf-8")
    async with mail_server(tmp_path) as smtp:
        path = write_config(tmp_path, migrated_db_url, f"""
[alarms.notifications]
contacts_file = "contacts.toml"

[[alarms.notifications.channels]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {smtp.port}
user = "scada"
password = {{ env = "T_SMTP_PASSWORD" }}
sender = "Test Site <billing@site.test>"
ca_file = "{smtp.ca_file}"

[[alarms.notifications.routes]]
name = "tenants"
channel = "mail"
classes = ["balance_low", "balance_very_low", "balance_exhausted"]
to_room_contact = true
template = "tenant"
""")
        async with alarm_server(path) as rt:
            tags, engine, notifier = rt.ctx[TAGDB], rt.ctx[ALARMS], rt.ctx[NOTIFIER]

            async def level(room: str, value: int, balance: float) -> None:
                # what the prepaid engine publishes as the balance falls
                tags.write(f"room:{room}.balance", balance)
                tags.write(f"room:{room}.alarm_level", value)
                await engine.settle()
                await notifier.wait_idle()

            await level("R001", 0, 50.0)
            for value, balance in ((1, 20.0), (2, 5.0), (3, 0.0)):
                await level("R001", value, balance)
                # the same level reported again (the engine re-publishes): nothing new
                await level("R001", value, balance)
            await level("R002", 1, 19.9)

            ann = [m for m in smtp.received if m.rcpt_tos == ["ann@tenant.test"]]
            assert [m.message["Subject"] for m in ann] == [
                "Test Site: Balance low (level 1) - room 101",
                "Test Site: Balance very low (level 2) - room 101",
                "Test Site: Balance exhausted (level 3) - room 101",
            ]
            bodies = [m.message.get_content().replace("\r\n", "\n") for m in ann]
            assert bodies[0].startswith("Dear Ann Lee,\nthe prepaid balance of room 101 is low.\nCurrent balance: 20.00 CNY.")
            assert "is used up and the supply may be cut off" in bodies[2] and "0.00 CNY" in bodies[2]
            assert all(m.authenticated and m.tls for m in ann)
            [wang] = [m for m in smtp.received if m.rcpt_tos == ["wang@tenant.test"]]
            assert wang.message["Subject"] == "Test Site：房间102余额不足（一级报警）"
            assert "尊敬的王芳：" in wang.message.get_content()

            log = await notifier.deliveries()
            assert sorted((d.recipient, d.status) for d in log) == [("ann@tenant.test", "sent")] * 3 + [("wang@tenant.test", "sent")]


async def _scada(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scada", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ}, stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def _next(sub, event: str) -> AlarmEvent:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(20):
        while True:
            ev = await sub.get()
            if ev.event == event:
                return ev  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_cli_acts_on_alarms_while_the_server_runs(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    path = write_config(tmp_path, migrated_db_url, "[alarms.classes.comm_loss]\ndelay_on_s = 0\ndelay_off_s = 0\n")
    async with alarm_server(path) as rt:
        tags, engine = rt.ctx[TAGDB], rt.ctx[ALARMS]
        tags.write("E-R001.comm_ok", False)
        tags.write("E-R002.comm_ok", False)
        await engine.settle()
        by_meter = {a.meter_id: a.id for a in engine.active()}
        first, second = by_meter["E-R001"], by_meter["E-R002"]
        sub = engine.subscribe(name="test")

        code, out, err = await _scada("alarms", "list", "--config", str(path), cwd=tmp_path)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:4] == ["id", "priority", "state", "class"]
        assert {line.split()[0] for line in lines[1:]} == {str(first), str(second)}
        assert "Communication lost: meter E-R001 (room 101)" in out

        code, out, err = await _scada("alarms", "ack", str(first), "--reason", "seen on site", "--config", str(path), cwd=tmp_path)
        assert code == 0, err
        assert f"alarm {first} acknowledged: comm_loss meter E-R001 is now active_ack" in out
        ev = await _next(sub, "acknowledge")  # the running engine picked it up from the database
        assert ev.alarm.id == first and ev.transition.reason == "seen on site"
        assert engine.get(first).state.value == "active_ack"  # type: ignore[union-attr]
        code, out, err = await _scada("alarms", "confirm", str(first), "--reason", "cable fixed", "--config", str(path), cwd=tmp_path)
        assert code == 0 and f"alarm {first} confirmed" in out, err
        ev = await _next(sub, "confirm")
        assert (ev.alarm.confirmed_at is not None, ev.alarm.comment) == (True, "cable fixed")

        code, out, err = await _scada(
            "alarms", "shelve", str(second), "--minutes", "30", "--reason", "known", "--config", str(path), cwd=tmp_path
        )
        assert code == 0, err
        await _next(sub, "shelve")
        assert engine.get(second).state.value == "shelved"  # type: ignore[union-attr]
        assert [a.id for a in engine.active()] == [first]

        # the engine goes on from what the shell wrote: the meter recovers, the alarm ends
        tags.write("E-R001.comm_ok", True)
        await engine.settle()
        assert engine.get(first) is None

        code, out, err = await _scada("alarms", "show", str(first), "--json", "--config", str(path), cwd=tmp_path)
        doc = json.loads(out)
        assert [(t["event"], t["actor"]) for t in doc["transitions"]] == [
            ("activate", "system:alarms"), ("acknowledge", doc["acked_by"]), ("confirm", doc["acked_by"]), ("clear", "system:alarms"),
        ]
        code, out, err = await _scada("alarms", "ack", str(first), "999", "--config", str(path), cwd=tmp_path)
        assert code == 1
        assert f"error: alarm {first}: the alarm is not active: cannot acknowledge" in err
        assert "error: alarm 999: no alarm 999" in err
        sub.close()
