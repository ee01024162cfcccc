"""The meter tree over time: every meter's timeline of parents (effective-dated).

A meter's parent is set from a moment on (``valid_from``); the rows of a meter, ordered by that
moment, say which parent it had at any time. A change never rewrites the past: a period before
it keeps the tree it had. :class:`MeterTree` answers "who was the parent at t", "which meters
hung below P during [start, end)" (with the part of the span each did) and whether a change
would close a loop.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["ALWAYS", "ChildSpan", "MeterTree", "ParentChange"]

# "since always": the moment a site file's first parent of a meter takes effect
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ParentChange:
    """From ``valid_from`` on, ``meter_id`` hangs below ``parent_id`` (None: below nothing)."""

    meter_id: str
    parent_id: str | None
    valid_from: datetime


@dataclass(frozen=True, slots=True)
class ChildSpan:
    """``meter_id`` hung below the parent asked about during ``[start, end)``."""

    meter_id: str
    start: datetime
    end: datetime


class MeterTree:
    """An immutable set of parent timelines."""

    def __init__(self, changes: Iterable[ParentChange] = ()) -> None:
        timelines: dict[str, dict[datetime, ParentChange]] = {}
        for c in changes:
            timelines.setdefault(c.meter_id, {})[c.valid_from] = c  # a later row for the same moment wins
        self._timelines: dict[str, list[ParentChange]] = {
            m: sorted(rows.values(), key=lambda c: c.valid_from) for m, rows in timelines.items()
        }
        self._starts = {m: [c.valid_from for c in rows] for m, rows in self._timelines.items()}

    # -- lookups -------------------------------------------------------------------------------
    @property
    def changes(self) -> list[ParentChange]:
        return [c for rows in self._timelines.values() for c in rows]

    def timeline(self, meter_id: str) -> list[ParentChange]:
        return list(self._timelines.get(meter_id, ()))

    def parent_at(self, meter_id: str, t: datetime) -> str | None:
        starts = self._starts.get(meter_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, t) - 1
        return self._timelines[meter_id][i].parent_id if i >= 0 else None

    def parents_at(self, t: datetime) -> dict[str, str]:
        """Every meter with a parent at ``t``: meter → parent."""
        out: dict[str, str] = {}
        for meter_id in self._timelines:
            parent = self.parent_at(meter_id, t)
            if parent is not None:
                out[meter_id] = parent
        return out

    def children_at(self, parent_id: str, t: datetime) -> list[str]:
        return sorted(m for m, p in self.parents_at(t).items() if p == parent_id)

    def child_spans(self, parent_id: str, start: datetime, end: datetime) -> list[ChildSpan]:
        """The meters below ``parent_id`` at some time in ``[start, end)``, each with the spans
        it was there (a meter moved in and out has several)."""
        out: list[ChildSpan] = []
        for meter_id, rows in sorted(self._timelines.items()):
            for i, row in enumerate(rows):
                if row.parent_id != parent_id:
                    continue
                s = max(row.valid_from, start)
                e = min(rows[i + 1].valid_from, end) if i + 1 < len(rows) else end
                if s < e:
                    out.append(ChildSpan(meter_id, s, e))
        return out

    def parents_within(self, start: datetime, end: datetime) -> set[str]:
        """Meters that had at least one child at some time in ``[start, end)``."""
        out: set[str] = set()
        for rows in self._timelines.values():
            for i, row in enumerate(rows):
                if row.parent_id is None:
                    continue
                e = rows[i + 1].valid_from if i + 1 < len(rows) else None
                if row.valid_from < end and (e is None or e > start):
                    out.add(row.parent_id)
        return out

    # -- changes -------------------------------------------------------------------------------
    def with_change(self, change: ParentChange) -> MeterTree:
        return MeterTree([*self.changes, change])

    def loop(self, since: datetime | None = None) -> list[str] | None:
        """A loop (``[a, b, ..., a]``) the tree has at any moment (from ``since`` on: a change
        cannot make a loop before it takes effect), or None."""
        moments = sorted({c.valid_from for c in self.changes if since is None or c.valid_from >= since})
        for t in moments:
            found = find_loop(self.parents_at(t))
            if found is not None:
                return found
        return None


def find_loop(parents: Mapping[str, str]) -> list[str] | None:
    """A loop in a meter → parent map, or None."""
    done: set[str] = set()
    for start in sorted(parents):
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in on_path:
                return path[path.index(node):] + [node]
            path.append(node)
            on_path.add(node)
            node = parents.get(node)
        done.update(path)
    return None
