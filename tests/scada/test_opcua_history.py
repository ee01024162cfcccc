"""HistoryRead from the historian, seen by node-opcua (a client stack that is not ours), on each
historian backend (SQLite; InfluxDB on the suite's server): the variables the historian keeps are
historized; raw history of a meter's energy is what ``GET /api/v1/history`` answers, value for
value and time for time; processed Average (and Delta) over 15-minute and hourly intervals are
the historian's aggregates; 100,000 values arrive in pages through continuation points; a raw
logged balance comes back with its stored quality; users without ``history_export`` are refused.

One server per backend, one test each (the checks share its data)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asyncua import ua

from historian import IntervalRecord
from historian.records import RawPoint
from hmi.component import HMI_URL
from scada.history.service import HISTORY
from scada.users.component import USERS

from ..protocols.opcua.nodeclient import NodeClient
from ..services import InfluxServer
from .opcua_site import meters_live, opcua_site

pytestmark = pytest.mark.slow

LARGE = 100_000  # intervals of E-102's energy: the paged read
HOURS = 8  # of E-101's intervals before the test's reference time


@pytest.fixture(autouse=True)
def _admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=pytest.mark.influx)])
def backend_toml(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield 'backend = "sqlite"'
        return
    server: InfluxServer = request.getfixturevalue("influx_server")
    database = "t_" + uuid.uuid4().hex[:12]
    yield f'backend = "influx"\n[historian.influx]\nurl = "{server.url}"\ndatabase = "{database}"'
    server.query(f'DROP DATABASE "{database}"')


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def e101_intervals(t_end: int) -> list[IntervalRecord]:
    """E-101 over HOURS hours before ``t_end``: energy in exact millionths, power statistics; one
    interval flagged as a gap (uncertain), one without a good power sample."""
    out = []
    for i in range(HOURS * 4):
        start = t_end - (HOURS * 4 - i) * 900
        values: dict[str, int | float] = {
            "energy_total": 125_000 + 7_919 * i,  # 0.125 kWh, 0.132919 kWh, ...
            "samples": 30,
            "good_samples": 30,
        }
        if i != 5:
            values.update(power_min=1.0 + (i % 5) * 0.1, power_avg=1.5 + (i % 7) * 0.125, power_max=2.0 + (i % 3) * 0.5)
        else:
            values["good_samples"] = 0  # the meter was silent: no power statistics
        if i == HOURS * 4 - 3:
            values.update(flag_gap=1, gap_from=start - 1800)
        out.append(IntervalRecord("E-101", start, 900, values))
    return out


def e102_intervals(t_end: int) -> list[IntervalRecord]:
    first = t_end - LARGE * 900
    return [IntervalRecord("E-102", first + i * 900, 900, {"energy_total": 1_000 * (i % 97 + 1), "samples": 1, "good_samples": 1})
            for i in range(LARGE)]


async def test_history_read_through_node_opcua_matches_the_historian(tmp_path: Path, backend_toml: str) -> None:
    extra = f"""
[historian]
{backend_toml}

