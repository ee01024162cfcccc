"""InfluxDB outage under steady load, in real time.

Two real servers, each running the demo site (81 meters) against its own Modbus simulator with
the poller reading energy every 2 s, write 1-minute intervals to a real InfluxDB. InfluxDB is
stopped once the first intervals are in it, and started again once two more intervals have
closed into both servers' buffers; server B is itself stopped and started during the outage,
after the first of those. Afterwards every interval of every meter is in InfluxDB exactly once,
contiguous, and its energy (or water volume) adds up exactly to the difference of the register
readings the poller took — which the test records from the TagDB.

The outage lasts as long as those two interval closes take (about two minutes), not a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from scada.config import ScadaConfig, load_demo_config
from scada.core.context import Context, Key
from scada.core.runtime import Component, Runtime
from scada.core.tags import TAGDB
from scada.history.service import BUFFER_FILL_TAG, HISTORY
from scada.polling.component import ModbusComponent
from scada.server import build_runtime
from scada.site.component import resolve_site_file
from scada.site.importer import parse_site_file
from tags import Subscription, by_points, names

from ..procs import isolated_demo_overrides
from ..services import InfluxServer, ServiceUnavailable, require_services

pytestmark = [pytest.mark.slow, pytest.mark.influx, pytest.mark.timeout(600)]

INTERVAL_S = 60
CLOSE_DELAY_S = 3
OUTAGE_CLOSES = 2  # intervals that close while InfluxDB is away: one before B restarts, one after
REGISTERS = ("energy_total", "volume_total")


RECORDING: Key[bool] = Key("test-recording", bool)


class Recorder(Component):
    """Records every good register reading the poller writes; the poller is told to wait for it
    (``RECORDING``), so it sees the first reading too."""

    name = "test-recorder"
    requires = (TAGDB,)
    provides = (RECORDING,)

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        sub = ctx[TAGDB].subscribe(by_points(REGISTERS), include_reported=True, name="test-recorder")
        self.tasks.spawn(lambda: self.record(sub), "record")
        ctx[RECORDING] = True
        yield
        sub.close()

    async def record(self, sub: Subscription) -> None:
        async for change in sub:
            v = change.new
            if v.good and isinstance(v.value, (int, float)):
                meter, point = names.split(change.name)
                self.server.register[meter] = point
                self.server.readings.setdefault(meter, []).append((v.source_ts.timestamp(), Decimal(str(v.value))))


@dataclass
class Server:
    """A server on the demo site with its simulator, and the register readings its poller took."""

    name: str
    config: ScadaConfig
    runtime: Runtime | None = None
    readings: dict[str, list[tuple[float, Decimal]]] = field(default_factory=dict)  # meter -> (ts, value)
    register: dict[str, str] = field(default_factory=dict)  # meter -> energy_total | volume_total
    fills: list[float] = field(default_factory=list)

    async def start(self) -> None:
        built = build_runtime(self.config, announce=lambda _m: None)
        parts = [*built.components, Recorder(self)]
        poller = next(c for c in parts if isinstance(c, ModbusComponent))
        poller.optional = (*poller.optional, RECORDING)
        rt = Runtime(parts, ctx=built.ctx, stop_timeout_s=built.stop_timeout_s, policy=built.policy)
        await rt.start()
        self.runtime = rt

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()  # the poller stops before the historian: every reading is fed
            self.runtime = None

    @property
    def buffered(self) -> int:
        assert self.runtime is not None
        return self.runtime.ctx[HISTORY].historian.spool.points

    def sample_fill(self) -> None:
        if self.runtime is not None:
            self.fills.append(float(self.runtime.ctx[TAGDB].read(BUFFER_FILL_TAG).value))  # type: ignore[arg-type]


def server(tmp_path: Path, name: str, influx: InfluxServer) -> Server:
    base = tmp_path / name
    base.mkdir()
    config = load_demo_config([
        *isolated_demo_overrides(base),
        "modbus.poll_intervals={ fast = 5.0, energy = 2.0, slow = 10.0, volume = 2.0 }",
        "modbus.start_spread=1.0",
        "historian.backend=\"influx\"",
        "historian.interval_min=1",
        f"historian.close_delay_s={CLOSE_DELAY_S}",
        f"historian.influx.url=\"{influx.url}\"",
        f"historian.influx.database=\"outage_{name}\"",
        "historian.influx.timeout_s=2",
        "historian.buffer.retry_max_s=3",
        "historian.buffer.max_points=100000",
    ])
    return Server(name, config)


def stored(influx: InfluxServer, db: str) -> dict[str, list[list[int | None]]]:
    answer = influx.query(
        'SELECT "energy_total", "volume_total", "samples" FROM "scada_intervals"."interval" GROUP BY "meter"', db=db
    )
    return {s["tags"]["meter"]: s["values"] for s in answer["results"][0].get("series", [])}


async def wait_for(condition: Callable[[], bool], timeout: float, what: str, servers: tuple[Server, ...] = ()) -> None:
    """Poll ``condition`` until it holds, sampling the ``servers``' buffer fill meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        for s in servers:
            s.sample_fill()
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def closes_since(t: float) -> int:
    """How many intervals have become due to close (interval end + close delay) since wall time ``t``."""
    return int((time.time() - CLOSE_DELAY_S) // INTERVAL_S) - int((t - CLOSE_DELAY_S) // INTERVAL_S)


def demo_polled_meters() -> set[str]:
    """The demo's meters the poller reads (not the utility meter read by hand, not the virtual one)."""
    config = load_demo_config()
    assert config.site.import_file is not None
    return {m.id for m in parse_site_file(resolve_site_file(config, config.site.import_file)).meters if m.polled}


def check(s: Server, data: dict[str, list[list[int | None]]]) -> int:
    """Every interval once and contiguous for every polled meter; deltas add up to the readings."""
    polled = demo_polled_meters()
    data = {m: rows for m, rows in data.items() if m in polled}
    s.readings = {m: r for m, r in s.readings.items() if m in polled}
    assert len(data) == 81 and set(s.readings) == set(data), sorted(set(s.readings) ^ set(data))
    lengths = set()
    site_energy = Decimal(0)
    for meter, rows in data.items():
        starts = [int(r[0]) for r in rows]  # type: ignore[arg-type]
        assert starts == list(range(starts[0], starts[-1] + INTERVAL_S, INTERVAL_S)), f"{meter}: missing or extra intervals"
        lengths.add(len(starts))
        readings = s.readings[meter]
        end = starts[-1] + INTERVAL_S
        column = 1 if s.register[meter] == "energy_total" else 2
        total = sum(Decimal(int(r[column])) for r in rows if r[column] is not None) / 1_000_000  # type: ignore[arg-type]
        assert total == [v for t, v in readings if t < end][-1] - readings[0][1], meter
        if column == 1:
            site_energy += total
    assert len(lengths) == 1, lengths
    assert site_energy > 0  # the simulated load really ran
    return lengths.pop()


async def test_influx_outage_under_simulated_load_with_a_restart(tmp_path: Path) -> None:
    try:
        influx = InfluxServer()
        influx.start()
    except (ServiceUnavailable, OSError) as exc:
        if require_services():
            pytest.fail(f"required test service unavailable: InfluxDB: {exc}")
        pytest.skip(f"InfluxDB: {exc}")
    a, b = server(tmp_path, "a", influx), server(tmp_path, "b", influx)
    try:
        for s in (a, b):
            await s.start()
        # the first intervals reach InfluxDB while it is up
        await wait_for(lambda: bool(stored(influx, "outage_a")) and bool(stored(influx, "outage_b")), 2 * INTERVAL_S + 15, "first intervals")

        influx.stop()
        down = time.time()
        # server B stops and starts again while InfluxDB is away, once an interval closed into its
        # buffer: its buffer and state survive
        await wait_for(lambda: closes_since(down) >= 1 and b.buffered > 0, INTERVAL_S + 30, "an interval in B's buffer", (a, b))
        held = b.buffered
        await b.stop()
        await b.start()
        assert b.buffered >= held
        # another interval closes, into the restarted B's buffer too, before InfluxDB comes back
        await wait_for(
            lambda: closes_since(down) >= OUTAGE_CLOSES and a.buffered >= OUTAGE_CLOSES * 81 and b.buffered >= OUTAGE_CLOSES * 81,
            OUTAGE_CLOSES * INTERVAL_S + 30, "two intervals in each buffer", (a, b),
        )
        assert max(a.fills) > 0 and max(b.fills) > 0
        influx.start()

        await wait_for(lambda: a.buffered == 0 and b.buffered == 0, 60, "the buffers to drain")
        for s in (a, b):
            s.sample_fill()
            assert s.fills[-1] == 0.0
    finally:
        for s in (a, b):
            await s.stop()
        influx.start()
    try:
        intervals_a = check(a, stored(influx, "outage_a"))
        intervals_b = check(b, stored(influx, "outage_b"))
        assert intervals_a >= 1 + OUTAGE_CLOSES and intervals_b >= 1 + OUTAGE_CLOSES
    finally:
        influx.destroy()
