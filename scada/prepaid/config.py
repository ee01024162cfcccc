"""The ``[prepaid]`` configuration section."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from scada.core.configbase import ConfigModel, DecimalStr
from scada.prepaid.tariff_definition import TariffDefinition

__all__ = ["DemoAccountsConfig", "FriendlyCreditConfig", "FriendlyWindowConfig", "PrepaidConfig", "PrepaidDefaults", "ThresholdConfig"]

_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def hhmm_minutes(value: str) -> int:
    """Minutes after midnight of a ``HH:MM`` time; raises ValueError for anything else."""
    m = _HHMM.match(value)
    if not m:
        raise ValueError(f"expected a time HH:MM, found {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


class ThresholdConfig(ConfigModel):
    """One balance alarm level (1 to 3), reached at a balance (``money``) or at days of credit left (``days``)."""

    level: int = Field(ge=1, le=3)
    money: DecimalStr | None = None
    days: DecimalStr | None = None

    @model_validator(mode="after")
    def _one(self) -> ThresholdConfig:
        if (self.money is None) == (self.days is None):
            raise ValueError("give exactly one of 'money' or 'days'")
        return self

    def as_input(self) -> dict[str, object]:
        return {"level": self.level, "money": self.money} if self.money is not None else {"level": self.level, "days": self.days}


class PrepaidDefaults(ConfigModel):
    """Settings a new account gets unless the opening request says otherwise."""

    thresholds: list[ThresholdConfig] = [
        ThresholdConfig(level=1, money=Decimal("20")),
        ThresholdConfig(level=2, money=Decimal("5")),
        ThresholdConfig(level=3, money=Decimal("0")),
    ]
    credit_limit: DecimalStr = Decimal(0)
    friendly_credit: bool = True
    auto_reconnect: bool = True
    emergency_credit: DecimalStr = Decimal(0)


class FriendlyWindowConfig(ConfigModel):
    """A daily window (on the given weekdays) in which an account with friendly credit is not cut."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start: str
    end: str  # at or before start: the window ends the next day

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        hhmm_minutes(v)
        return v

    @property
    def iso_days(self) -> frozenset[int]:
        return frozenset(_DAYS[d] for d in self.days)


class FriendlyCreditConfig(ConfigModel):
    """When no disconnection may happen (for accounts with friendly credit)."""

    windows: list[FriendlyWindowConfig] = [FriendlyWindowConfig(start="18:00", end="08:00")]
    weekends: bool = True
    holidays: list[dt.date] = []


class DemoAccountsConfig(ConfigModel):
    """What ``scada demo`` sets up when the database has no tariff yet."""

    enabled: bool = True
    tariff_id: str = "DEMO-TOU"
    tariff_name: str = "Residential time of use"
    tariff: TariffDefinition | None = None
    water_tariff_id: str = "DEMO-WATER"
    water_price: DecimalStr = Decimal("3.50")
    balances: list[DecimalStr] = [Decimal("100"), Decimal("30"), Decimal("10"), Decimal("3")]
    recharge_after_s: float = Field(default=60.0, gt=0)  # the demo cashier recharges a cut room after this
    recharge_amount: DecimalStr = Decimal("50")


class PrepaidConfig(ConfigModel):
    """The ``[prepaid]`` section: money rules, billing batches, timers, data retention, new accounts' defaults."""

    enabled: bool = True
    rounding: Literal["half_up", "half_even", "half_down", "up", "down"] = "half_up"
    max_amount: DecimalStr = Decimal("1000000")  # the largest amount one operation may move
    jump_margin: DecimalStr = Decimal(1)  # factor on a meter's max_power_kw before a jump is held
    batch_limit: int = Field(default=2000, ge=1, le=100_000)  # readings per billing transaction
    # where billing's transactions run: a worker process of their own ("process"), a thread of
    # the server's process ("thread"), or "auto": the process from PROCESS_FROM_METERS meters on
    billing_in: Literal["auto", "process", "thread"] = "auto"
    tick_s: float = Field(default=15.0, gt=0, le=3600)  # waiting cuts, retries, daily charges
    command_retry_s: float = Field(default=60.0, gt=0, le=86_400)
    daily_cost_window_days: int = Field(default=7, ge=1, le=90)
    # a closed account's tenant contact details (and their traces in approval requests and the
    # notification log) are erased this many days after it closed; none: kept
    personal_data_retention_days: int | None = Field(default=None, ge=0, le=36_500)
    defaults: PrepaidDefaults = PrepaidDefaults()
    friendly_credit: FriendlyCreditConfig = FriendlyCreditConfig()
    demo: DemoAccountsConfig = DemoAccountsConfig()

    @field_validator("max_amount", "jump_margin")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError(f"expected a value > 0, found {v}")
        return v
