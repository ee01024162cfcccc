"""InfluxDB outage under steady load, in real time: two real servers write 1-minute intervals to
a real InfluxDB that is stopped for well over two intervals and started again; one of the two
servers is itself restarted during the outage. Afterwards every interval of every meter is in
InfluxDB exactly once, contiguous, and the energy adds up exactly to the register differences.

The load is synthetic: meters written into each server's TagDB once a second the way the Modbus
poller writes them (the Modbus simulator is not on this branch's base yet).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scada.app import build_runtime
from scada.config import ScadaConfig
from scada.foundation import TAGDB
from scada.history import BUFFER_FILL_TAG, HISTORY
from scada.runtime import Runtime
from tags.model import utcnow

from ..harness import server_config
from ..services import InfluxServer, ServiceUnavailable, require_services
from .producers import SyntheticMeter

pytestmark = [pytest.mark.slow, pytest.mark.influx, pytest.mark.timeout(600)]

METERS = 12
INTERVAL_S = 60
OUTAGE_S = 140  # more than two whole intervals are closed while InfluxDB is away


@dataclass
class LoadedServer:
    """A server, its meters and what they were polled at."""

    name: str
    config: ScadaConfig
    runtime: Runtime | None = None
    meters: list[SyntheticMeter] = field(default_factory=list)
    polls: dict[str, list[tuple[float, Decimal]]] = field(default_factory=dict)
    fills: list[float] = field(default_factory=list)
    paused: bool = False

    async def start(self) -> None:
        rt = build_runtime(self.config, announce=lambda _m: None)
        await rt.start()
        tagdb = rt.ctx[TAGDB]
        old = {m.id: m for m in self.meters}
        self.meters = []
        for i in range(METERS):
            mid = f"{self.name}-E{i:02d}"
            meter = SyntheticMeter(tagdb, mid, start_kwh=f"{1000 + i}.00")
            if mid in old:  # the device kept counting while the server was down
                meter.registers = old[mid].registers
            self.meters.append(meter)
            self.polls.setdefault(mid, [])
        self.runtime = rt

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None

    def poll(self, step: int) -> None:
        for i, m in enumerate(self.meters):
            m.consume(Decimal((step * (i + 1)) % 23) / 1000)  # the device counts, polled or not
        if self.paused or self.runtime is None:
            return
        now = utcnow()
        for m in self.meters:
            m.poll(now, power=float(step % 7))
            self.polls[m.id].append((now.timestamp(), m.registers["energy_total"]))
        self.fills.append(self.runtime.ctx[TAGDB].read(BUFFER_FILL_TAG).value)  # type: ignore[arg-type]

    @property
    def buffered(self) -> int:
        assert self.runtime is not None
        return self.runtime.ctx[HISTORY].historian.spool.points


async def load(servers: list[LoadedServer]) -> None:
    step = 0
    while True:
        for s in servers:
            s.poll(step)
        step += 1
        await asyncio.sleep(1.0)


def stored(influx: InfluxServer, db: str) -> dict[str, list[tuple[int, int | None, int]]]:
    answer = influx.query('SELECT "energy_total", "samples" FROM "scada_intervals"."interval" GROUP BY "meter"', db=db)
    out: dict[str, list[tuple[int, int | None, int]]] = {}
    for series in answer["results"][0].get("series", []):
        out[series["tags"]["meter"]] = [tuple(row) for row in series["values"]]  # type: ignore[misc]
    return out


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def check(server: LoadedServer, data: dict[str, list[tuple[int, int | None, int]]]) -> int:
    """Every interval exactly once and contiguous; energy equals the register difference."""
    assert set(data) == {m.id for m in server.meters}
    counts = set()
    for meter_id, rows in data.items():
        starts = [r[0] for r in rows]
        assert starts == list(range(starts[0], starts[-1] + INTERVAL_S, INTERVAL_S)), f"{meter_id}: missing or extra intervals"
        counts.add(len(starts))
        polls = server.polls[meter_id]
        end = starts[-1] + INTERVAL_S
        total = sum(Decimal(r[1]) for r in rows if r[1] is not None) / 1_000_000
        assert total == [v for t, v in polls if t < end][-1] - polls[0][1], meter_id
    assert len(counts) == 1, counts
    return counts.pop()


async def test_influx_outage_under_load_with_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        influx = InfluxServer()
        influx.start()
    except (ServiceUnavailable, OSError) as exc:
        if require_services():
            pytest.fail(f"required test service unavailable: InfluxDB: {exc}")
        pytest.skip(f"InfluxDB: {exc}")
    monkeypatch.setenv("SCADA_TEST_ADMIN_PASSWORD", "admin-password-1")
    servers = []
    for name in ("A", "B"):
        base = tmp_path / name
        base.mkdir()
        extra = f"""
[runtime]
data_dir = "var"
stop_timeout_s = 10

[historian]
backend = "influx"
interval_min = 1
close_delay_s = 2

[historian.influx]
url = "{influx.url}"
database = "outage_{name.lower()}"
timeout_s = 2

[historian.buffer]
retry_max_s = 3
max_points = 1000
"""
        servers.append(LoadedServer(name, server_config(base, f"sqlite:///{base / 'scada.db'}", extra)))
    a, b = servers
    loader: asyncio.Task[None] | None = None
    try:
        for s in servers:
            await s.start()
        loader = asyncio.create_task(load(servers), name="steady-load")
        # the first interval reaches InfluxDB while it is up
        await wait_for(lambda: all(stored(influx, f"outage_{s.name.lower()}") for s in servers), 2 * INTERVAL_S + 10, "first intervals")

        influx.stop()
        outage_started = time.monotonic()
        await asyncio.sleep(OUTAGE_S / 2)
        # server B stops and starts again while InfluxDB is away; its buffer and state survive
        b.paused = True
        buffered_before = b.buffered
        await b.stop()
        await b.start()
        b.paused = False
        assert b.buffered >= buffered_before > 0
        await asyncio.sleep(OUTAGE_S - (time.monotonic() - outage_started))
        assert a.buffered >= 2 * METERS and b.buffered >= 2 * METERS
        assert max(a.fills) > 0 and max(b.fills) > 0
        influx.start()

        await wait_for(lambda: a.buffered == 0 and b.buffered == 0, 60, "the buffers to drain")
        for s in servers:
            assert s.runtime is not None and s.runtime.ctx[TAGDB].read(BUFFER_FILL_TAG).value == 0.0
    finally:
        if loader is not None:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
        for s in servers:
            await s.stop()
        influx.start()
    try:
        intervals_a = check(a, stored(influx, "outage_a"))
        intervals_b = check(b, stored(influx, "outage_b"))
        # the outage held more than two whole intervals, all of them arrived afterwards
        assert intervals_a >= 1 + OUTAGE_S // INTERVAL_S and intervals_b >= 1 + OUTAGE_S // INTERVAL_S
    finally:
        influx.destroy()
