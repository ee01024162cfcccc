"""The historian inside the server: live tags in, history out through the Python API,
``GET /api/v1/history`` (JSON, CSV, errors, permissions) and ``scada history query``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from historian import IntervalRecord, SqliteSettings, make_backend
from historian.rollup import day_rollups
from hmi.component import HMI_URL
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.history.service import BUFFER_FILL_TAG, HISTORY
from scada.site.component import ASSETS
from scada.site.importer import import_site_file
from scada.users.audit import Actor
from scada.users.component import USERS
from tags import Quality
from tags.model import utcnow

from ..harness import passwords_hashed_once, running_server, server_config
from ..historian.producers import SyntheticMeter

TZ = ZoneInfo("Asia/Shanghai")
SITE = """
[site]
id = "s"
name = "S"
timezone = "Asia/Shanghai"

[[buildings]]
id = "B1"
name = "B1"

[[floors]]
id = "B1-F1"
building = "B1"
level = 1
name = "F1"

[[rooms]]
id = "R1"
floor = "B1-F1"
name = "R1"

[[rooms]]
id = "R2"
floor = "B1-F1"
name = "R2"

[[meters]]
id = "E-1"
kind = "electricity"
room = "R1"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 1

[[meters]]
id = "E-2"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 2

[[meters]]
id = "E-3"
kind = "electricity"
room = "R2"
profile = "acrel-ddsy1352"
link = "gw"
unit_id = 3
"""
DAY0 = datetime(2024, 5, 1, tzinfo=TZ)


def history_records() -> list[IntervalRecord]:
    """Two days of 15-minute intervals: meter E-n uses n × (k % 5) × 0.01 kWh in interval k."""
    out = []
    for k in range(192):
        start = int(DAY0.timestamp()) + 900 * k
        for n in (1, 2, 3):
            values: dict[str, int | float] = {
                "energy_total": n * (k % 5) * 10_000, "samples": 15, "good_samples": 15,
                "flag_gap": 0, "flag_reset": 0, "flag_first": 0, "power_avg": float(n), "power_max": n + 0.5, "power_min": n - 0.5,
            }
            out.append(IntervalRecord(f"E-{n}", start, 900, values))
    return out


async def store_history(path: Path) -> None:
    backend = make_backend(SqliteSettings(path))
    await backend.open()
    records = history_records()
    await backend.write_intervals(records)
    await backend.write_days(day_rollups(records, TZ))
    await backend.close()


def day_total(n: int, day: int) -> Decimal:
    return sum((Decimal(n * (k % 5)) / 100 for k in range(96 * day, 96 * (day + 1))), Decimal(0))


def plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    (tmp_path / "site.toml").write_text(SITE)
    await store_history(tmp_path / "var" / "historian.db")
    config = server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", "[historian]\ninterval_min = 15\n")
    async with running_server(config) as rt:
        await import_site_file(rt.ctx[DATABASE], tmp_path / "site.toml", Actor.system("test"), known_links={"gw"})
        await rt.ctx[ASSETS].load()
        with passwords_hashed_once():
            await rt.ctx[USERS].add("viewer1", "viewer", "viewer-password", Actor("t", "cli"))
            await rt.ctx[USERS].add("eng1", "engineer", "engineer-password", Actor("t", "cli"))
        async with aiohttp.ClientSession() as http:
            yield rt, http, rt.ctx[HMI_URL] + "/api/v1"


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> dict[str, str]:
    async with http.post(base + "/auth/token", json={"user": user, "password": password}) as r:
        assert r.status == 200
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def test_live_tags_become_intervals(server: Any) -> None:
    rt, _, _ = server
    tagdb = rt.ctx[TAGDB]
    fill = tagdb.read(BUFFER_FILL_TAG)
    assert fill.quality is Quality.GOOD and fill.value == 0.0
    meters = [SyntheticMeter(tagdb, "E-1", start_kwh="50.00"), SyntheticMeter(tagdb, "E-2", start_kwh="9.99")]
    now = utcnow()
    for k in range(5):  # five polls within milliseconds: one interval (unless very unlucky)
        for m in meters:
            m.consume("0.25")
            m.poll(now + timedelta(milliseconds=k), power=float(k))
    service = rt.ctx[HISTORY]
    historian = service.historian
    for _ in range(100):  # let the intake task take the changes
        if historian.aggregator.fed >= 5 * 2 * 8:
            break
        await asyncio.sleep(0.01)
    # close the running interval now instead of waiting for the clock
    later = time.time() + historian.grid.length + 20
    await historian.close_due(later)
    assert await historian.forwarder.drain(10)
    start = datetime.fromtimestamp(historian.grid.start_of(now.timestamp()), TZ)
    frame = await service.query_by("meter", ["E-1", "E-2"], ["energy_total", "power", "samples"], start, start + timedelta(minutes=15))
    got = {(r.meter, r.point): r.value for r in frame.itertuples()}
    # the first interval counts from the first poll: 4 x 0.25 kWh after it
    assert got[("E-1", "energy_total")] == 1.0 and got[("E-2", "energy_total")] == 1.0
    assert got[("E-1", "samples")] == 5 and got[("E-1", "power")] == 2.0


async def test_python_api_by_room_floor_building(server: Any) -> None:
    rt, _, _ = server
    service = rt.ctx[HISTORY]
    end = DAY0 + timedelta(days=2)
    rooms = await service.query_by("room", ["R1", "R2"], ["energy_total"], DAY0, end, "1d")
    values = {(r.room, r.time.day): Decimal(repr(r.value)) for r in rooms.itertuples()}
    assert values[("R1", 1)] == day_total(1, 0) and values[("R2", 2)] == day_total(2, 1) + day_total(3, 1)
    floor = await service.query_by("floor", ["B1-F1"], ["energy_total"], DAY0, end, "1mo")
    assert Decimal(repr(float(floor["value"].iloc[0]))) == sum(day_total(n, d) for n in (1, 2, 3) for d in (0, 1))
    building = await service.query_by("building", ["B1"], ["power"], DAY0, end, "1d", "max")
    assert list(building["value"]) == [3.5, 3.5]


async def test_rest_json_and_csv(server: Any) -> None:
    _, http, base = server
    auth = await login(http, base, "eng1", "engineer-password")
    params = {"meter": "E-1,E-2", "point": "energy_total", "start": "2024-05-01", "end": "2024-05-03T00:00:00+08:00", "interval": "1d"}
    async with http.get(base + "/history", params=params, headers=auth) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["timezone"] == "Asia/Shanghai" and body["group_by"] == "meter" and body["interval"] == "1d"
    assert body["start"] == "2024-05-01T00:00:00+08:00"
    rows = {(row["meter"], row["time"]): row for row in body["rows"]}
    assert len(rows) == 4
    row = rows[("E-2", "2024-05-02T00:00:00+08:00")]
    assert Decimal(repr(row["value"])) == day_total(2, 1) and row["intervals"] == 96 and row["flags"] == ""
    async with http.get(base + "/history", params={**params, "format": "csv"}, headers=auth) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert "attachment" in r.headers["Content-Disposition"]
        table = list(csv.DictReader(io.StringIO(await r.text())))
    assert table[0] == {"time": "2024-05-01T00:00:00+08:00", "meter": "E-1", "point": "energy_total",
                        "value": plain(day_total(1, 0)), "intervals": "96", "flags": ""}
    # repeated parameters and a UTC offset other than the site's
    async with http.get(
        base + "/history",
        params=[("room", "R2"), ("point", "energy_total"), ("point", "power"), ("start", "2024-04-30T16:00:00Z"), ("end", "2024-04-30T17:00:00Z")],
        headers=auth,
    ) as r:
        body = await r.json()
    assert body["group_by"] == "room" and len(body["rows"]) == 8  # 4 stored intervals x 2 points
    assert body["rows"][0]["time"] == "2024-05-01T00:00:00+08:00"


BAD_PARAMETERS = [
    ({"meter": "E-1", "start": "2024-05-01T00:00:00", "end": "2024-05-02"}, "start"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-04-02"}, "end"),
    ({"meter": "E-9", "start": "2024-05-01", "end": "2024-05-02"}, "meter"),
    ({"room": "R9", "start": "2024-05-01", "end": "2024-05-02"}, "room"),
    ({"start": "2024-05-01", "end": "2024-05-02"}, "meter"),
    ({"meter": "E-1", "room": "R1", "start": "2024-05-01", "end": "2024-05-02"}, "meter"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02", "interval": "7min"}, "interval"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02", "point": "energy"}, "point"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02", "point": "power", "agg": "sum"}, "agg"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02", "format": "xml"}, "format"),
    ({"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02", "colour": "red"}, "colour"),
    ({"meter": "E-1", "end": "2024-05-02"}, "start"),
]


async def test_rest_bad_parameters_are_422_naming_them(server: Any) -> None:
    _, http, base = server
    auth = await login(http, base, "eng1", "engineer-password")
    for params, field in BAD_PARAMETERS:
        async with http.get(base + "/history", params=params, headers=auth) as r:
            assert r.status == 422, (params, await r.text())
            body = await r.json()
        assert body["field"] == field and body["error"].startswith(field + ":"), (params, body)


async def test_rest_needs_history_export(server: Any) -> None:
    _, http, base = server
    params = {"meter": "E-1", "start": "2024-05-01", "end": "2024-05-02"}
    async with http.get(base + "/history", params=params) as r:
        assert r.status == 401
    auth = await login(http, base, "viewer1", "viewer-password")
    async with http.get(base + "/history", params=params, headers=auth) as r:
        assert r.status == 403 and "history_export" in (await r.json())["error"]
    async with http.get(base + "/openapi.json") as r:
        op = (await r.json())["paths"]["/api/v1/history"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"meter", "room", "start", "end", "interval", "format"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scada", *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


async def test_cli_history_query(tmp_path: Path) -> None:
    cfg = tmp_path / "scada.toml"
    cfg.write_text('[site]\nname = "S"\ntimezone = "Asia/Shanghai"\n[[links]]\nname = "gw"\nhost = "127.0.0.1"\nport = 5020\n')
    (tmp_path / "site.toml").write_text(SITE)
    r = run_cli("import-site", str(tmp_path / "site.toml"), "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    await store_history(tmp_path / "var" / "historian.db")

    r = run_cli("history", "query", "--config", str(cfg), "--meter", "E-3", "--point", "energy_total", "--start", "2024-05-01",
                "--end", "2024-05-03", "--interval", "1d", "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "time,meter,point,value,intervals,flags"
    assert lines[1] == f"2024-05-01T00:00:00+08:00,E-3,energy_total,{plain(day_total(3, 0))},96,"
    assert len(lines) == 3

    r = run_cli("history", "query", "--config", str(cfg), "--building", "B1", "--start", "2024-05-01T00:00:00+08:00",
                "--end", "2024-05-01T01:00:00+08:00", "--interval", "1h", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["group_by"] == "building" and body["rows"][0]["building"] == "B1"
    assert Decimal(repr(body["rows"][0]["value"])) == Decimal("0.36")  # (0+1+2+3) x 0.01 x (1+2+3)

    r = run_cli("history", "query", "--config", str(cfg), "--meter", "E-1", "--start", "2024-05-01T00:00:00", "--end", "2024-05-02", cwd=tmp_path)
    assert r.returncode == 2 and "--start: '2024-05-01T00:00:00' has no UTC offset" in r.stderr
    r = run_cli("history", "query", "--config", str(cfg), "--meter", "E-7", "--start", "2024-05-01", "--end", "2024-05-02", cwd=tmp_path)
    assert r.returncode == 2 and "--meter: unknown meter 'E-7'" in r.stderr


async def test_buffer_alarm_is_raised_before_the_buffer_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """InfluxDB unreachable: the buffer fills, a warning is logged at warn_fill, the alarm engine
    raises the historian_buffer alarm at its limit (80 %), before anything is dropped."""
    from scada.alarms.component import ALARMS
    from scada.alarms.store import AlarmFilter

    from ..services import free_port

    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    extra = f"""
