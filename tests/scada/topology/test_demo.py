"""What ``scada demo`` adds to the meter topology, run the way the command runs it (the demo's
config and site, the simulator, the poller and the runtime with ``demo=True``): the monthly
rule sharing the common meter by area, seeded once, and the simulated operator's manual readings
of the utility meter U-B1: its 61 child meters' registers plus the configured 3.5 % loss.

The simulator's clock is frozen (speed 0) and moved on by hand, so that each reading can be
checked against the children's registers exactly."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from protocols.modbus.sim import Simulator
from scada.config import load_demo_config
from scada.core.tags import TAGDB
from scada.simulator.component import SIMULATOR
from scada.site.component import ASSETS
from scada.topology.demo import DEMO_RULE
from scada.topology.readings import ReadingView
from scada.topology.service import TOPOLOGY, Topology
from tags import TagDB

from ...harness import running_server
from ...procs import isolated_demo_overrides

FACTOR = Decimal("1.035")
CENT = Decimal("0.01")


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_demo_config([
        *isolated_demo_overrides(tmp_path),
        "simulator.speed=0",
        "modbus.poll_intervals={ fast = 1.0, energy = 0.5, slow = 2.0, volume = 2.0 }",
        "modbus.start_spread=0.5",
        "topology.demo.reading_every_s=0.5",
    ])


def children_total(tagdb: TagDB, children: list[str]) -> Decimal | None:
    """The children's registers as the operator adds them (None until every one is read)."""
    total = Decimal(0)
    for child in children:
        tv = tagdb.get(f"{child}.energy_total")
        if tv is None or not tv.good:
            return None
        total += Decimal(str(tv.value))
    return total


async def readings_until(topology: Topology, enough, timeout: float = 60.0) -> list[ReadingView]:  # type: ignore[no-untyped-def]
    """U-B1's readings, oldest first, once ``enough(readings)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = list(reversed(await topology.readings.readings("U-B1")))
        if enough(got):
            return got
        if loop.time() > deadline:
            raise AssertionError(f"the demo operator's readings never got there: {[str(r.value) for r in got]}")
        await asyncio.sleep(0.1)


async def test_demo_operator_reads_the_utility_meter_and_the_common_area_rule_is_seeded(tmp_path: Path) -> None:
    async with running_server(config(tmp_path), demo=True) as rt:
        topology = rt.ctx[TOPOLOGY]
        tagdb = rt.ctx[TAGDB]
        sim: Simulator = rt.ctx[SIMULATOR]
        children = rt.ctx[ASSETS].snapshot.tree.children_at("U-B1", topology.clock())
        assert len(children) == 61 and "C-B1-01" in children

        # the rule: the common meter shared by area over the building, at each room's tariff
        [rule] = [r for r in await topology.apportionment.rules() if r.spec.name == DEMO_RULE]
        s = rule.spec
        assert (s.source, s.method, s.targets, s.pricing, s.settle, s.schedule) == (
            "C-B1-01", "area", {"building": "B1"}, "tariff", "balance", "monthly",
        )
        assert rule.active and rule.created_by == "system:demo"

        # two simulated minutes pass (the frozen clock moved on by hand; more in an instant would be
        # refused as more than the utility meter's 400 kW), then two more: the operator
        # keeps U-B1 at its children's registers plus 3.5 %, each reading adding their use since the
        # one before plus 3.5 % (to the cent: at most half a cent of rounding a reading)
        seen = 0
        for step in (1, 2):
            await sim.advance_clock(120)
            before = children_total(tagdb, children)

            def caught_up(rs: list[ReadingView], before: Decimal | None = before, seen: int = seen) -> bool:
                now = children_total(tagdb, children)
                return (now is not None and now > (before or 0) and len(rs) > seen
                        and abs(rs[-1].value - now * FACTOR) <= CENT / 2 * len(rs))

            readings = await readings_until(topology, caught_up)
            assert len(readings) > seen, step
            seen = len(readings)
        assert len(readings) >= 2
        values = [r.value for r in readings]
        assert values == sorted(set(values))  # every reading goes forwards
        assert all((r.source, r.entered_by, r.reason) == ("manual", "demo-operator", "demo: the utility meter read on site")
                   for r in readings)
        assert [r.ts for r in readings] == sorted(r.ts for r in readings)
        tv = tagdb.read("U-B1.energy_total")
        assert Decimal(str(tv.value)) == readings[-1].value and tv.detail == "source=manual" and tv.source_ts == readings[-1].ts

    # a second start seeds no second rule
    async with running_server(config(tmp_path), demo=True) as rt:
        rules = [r for r in await rt.ctx[TOPOLOGY].apportionment.rules() if r.spec.name == DEMO_RULE]
        assert len(rules) == 1
