"""Coalescing: a device's points of one poll class into the fewest block reads.

Points of the same table (function code) are merged into one request while the gap between
them is at most ``max_gap`` registers and the block stays within ``max_block`` registers. A
``group`` of points (the energy registers of a meter) is never split: it is one item, read in
one request even when it is longer than ``max_block`` (up to the protocol's 125), so a bill
never mixes readings taken at two moments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .profile import PointSpec, Profile

__all__ = ["Block", "MAX_READ_REGISTERS", "plan_blocks", "plan_device"]

MAX_READ_REGISTERS = 125


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers of table ``fc`` from ``address``; each point with
    its index into the answer."""

    fc: int
    address: int
    count: int
    points: tuple[tuple[PointSpec, int], ...]

    def __repr__(self) -> str:
        names = ",".join(p.name for p, _ in self.points)
        return f"<Block fc{self.fc} 0x{self.address:04X}+{self.count} [{names}]>"


@dataclass(frozen=True, slots=True)
class _Item:
    start: int
    end: int  # inclusive
    points: tuple[tuple[PointSpec, int], ...]  # point and its absolute address


def plan_blocks(points: Iterable[tuple[PointSpec, int]], max_block: int, max_gap: int) -> list[Block]:
    """Blocks for ``points`` given as (point, absolute address) pairs."""
    by_fc: dict[int, list[tuple[PointSpec, int]]] = {}
    for point, address in points:
        by_fc.setdefault(point.fc, []).append((point, address))
    blocks: list[Block] = []
    for fc in sorted(by_fc):
        items = _items(by_fc[fc])
        current: list[_Item] = []
        for item in items:
            if current:
                start = current[0].start
                end = max(i.end for i in current)
                fits = item.start - end - 1 <= max_gap and max(end, item.end) - start + 1 <= max_block
                if not fits:
                    blocks.append(_block(fc, current))
                    current = []
            current.append(item)
        if current:
            blocks.append(_block(fc, current))
    return blocks


def _items(points: list[tuple[PointSpec, int]]) -> list[_Item]:
    groups: dict[str, list[tuple[PointSpec, int]]] = {}
    items = []
    for point, address in points:
        if point.group is not None:
            groups.setdefault(point.group, []).append((point, address))
        else:
            items.append(_Item(address, address + point.words - 1, ((point, address),)))
    for members in groups.values():
        start = min(a for _, a in members)
        end = max(a + p.words - 1 for p, a in members)
        if end - start + 1 > MAX_READ_REGISTERS:
            raise ValueError(f"group of {', '.join(p.name for p, _ in members)} spans {end - start + 1} registers (> 125)")
        items.append(_Item(start, end, tuple(members)))
    items.sort(key=lambda i: i.start)
    return items


def _block(fc: int, items: list[_Item]) -> Block:
    start = items[0].start
    end = max(i.end for i in items)
    points = tuple((p, a - start) for i in items for p, a in i.points)
    return Block(fc, start, end - start + 1, points)


def plan_device(profile: Profile, circuit: int | None, max_block: int, max_gap: int) -> dict[str, list[Block]]:
    """The blocks of each poll class of one meter (on ``circuit`` of a multi-circuit device)."""
    classes: dict[str, list[tuple[PointSpec, int]]] = {}
    for point in profile.points.values():
        classes.setdefault(point.poll, []).append((point, profile.address(point, circuit)))
    return {cls: plan_blocks(points, max_block, max_gap) for cls, points in classes.items()}
