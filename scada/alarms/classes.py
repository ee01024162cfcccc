"""The built-in alarm classes: what each watches, its object, and its default settings.

Every setting can be changed per class in ``[alarms.classes.<name>]`` (see ``config.py``);
:class:`AlarmClass` is the resolved, effective setting the engine uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from scada.alarms.alarm import ObjectType, Priority

__all__ = ["AlarmClass", "BALANCE_CLASSES", "BUILTIN", "CLASS_NAMES", "DEFAULT_ACK_ROLES"]

DEFAULT_ACK_ROLES = ("admin", "operator", "maintenance")


@dataclass(frozen=True, slots=True)
class AlarmClass:
    name: str
    object_type: ObjectType
    priority: Priority
    delay_on_s: float = 0.0  # the condition must hold this long before the alarm is raised
    delay_off_s: float = 0.0  # ... and be gone this long before the alarm clears
    ack_roles: tuple[str, ...] = DEFAULT_ACK_ROLES
    shelvable: bool = True
    limit: float | None = None  # analog classes only (meaning per class, see config/README.md)
    deadband_pct: float = 0.0  # analog: clears only below limit * (1 - deadband_pct / 100)
    enabled: bool = True
    title: str = ""  # English title for logs and the console; translations live in templates


P = Priority
BUILTIN: dict[str, AlarmClass] = {
    c.name: c
    for c in (
        AlarmClass("comm_loss", "meter", P.MEDIUM, delay_on_s=30, delay_off_s=10, title="Communication lost"),
        AlarmClass("link_down", "link", P.HIGH, delay_on_s=5, delay_off_s=10, title="Link down"),
        AlarmClass("relay_fault", "meter", P.HIGH, title="Relay/valve did not follow a command"),
        AlarmClass("balance_low", "room", P.LOW, title="Balance low"),
        AlarmClass("balance_very_low", "room", P.MEDIUM, title="Balance very low"),
        AlarmClass("balance_exhausted", "room", P.HIGH, title="Balance exhausted"),
        AlarmClass("review_hold", "meter", P.MEDIUM, title="Register held for review"),
        AlarmClass("tamper", "meter", P.HIGH, title="Tampering detected"),
        AlarmClass("reverse_energy", "meter", P.MEDIUM, delay_on_s=60, delay_off_s=30, title="Reverse energy"),
        AlarmClass(
            "over_power", "meter", P.MEDIUM, delay_on_s=30, delay_off_s=30, limit=1.0, deadband_pct=5,
            title="Power above the meter's limit",
        ),
        AlarmClass(
            "historian_buffer", "system", P.HIGH, delay_off_s=60, limit=0.8, deadband_pct=10,
            title="Historian buffer filling",
        ),
        AlarmClass(
            "login_burst", "system", P.HIGH, delay_off_s=300, limit=30, deadband_pct=50,
            title="Burst of failed logins",
        ),
        # a parent meter's loss over the last whole day (per cent): theft or a fault downstream
        AlarmClass("loss_high", "meter", P.MEDIUM, limit=10.0, deadband_pct=10, title="Loss above its limit"),
    )
}
CLASS_NAMES = tuple(BUILTIN)
# room alarm_level 1, 2, 3 -> one class per level
BALANCE_CLASSES = ("balance_low", "balance_very_low", "balance_exhausted")
