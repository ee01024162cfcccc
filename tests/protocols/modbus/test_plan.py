"""Coalescing adjacent registers into the fewest block reads."""

from __future__ import annotations

from protocols.modbus.plan import plan_device
from protocols.modbus.profile import ProfileLibrary


def shape(blocks: list) -> list[tuple[int, int, int]]:  # type: ignore[type-arg]
    return [(b.fc, b.address, b.count) for b in blocks]


def test_ddsy1352_is_three_requests() -> None:
    p = ProfileLibrary.load()["acrel-ddsy1352"]
    plan = plan_device(p, None, max_block=60, max_gap=8)
    assert shape(plan["energy"]) == [(3, 0x0000, 10)]
    assert shape(plan["fast"]) == [(3, 0x000B, 6), (3, 0x0056, 1)]
    block = plan["fast"][0]
    assert [(pt.name, i) for pt, i in block.points] == [("voltage", 0), ("current", 1), ("power", 2), ("power_factor", 5)]


def test_gap_and_block_limits() -> None:
    p = ProfileLibrary.load()["acrel-ddsy1352"]
    plan = plan_device(p, None, max_block=60, max_gap=0)
    assert shape(plan["fast"]) == [(3, 0x000B, 3), (3, 0x0010, 1), (3, 0x0056, 1)]
    plan = plan_device(p, None, max_block=2, max_gap=8)
    assert shape(plan["fast"]) == [(3, 0x000B, 2), (3, 0x000D, 1), (3, 0x0010, 1), (3, 0x0056, 1)]
    # a group is never split, even past max_block: the energy registers stay one request
    assert shape(plan["energy"]) == [(3, 0x0000, 10)]


def test_circuits_shift_every_block() -> None:
    p = ProfileLibrary.load()["acrel-adf400l"]
    one = plan_device(p, 1, 60, 8)
    five = plan_device(p, 5, 60, 8)
    for cls in one:
        assert [b.address + 4 * 0x40 for b in one[cls]] == [b.address for b in five[cls]]
