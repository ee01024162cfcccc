"""``[operations]``: batch and scheduled jobs, their approvals and pacing, meter-side checks,
and the messages sent to tenants (see :mod:`scada.operations.service`)."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import Field, field_validator

from scada.core.configbase import ConfigModel, DecimalStr

__all__ = ["MessagesConfig", "OperationsConfig", "RemindersConfig"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class RemindersConfig(ConfigModel):
    """Repeated reminders while an account stays at a balance level (never at night: the
    notifier's quiet hours hold them until morning)."""

    enabled: bool = True
    levels: list[int] = [1, 2, 3]  # balance alarm levels that are reminded
    every_h: float = Field(default=24.0, gt=0, le=24 * 30)
    max_times: int = Field(default=3, ge=1, le=100)

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        if any(level not in (1, 2, 3) for level in value):
            raise ValueError(f"balance levels are 1, 2 or 3, found {value}")
        return value


class MessagesConfig(ConfigModel):
    """Messages to tenants: through which notification channels, and which ones are automatic."""

    # names of [[alarms.notifications.channels]]; a message takes the first one the tenant has
    # an address for (an sms channel needs a phone number, an email channel an address)
    channels: list[str] = []
    reminders: RemindersConfig = RemindersConfig()
    payment_messages: bool = True  # a message on every successful payment or recharge
    daily_summary: bool = False  # the day's deductions, once a day at summary_at
    summary_at: str = "20:00"  # site time
    check_every_s: float = Field(default=300.0, gt=0, le=86400)  # how often reminders are considered

    @field_validator("summary_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"expected a time HH:MM (24 h), found {value!r}")
        return value


class OperationsConfig(ConfigModel):
    """The ``[operations]`` section."""

    enabled: bool = True
    # four-eyes: a job waits for a supervisor's approval when the money it creates is above
    # this amount (recharges, credit limits, opening balances), or when it switches the
    # supply of more than relay_rooms_above rooms
    approval_money_above: DecimalStr = Decimal("10000")
    approval_relay_rooms_above: int = Field(default=50, ge=0, le=1_000_000)
    item_retries: int = Field(default=2, ge=0, le=10)  # further tries of a failed item
    item_backoff_s: float = Field(default=5.0, ge=0, le=3600)  # before the first retry; doubles
    item_backoff_max_s: float = Field(default=60.0, ge=0, le=86400)
    # pacing: items of jobs that talk to meters run per link, this many at once, this far apart;
    # their requests are the link's bulk work, sent only when no poll is due on it; with
    # max_defer_s an item also waits (up to that long) while the link has anything queued
    link_in_flight: int = Field(default=2, ge=1, le=32)
    link_gap_s: float = Field(default=0.0, ge=0, le=60)
    max_defer_s: float = Field(default=0.0, ge=0, le=600)
    workers: int = Field(default=4, ge=1, le=64)  # items at once of jobs that do not talk to meters
    clock_drift_s: float = Field(default=30.0, gt=0, le=86400)  # clock_sync sets clocks further off
    tou_check_every_s: float = Field(default=86400.0, gt=0, le=30 * 86400)  # and on every (re)connect
    max_targets: int = Field(default=20000, ge=1, le=1_000_000)
    messages: MessagesConfig = MessagesConfig()
