"""A link's scheduling and its stop. Its bulk lane (a batch job's commands) on a link with more
polls than it can carry: every poll is late, so bulk work never finds the link's spare time; it
still takes one request after ``BULK_SHARE`` polls and goes on, slowly, instead of waiting until
its commands time out (real requests to the simulator over TCP, one connection). And a link
whose connect loses a cancellation still stops."""

from __future__ import annotations

import asyncio

from protocols.modbus.client import ModbusConnection, ModbusFailure
from protocols.modbus.config import ModbusConfig
from protocols.modbus.link import BULK_SHARE, Link
from protocols.modbus.sim import MeterSpec, Simulator
from tags import QualityReason

from ...simulation import until
from .conftest import link_config


class _Observer:
    def link_up(self, link: Link) -> None:
        pass

    def link_down(self, link: Link, detail: str) -> None:
        pass


class _LatePoll:
    """A poll that, once answered, is due again a second ago: the link is always behind."""

    stale = False

    def __init__(self, link: Link, served: list[str]) -> None:
        self.link = link
        self.served = served

    async def run(self, conn: ModbusConnection) -> None:
        await conn.read(1, 3, 0x0000, 2)
        self.served.append("poll")
        self.link.schedule(self, asyncio.get_running_loop().time() - 1.0)


async def test_bulk_work_goes_on_when_every_poll_is_late(sim: Simulator) -> None:
    sim.add_meter(MeterSpec("E1", "acrel-ddsy1352", "tcp", 1))
    link = Link(link_config(sim, "tcp", max_in_flight=1, inter_frame_gap_ms=2), ModbusConfig(), _Observer())
    runner = asyncio.create_task(link.run(), name="test-link")
    try:
        await until(lambda: link.is_up, timeout=10, what="link up")
        served: list[str] = []
        loop = asyncio.get_running_loop()
        for _ in range(3):
            link.schedule(_LatePoll(link, served), loop.time() - 1.0)
        await until(lambda: len(served) >= 20, timeout=10, what="polls under way")

        async def command(conn: ModbusConnection) -> list[int]:
            registers = await conn.read(1, 3, 0x0000, 2)
            served.append("bulk")
            return registers

        async with asyncio.timeout(30):  # a liveness bound: without the share it waits 120 s and fails
            answers = await asyncio.gather(*(link.urgent(command, bulk=True) for _ in range(5)))
        assert [len(a) for a in answers] == [2] * 5
        firsts = served.index("bulk")
        bulk_at = [i for i, what in enumerate(served) if what == "bulk"]
        assert len(bulk_at) == 5
        # between two bulk requests (all five waiting) the late polls had their turns, at most
        # BULK_SHARE of them (and the one the dispatcher had already handed on)
        gaps = [b - a - 1 for a, b in zip(bulk_at, bulk_at[1:], strict=False)]
        assert all(BULK_SHARE - 1 <= g <= BULK_SHARE + 1 for g in gaps), (gaps, served[firsts:])
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


class _LosesCancellation:
    """A connection whose connect loses a cancellation and reports a failure, as pymodbus's
    connect can on Python 3.11 (its wait_for returns or raises instead of being cancelled)."""

    connected = False
    attempts = 0

    def __init__(self, config: object) -> None:
        pass

    async def connect(self) -> None:
        _LosesCancellation.attempts += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
        raise ModbusFailure(QualityReason.COMM_FAILURE, "cannot connect")

    def close(self) -> None:
        pass


async def test_a_link_stops_even_when_its_connect_loses_the_cancellation(sim: Simulator) -> None:
    """A stop that lands in a connect attempt ends the link (it used to go on reconnecting, and a
    server's stop waited for it in vain: 'task did not stop in time', leaked tasks)."""
    link = Link(link_config(sim, "tcp", max_in_flight=1), ModbusConfig(reconnect_initial_s=0.01), _Observer(),
                connection_factory=_LosesCancellation)  # type: ignore[arg-type]
    runner = asyncio.create_task(link.run(), name="test-link")
    await until(lambda: _LosesCancellation.attempts >= 3, timeout=10, what="connect attempts")
    runner.cancel()
    done, _ = await asyncio.wait([runner], timeout=5)  # a liveness bound: without the check it never ends
    if not done:
        runner.cancel()
    assert done, "the link went on reconnecting after it was cancelled"
