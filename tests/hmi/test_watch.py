"""``scada watch`` as a real process against a running server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scada.core.tags import TAGDB
from scada.site.component import ASSETS

from ..procs import ScadaProcess
from ..simulation import Control, until
from .conftest import ADMIN_PASSWORD, Hmi
from .producers import publish_room_tags


async def test_watch_tails_room_changes(hmi: Hmi, sim: Control, tmp_path: Path) -> None:
    ctx = hmi.rt.ctx
    publish_room_tags(ctx[TAGDB], ctx[ASSETS].snapshot, balance=42.0)
    await until(lambda: ctx[TAGDB].read("E-B1-207.comm_ok").value is True, timeout=10, what="meters polled")
    proc = ScadaProcess(["watch", "--url", hmi.url, "--floor", "B1-F2"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        line = await asyncio.to_thread(proc.wait_for, r"snapshot: 15 of 15 rooms", 30)
        assert "ok 15" in line
        await sim.load("E-B1-207", kw=2.75)
        line = await asyncio.to_thread(proc.wait_for, r"B1-R207 .* 2\.75 kW", 10)
        assert "42.00" in line
    finally:
        proc.stop()


async def test_watch_one_room_and_refusals(hmi: Hmi, sim: Control, tmp_path: Path) -> None:
    ctx = hmi.rt.ctx
    await sim.load("E-B1-103", kw=1.5)
    await until(lambda: ctx[TAGDB].read("E-B1-103.power").value == 1.5, timeout=10, what="load polled")
    proc = ScadaProcess(["watch", "--url", hmi.url, "--room", "B1-R103"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        await asyncio.to_thread(proc.wait_for, r"snapshot of room B1-R103", 30)
        await asyncio.to_thread(proc.wait_for, r"E-B1-103.power = 1.5 kW \[good\]", 5)
        await sim.fault("W-B1-103", "timeout")
        await asyncio.to_thread(proc.wait_for, r"W-B1-103.comm_ok = False \[good\]", 10)
    finally:
        proc.stop()
    # --count: ends after that many updates
    counted = ScadaProcess(["watch", "--url", hmi.url, "--room", "B1-R104", "--count", "2"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        await asyncio.to_thread(counted.wait_for, r"snapshot of room B1-R104", 30)
        for kw in (0.5, 2.5):  # at least two updates, whatever else changes meanwhile
            await sim.load("E-B1-104", kw=kw)
            await asyncio.sleep(1.0)
        assert await asyncio.to_thread(counted.proc.wait, 10) == 0
    finally:
        counted.stop()
    bad = ScadaProcess(["watch", "--url", hmi.url, "--room", "NOPE"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        await asyncio.to_thread(bad.wait_for, r"error \(room\): unknown room 'NOPE'", 30)
        assert await asyncio.to_thread(bad.proc.wait, 10) == 1
    finally:
        bad.stop()
    wrong = ScadaProcess(["watch", "--url", hmi.url, "--user", "admin"], cwd=tmp_path, env={"SCADA_PASSWORD": "wrong-password"})
    try:
        await asyncio.to_thread(wrong.wait_for, r"sign-in refused \(401\)", 30)
        assert await asyncio.to_thread(wrong.proc.wait, 10) == 1
    finally:
        wrong.stop()
