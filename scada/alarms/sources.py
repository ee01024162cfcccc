"""Condition tags → conditions of alarm points.

Parts report conditions as tags (see ``tags/names.py``); this module says which tag feeds
which alarm class and whether the condition is active. It knows nothing of lifecycles, delays
or flood control. A tag that is not GOOD, or an analog value inside its deadband, leaves the
condition as it was (``active=None``): a meter that stops answering is alarmed through
``comm_ok``, not by freezing its other alarms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scada.alarms.alarm import AlarmKey
from scada.alarms.classes import BALANCE_CLASSES, AlarmClass
from tags import TagValue, names

__all__ = ["Reading", "SourceEvaluator", "is_source_tag"]

# (namespace kind, point) -> alarm class; alarm_level feeds the three balance classes
_BOOLEAN_SOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    # (kind, point): (class, the value that means "active")
    ("meter", "comm_ok"): ("comm_loss", False),
    ("link", "comm_ok"): ("link_down", False),
    ("meter", "relay_fault"): ("relay_fault", True),
    ("meter", "review_hold"): ("review_hold", True),
    ("meter", "tamper"): ("tamper", True),
    ("meter", "reverse_energy"): ("reverse_energy", True),
}
_POINTS = frozenset({p for _, p in _BOOLEAN_SOURCES} | {"alarm_level", "power", "buffer_fill", "failures", "loss_pct"})


def is_source_tag(name: str) -> bool:
    """A cheap filter for the TagDB subscription (the evaluator checks the namespace)."""
    return names.split(name)[1] in _POINTS


@dataclass(frozen=True, slots=True)
class Reading:
    """The condition of one alarm point as one tag value shows it."""

    key: AlarmKey
    active: bool | None  # None: unknown, or inside the deadband: keep the current condition
    value: str
    detail: str


def _fmt(v: float) -> str:
    return f"{v:.6g}"


class SourceEvaluator:
    """Turns one tag value into readings. ``max_power_kw(meter)`` is the meter's limit from
    the asset registry (None: the meter has no limit, so no over-power alarm)."""

    def __init__(self, classes: dict[str, AlarmClass], max_power_kw: Callable[[str], float | None]) -> None:
        self.classes = classes
        self.max_power_kw = max_power_kw

    def evaluate(self, name: str, value: TagValue, unit: str = "") -> list[Reading]:
        try:
            tag = names.parse(name)
        except ValueError:
            return []
        good = value.good
        v = value.value
        simple = _BOOLEAN_SOURCES.get((tag.kind, tag.point))
        if simple is not None:
            alarm_class, active_value = simple
            key = AlarmKey(alarm_class, tag.kind, tag.owner)
            if not good or not isinstance(v, bool):
                return [Reading(key, None, str(v), "")]
            return [self._gate(Reading(key, v is active_value, str(v), value.detail))]
        if tag.kind == "room" and tag.point == "alarm_level":
            level = v if good and isinstance(v, int) and not isinstance(v, bool) else None
            out = []
            for i, alarm_class in enumerate(BALANCE_CLASSES, start=1):
                key = AlarmKey(alarm_class, "room", tag.owner)
                # one alarm per level: only the current level's alarm is active
                active = None if level is None else level == i
                out.append(self._gate(Reading(key, active, str(v), f"level {v}")))
            return out
        if tag.kind == "meter" and tag.point == "power":
            return [self._over_power(tag.owner, value, unit)]
        if tag.kind == "meter" and tag.point == "loss_pct":
            key = AlarmKey("loss_high", "meter", tag.owner)
            cls = self.classes["loss_high"]
            if not good or not _is_number(v) or cls.limit is None:
                return [Reading(key, None, str(v), "")]
            pct = float(v)  # type: ignore[arg-type]
            detail = f"loss {_fmt(pct)} % of the meter's consumption over the last day (limit {_fmt(cls.limit)} %)"
            return [self._gate(Reading(key, _hysteresis(pct, cls.limit, cls.deadband_pct), f"{_fmt(pct)} %", detail))]
        if tag.kind == "system" and tag.owner == "historian" and tag.point == "buffer_fill":
            key = AlarmKey("historian_buffer", "system", "historian")
            cls = self.classes["historian_buffer"]
            if not good or not _is_number(v) or cls.limit is None:
                return [Reading(key, None, str(v), "")]
            fill = float(v)  # type: ignore[arg-type]
            detail = f"buffer {fill:.0%} full (limit {cls.limit:.0%})"
            return [self._gate(Reading(key, _hysteresis(fill, cls.limit, cls.deadband_pct), _fmt(fill), detail))]
        if tag.kind == "system" and tag.owner == "logins" and tag.point == "failures":
            key = AlarmKey("login_burst", "system", "logins")
            cls = self.classes["login_burst"]
            if not good or not _is_number(v) or cls.limit is None:
                return [Reading(key, None, str(v), "")]
            count = float(v)  # type: ignore[arg-type]
            detail = f"{count:.0f} failed logins in the last minute (limit {cls.limit:g})"
            return [self._gate(Reading(key, _hysteresis(count, cls.limit, cls.deadband_pct), f"{count:.0f}", detail))]
        return []

    def _over_power(self, meter: str, value: TagValue, unit: str) -> Reading:
        key = AlarmKey("over_power", "meter", meter)
        cls = self.classes["over_power"]
        limit_kw = self.max_power_kw(meter)
        v = value.value
        if not value.good or not _is_number(v) or limit_kw is None or cls.limit is None:
            return Reading(key, None, str(v), "")
        kw = float(v) / 1000 if unit == "W" else float(v)  # type: ignore[arg-type]
        limit = limit_kw * cls.limit
        detail = f"{_fmt(kw)} kW, limit {_fmt(limit)} kW"
        return self._gate(Reading(key, _hysteresis(kw, limit, cls.deadband_pct), f"{_fmt(kw)} kW", detail))

    def _gate(self, reading: Reading) -> Reading:
        # a disabled class reads as inactive, so alarms raised before it was disabled clear
        if not self.classes[reading.key.alarm_class].enabled and reading.active is not None:
            return Reading(reading.key, False, reading.value, reading.detail)
        return reading


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hysteresis(value: float, limit: float, deadband_pct: float) -> bool | None:
    if value > limit:
        return True
    if value <= limit * (1 - deadband_pct / 100):
        return False
    return None  # inside the deadband: keep the current state
