"""The on-disk buffer: order, bound, rejected batches, state, and one owner at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from historian.spool import Spool, SpoolInUse


async def test_order_bound_reject_and_state_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "b.db", max_points=10, chunk_points=3)
    await spool.open()
    try:
        assert await spool.append_many([("interval", [[1], [2], [3], [4]]), ("day", [[5]])], state="s1") == 0
        assert (spool.points, spool.batches) == (5, 3)  # chunks of at most 3
        dropped = await spool.append("raw", [[6], [7], [8], [9], [10], [11], [12]])
        assert dropped == 3 and spool.points == 9  # the oldest chunk went
        batches = await spool.peek(5)
        assert [(b.kind, b.items) for b in batches] == [("interval", [[4]]), ("day", [[5]]), ("raw", [[6], [7], [8]])]
        await spool.reject(batches[0].seq, "refused")
        await spool.remove([batches[1].seq])
        assert (spool.points, spool.rejected) == (7, 1)
    finally:
        await spool.close()
    again = Spool(tmp_path / "b.db", max_points=10)
    await again.open()
    try:
        assert again.points == 7 and again.rejected == 1
        assert await again.load_state() == "s1"
        assert [b.items[0] for b in await again.peek(100)] == [[6], [9], [12]]
    finally:
        await again.close()


async def test_a_buffer_has_one_owner(tmp_path: Path) -> None:
    first = Spool(tmp_path / "b.db", max_points=10)
    await first.open()
    try:
        second = Spool(tmp_path / "b.db", max_points=10)
        with pytest.raises(SpoolInUse, match="in use by another server"):
            await second.open()
        await second.close()
    finally:
        await first.close()
    third = Spool(tmp_path / "b.db", max_points=10)
    await third.open()  # free again once the first closed
    await third.close()
