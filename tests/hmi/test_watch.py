"""``scada watch`` as a real process against a running server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scada.foundation import ASSETS, TAGDB
from tags.names import meter_tag

from ..procs import ScadaProcess
from .conftest import ADMIN_PASSWORD, Hmi
from .producers import publish_meter_tags, publish_room_tags


async def test_watch_tails_room_changes(hmi: Hmi, tmp_path: Path) -> None:
    ctx = hmi.rt.ctx
    publish_room_tags(ctx[TAGDB], ctx[ASSETS].snapshot, balance=42.0)
    publish_meter_tags(ctx[TAGDB], ctx[ASSETS].snapshot)
    proc = ScadaProcess(["watch", "--url", hmi.url, "--floor", "B1-F2", "--count", "1"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        line = await asyncio.to_thread(proc.wait_for, r"snapshot: 15 of 15 rooms", 30)
        assert "ok 15" in line
        ctx[TAGDB].write(meter_tag("E-B1-207", "power"), 2.75)
        line = await asyncio.to_thread(proc.wait_for, r"B1-R207", 10)
        assert "2.75 kW" in line and "42.00" in line
        assert await asyncio.to_thread(proc.proc.wait, 10) == 0
    finally:
        proc.stop()


async def test_watch_one_room_and_refusals(hmi: Hmi, tmp_path: Path) -> None:
    ctx = hmi.rt.ctx
    publish_meter_tags(ctx[TAGDB], ctx[ASSETS].snapshot, power=1.5)
    proc = ScadaProcess(["watch", "--url", hmi.url, "--room", "B1-R103", "--count", "1"], cwd=tmp_path, env={"SCADA_PASSWORD": ADMIN_PASSWORD})
    try:
        await asyncio.to_thread(proc.wait_for, r"snapshot of room B1-R103", 30)
        await asyncio.to_thread(proc.wait_for, r"E-B1-103.power = 1.5 kW \[good\]", 5)
        ctx[TAGDB].write(meter_tag("W-B1-103", "comm_ok"), False)
        await asyncio.to_thread(proc.wait_for, r"W-B1-103.comm_ok = False \[good\]", 10)
        assert await asyncio.to_thread(proc.proc.wait, 10) == 0
    finally:
        proc.stop()
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
