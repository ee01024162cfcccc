"""The ``[topology]`` configuration section: manual readings, daily losses, apportionment runs."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import Field, field_validator

from scada.core.configbase import ConfigModel, DecimalStr

__all__ = ["ApportionmentConfig", "TopologyConfig", "TopologyDemoConfig", "hhmm"]

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def hhmm(value: str) -> tuple[int, int]:
    """``"01:30"`` → ``(1, 30)``."""
    m = _HHMM.match(value)
    if not m:
        raise ValueError(f"expected a time HH:MM, found {value!r}")
    return int(m.group(1)), int(m.group(2))


class ApportionmentConfig(ConfigModel):
    """When the rules' periods are run by themselves (a monthly rule: the month that ended, a
    daily rule: yesterday), as the system, audited like a run over the API."""

    auto_run: bool = True
    run_at: str = "01:00"  # site time: a period is run after this time of the day after it ends
    retry_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)  # after a run that could not be done

    @field_validator("run_at")
    @classmethod
    def _time(cls, v: str) -> str:
        hhmm(v)
        return v


class TopologyDemoConfig(ConfigModel):
    """What ``scada demo`` adds: readings of the utility meter entered by a simulated operator
    (the building's meters plus a loss), and a monthly rule sharing the common meter by area."""

    enabled: bool = True
    utility_meter: str = "U-B1"
    reading_every_s: float = Field(default=300.0, gt=0)
    loss_pct: DecimalStr = Decimal("3.5")
    common_meter: str = "C-B1-01"
    building: str = "B1"


class TopologyConfig(ConfigModel):
    """The ``[topology]`` section."""

    enabled: bool = True
    # the register step of meters read by hand (polled meters take their profile's)
    manual_resolution: DecimalStr = Decimal("0.01")
    # a manual reading may be this far ahead of the server's clock (clock skew of the entry)
    future_tolerance_s: float = Field(default=300.0, ge=0, le=86_400)
    max_import_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    losses_at: str = "00:30"  # site time: yesterday's losses are computed and stored after this
    tick_s: float = Field(default=60.0, gt=0, le=3600)
    apportionment: ApportionmentConfig = ApportionmentConfig()
    demo: TopologyDemoConfig = TopologyDemoConfig()

    @field_validator("manual_resolution")
    @classmethod
    def _step(cls, v: Decimal) -> Decimal:
        if v <= 0 or v > 1000 or v.as_tuple().exponent < -8:  # type: ignore[operator]
            raise ValueError(f"expected a register step such as 0.01 (0 < step <= 1000, at most 8 decimals), found {v}")
        return v

    @field_validator("losses_at")
    @classmethod
    def _time(cls, v: str) -> str:
        hhmm(v)
        return v