[[historian.raw]]
tags = ["room:*.balance"]
"""
    async with opcua_site(tmp_path, extra=extra) as s, aiohttp.ClientSession() as http:
        await meters_live(s.rt)
        historian = s.rt.ctx[HISTORY].historian
        # the reference time: the last quarter-hour boundary. The live historian writes only the
        # interval that started there (or later) while the test runs, never one before it.
        now = datetime.now(UTC)
        t_end = int(now.timestamp()) // 900 * 900
        end = datetime.fromtimestamp(t_end, UTC)
        await historian.backend.prepare()  # (InfluxDB: the database and its retention policies)
        await historian.backend.write_intervals(e101_intervals(t_end))
        large = e102_intervals(t_end - HOURS * 3600)
        for i in range(0, LARGE, 5_000):  # the historian's own batch size
            await historian.backend.write_intervals(large[i : i + 5_000])
        balance_tag = "room:B1-R101.balance"
        samples = [(end - timedelta(minutes=50), 80.0, 2), (end - timedelta(minutes=40), 79.5, 2),
                   (end - timedelta(minutes=30), float("nan"), 0), (end - timedelta(minutes=20), 78.25, 1)]
        await historian.backend.write_raw([
            RawPoint(balance_tag, int(t.timestamp() * 1_000_000), None if math.isnan(v) else v, q) for t, v, q in samples
        ])

        users = s.rt.ctx[USERS]
        token = await users.issue_token(await users.get("op1"))  # type: ignore[arg-type]
        api = s.rt.ctx[HMI_URL] + "/api/v1"

        async def history(**params: str) -> list[dict[str, Any]]:
            async with http.get(api + "/history", params=params, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
                return list((await r.json())["rows"])

        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url, user="op1", password="operator-password")
            # -- what is historized, and how it says so
            for tag, historized in (("E-101.energy_total", True), ("E-101.power", True), ("E-101.voltage", True),
                                    ("E-101.current", True), ("W-101.volume_total", True), (balance_tag, True),
                                    ("E-101.power_factor", False), ("E-101.comm_ok", False), ("room:B1-R101.supply_state", False)):
                attrs = await c("read_attributes", nodeId=s.node(tag), attributes=["Historizing", "AccessLevel"])
                assert attrs["Historizing"]["value"] is historized, tag
                assert bool(attrs["AccessLevel"]["value"] & ua.AccessLevel.HistoryRead.mask) is historized, tag

            # -- raw: the last hour of E-101's energy is what the REST API answers
            start = end - timedelta(hours=1)
            got = await c("history_raw", nodeId=s.node("E-101.energy_total"), start=start.isoformat(), end=end.isoformat())
            rows = await history(meter="E-101", point="energy_total", start=start.isoformat(), end=end.isoformat())
            assert got["status"] == "Good" and len(rows) == 4
            assert [(ts(v[0]), v[1]) for v in got["values"]] == [(ts(r["time"]), r["value"]) for r in rows]
            statuses = [v[2] for v in got["values"]]
            assert statuses == [0, ua.StatusCodes.Uncertain, 0, 0]  # the interval flagged as a gap
            assert [r["flags"] for r in rows] == ["", "gap", "", ""]

            # -- processed: Average over 15 minutes (and hours) is the historian's mean; Delta of
            # the energy register is the consumption (the historian's sum)
            # (hourly: whole clock hours, where the historian's hour buckets start)
            quarters = {"start": (end - timedelta(hours=HOURS)).isoformat(), "end": end.isoformat()}
            h0, h1 = -(-(t_end - HOURS * 3600) // 3600) * 3600, t_end // 3600 * 3600
            hours = {"start": datetime.fromtimestamp(h0, UTC).isoformat(), "end": datetime.fromtimestamp(h1, UTC).isoformat()}
            cases = [
                ("E-101.power", ua.ObjectIds.AggregateFunction_Average, quarters, 900, {"point": "power", "interval": "15min", "agg": "mean"}),
                ("E-101.power", ua.ObjectIds.AggregateFunction_Average, hours, 3600, {"point": "power", "interval": "1h", "agg": "mean"}),
                ("E-101.power", ua.ObjectIds.AggregateFunction_Maximum, hours, 3600, {"point": "power", "interval": "1h", "agg": "max"}),
                ("E-101.energy_total", ua.ObjectIds.AggregateFunction_Average, quarters, 900, {"point": "energy_total", "interval": "15min", "agg": "mean"}),
                ("E-101.energy_total", ua.ObjectIds.AggregateFunction_Delta, hours, 3600, {"point": "energy_total", "interval": "1h", "agg": "sum"}),
            ]
            for tag, aggregate, window, seconds, params in cases:
                got = await c("history_processed", nodeId=s.node(tag), aggregate=f"ns=0;i={aggregate}", intervalMs=seconds * 1000, **window)
                rows = await history(meter="E-101", **params, **window)
                expected = (datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"])) // timedelta(seconds=seconds)
                assert got["status"] == "Good" and len(got["values"]) == len(rows) == expected >= 7, (tag, params)
                for (t, value, status, _), row in zip(got["values"], rows, strict=True):
                    assert ts(t) == ts(row["time"]), (tag, params)
                    if row["value"] is None:  # the interval without a good power sample
                        assert value is None and status == ua.StatusCodes.BadNoData, (tag, params, t)
                    else:
                        assert value == pytest.approx(row["value"], rel=1e-12), (tag, params, t)
                        assert status & 0xFFFF0000 in (ua.StatusCodes.Good, ua.StatusCodes.UncertainDataSubNormal)
                        assert status & 0x0403 == 0x0401  # a calculated value

            # -- 100,000 values in pages through continuation points
            large_start = datetime.fromtimestamp(t_end - HOURS * 3600 - LARGE * 900, UTC)
            got = await c("history_raw", timeout=120, nodeId=s.node("E-102.energy_total"), start=large_start.isoformat(),
                          end=(end - timedelta(hours=HOURS)).isoformat(), numValues=10_000)
            assert got["status"] == "Good" and got["count"] == LARGE and not got["more"]
            assert got["pages"] == 10, got["pages"]  # 10,000 a page: the last one ends the read
            times = [v[0] for v in got["values"]]
            assert times == sorted(times) and len(set(times)) == LARGE
            assert ts(times[0]) == large_start
            assert sum(v[1] for v in got["values"]) == pytest.approx(sum(r.values["energy_total"] for r in large) / 1e6)

            # -- a raw-logged balance: the samples with their stored quality, and the bounds
            got = await c("history_raw", nodeId=s.node(balance_tag), start=(end - timedelta(minutes=45)).isoformat(),
                          end=end.isoformat(), returnBounds=True)
            assert [(ts(v[0]), v[1], v[2]) for v in got["values"]] == [
                (samples[0][0], 80.0, 0),  # the start bound: the value before the start
                (samples[1][0], 79.5, 0),
                (samples[2][0], None, ua.StatusCodes.Bad),
                (samples[3][0], 78.25, ua.StatusCodes.Uncertain),
                (end, None, ua.StatusCodes.BadBoundNotFound),  # nothing at or after the end yet
            ]

        # -- who may read history: history_export, as for GET /api/v1/history (a viewer may not)
        async with NodeClient(tmp_path / "client-pki") as c:
            await c.connect(s.url, user="view1", password="viewer-password")
            got = await c("history_raw", nodeId=s.node("E-101.energy_total"), start=start.isoformat(), end=end.isoformat())
            assert got["status"] == "BadUserAccessDenied"
