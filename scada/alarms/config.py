"""``[alarms]``: alarm classes (priority, delays, deadband, who may acknowledge) and
notifications. Every key is optional; the built-in defaults are in ``classes.py``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, model_validator

from scada.alarms.alarm import Priority, PriorityName
from scada.alarms.classes import BUILTIN, AlarmClass
from scada.alarms.notify.config import NotificationsConfig
from scada.core.configbase import ConfigModel

__all__ = ["AlarmClassConfig", "AlarmsConfig", "RoleName"]

RoleName = Literal["admin", "operator", "cashier", "engineer", "maintenance", "viewer"]
_ANALOG = frozenset({"over_power", "historian_buffer", "login_burst", "loss_high"})


class AlarmClassConfig(ConfigModel):
    """Overrides of one class; a key left out keeps the built-in default."""

    enabled: bool | None = None
    priority: PriorityName | None = None
    delay_on_s: float | None = Field(default=None, ge=0, le=86400)
    delay_off_s: float | None = Field(default=None, ge=0, le=86400)
    ack_roles: list[RoleName] | None = None
    shelvable: bool | None = None
    limit: float | None = Field(default=None, gt=0)
    deadband_pct: float | None = Field(default=None, ge=0, lt=100)


class AlarmsConfig(ConfigModel):
    """The ``[alarms]`` section: classes, delays, flood limits and notifications."""
    enabled: bool = True
    classes: dict[str, AlarmClassConfig] = {}
    max_shelve_hours: float = Field(default=24, gt=0, le=24 * 31)
    # how often the engine looks for changes made by others (``scada alarms ack`` on the CLI)
    sync_interval_s: float = Field(default=2.0, gt=0, le=3600)
    notifications: NotificationsConfig = NotificationsConfig()

    @model_validator(mode="after")
    def _known_classes(self) -> AlarmsConfig:
        known = ", ".join(BUILTIN)
        for name, override in self.classes.items():
            if name not in BUILTIN:
                raise ValueError(f"classes.{name}: unknown alarm class (classes: {known})")
            if name not in _ANALOG and (override.limit is not None or override.deadband_pct is not None):
                raise ValueError(f"classes.{name}: limit and deadband_pct apply only to {', '.join(sorted(_ANALOG))}")
            if override.ack_roles is not None and not override.ack_roles:
                raise ValueError(f"classes.{name}.ack_roles: name at least one role")
        for i, route in enumerate(self.notifications.routes):
            for cls in route.classes:
                if cls not in BUILTIN:
                    raise ValueError(f"notifications.routes[{i}].classes: unknown alarm class {cls!r} (classes: {known})")
        return self

    def resolved_classes(self) -> dict[str, AlarmClass]:
        """The effective settings of every class: built-in defaults with the overrides applied."""
        out: dict[str, AlarmClass] = {}
        for name, base in BUILTIN.items():
            o = self.classes.get(name)
            if o is None:
                out[name] = base
                continue
            changes: dict[str, object] = {
                k: v for k, v in o.model_dump(exclude_none=True).items() if k not in ("priority", "ack_roles")
            }
            if o.priority is not None:
                changes["priority"] = Priority.parse(o.priority)
            if o.ack_roles is not None:
                changes["ack_roles"] = tuple(o.ack_roles)
            out[name] = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
        return out