[historian]
backend = "influx"
[historian.influx]
url = "http://127.0.0.1:{free_port()}"
timeout_s = 1
[historian.buffer]
max_points = 100
warn_fill = 0.5
"""
    async with running_server(server_config(tmp_path, f"sqlite:///{tmp_path / 'scada.db'}", extra)) as rt:
        tagdb, engine = rt.ctx[TAGDB], rt.ctx[ALARMS]
        historian = rt.ctx[HISTORY].historian
        for n in range(9):
            SyntheticMeter(tagdb, f"E-{n}")
        fills = []
        with caplog.at_level(logging.WARNING, logger="historian"):
            for _ in range(5):  # each closed interval: 9 records and 9 day rollups
                await historian.close_due(historian.aggregator.next_due_s)
                await engine.settle()
                fills.append(tagdb.read(BUFFER_FILL_TAG).value)
                alarms = engine.active(AlarmFilter(classes=frozenset({"historian_buffer"})))
                assert bool(alarms) == (fills[-1] >= 0.8), fills
        assert fills == [0.18, 0.36, 0.54, 0.72, 0.9] and historian.spool.dropped == 0
        assert [r.getMessage() for r in caplog.records if "filling up" in r.getMessage()] == [
            "historian buffer filling up; data is dropped when it is full"
        ]
        [alarm] = engine.active(AlarmFilter(classes=frozenset({"historian_buffer"})))
        assert alarm.detail == "buffer 90% full (limit 80%)"
