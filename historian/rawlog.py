"""Raw logging of selected tags with a deadband.

A rule selects tags by glob patterns (``*.power``, ``system:*``) and has an absolute deadband: a
sample is logged when its quality differs from the last one logged for that tag, or when its
value moved by at least the deadband from the last value logged (with a deadband of 0: when it
changed at all). Comparing with the last *logged* value, not the last sample, means a slow
drift is still logged once it exceeds the band. Booleans are logged as 0/1; tags holding
strings are not logged (one warning per tag).
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tags import TagChange

from .grid import epoch_us
from .records import RawPoint

__all__ = ["RawLogger", "RawRule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRule:
    patterns: tuple[str, ...]
    deadband: float = 0.0

    def __post_init__(self) -> None:
        if not self.patterns:
            raise ValueError("a raw logging rule needs at least one tag pattern")
        if not math.isfinite(self.deadband) or self.deadband < 0:
            raise ValueError(f"deadband must be a finite number >= 0, got {self.deadband}")


class RawLogger:
    def __init__(self, rules: Sequence[RawRule]) -> None:
        self.rules = tuple(rules)
        self._deadband: dict[str, float | None] = {}  # tag -> deadband, None when no rule matches
        self._last: dict[str, tuple[float | None, int]] = {}
        self._refused: set[str] = set()
        self.pending: list[RawPoint] = []

    def __bool__(self) -> bool:
        return bool(self.rules)

    def matches(self, name: str) -> bool:
        return self._rule_deadband(name) is not None

    def _rule_deadband(self, name: str) -> float | None:
        try:
            return self._deadband[name]
        except KeyError:
            pass
        band = next(
            (r.deadband for r in self.rules if any(fnmatch.fnmatchcase(name, p) for p in r.patterns)), None
        )
        self._deadband[name] = band
        return band

    def feed(self, change: TagChange) -> bool:
        """Log the sample if it passes its rule's deadband. Returns True when it was logged."""
        band = self._rule_deadband(change.name)
        if band is None:
            return False
        new = change.new
        raw = new.value
        value: float | None
        if raw is None:
            value = None
        elif isinstance(raw, (bool, int, float)):
            value = float(raw)
            if not math.isfinite(value):
                value = None
        else:
            if change.name not in self._refused:
                self._refused.add(change.name)
                log.warning("raw logging skips a tag that holds text", extra={"tag": change.name})
            return False
        quality = int(new.quality)
        last = self._last.get(change.name)
        if last is not None and last[1] == quality:
            old = last[0]
            if old is None and value is None:
                return False
            if old is not None and value is not None:
                moved = abs(value - old)
                if moved == 0 or moved < band:
                    return False
        self._last[change.name] = (value, quality)
        when = new.source_ts if new.source_ts.tzinfo is not None else new.server_ts
        self.pending.append(RawPoint(change.name, epoch_us(when), value, quality))
        return True

    def take(self) -> list[RawPoint]:
        out, self.pending = self.pending, []
        return out
