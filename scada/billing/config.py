"""The ``[billing]`` configuration section: bills, due dates, dunning, late fees, templates."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator, model_validator

from scada.core.configbase import ConfigModel, DecimalStr

__all__ = ["BillingConfig", "DemoBillingConfig", "DunningConfig", "DunningLevel", "LateFeeConfig"]


class DunningLevel(ConfigModel):
    """The alarm level an overdue bill raises once it is ``days`` past its grace."""

    level: int = Field(ge=1, le=3)
    days: int = Field(ge=0, le=3650)


class DunningConfig(ConfigModel):
    """Dunning of postpaid accounts' overdue bills (an account may override each key)."""

    grace_days: int = Field(default=5, ge=0, le=365)  # after the due date, before a bill is overdue
    levels: list[DunningLevel] = [DunningLevel(level=1, days=0), DunningLevel(level=2, days=15), DunningLevel(level=3, days=30)]
    # cut the supply (with the friendly-credit windows and protections) once the dunning reaches cut_level
    cut_when_overdue: bool = False
    cut_level: int = Field(default=3, ge=1, le=3)

    @model_validator(mode="after")
    def _ordered(self) -> DunningConfig:
        levels = [lv.level for lv in self.levels]
        if len(set(levels)) != len(levels):
            raise ValueError(f"levels: each level at most once, found {levels}")
        by_level = sorted(self.levels, key=lambda lv: lv.level)
        for a, b in zip(by_level, by_level[1:], strict=False):
            if b.days < a.days:
                raise ValueError(f"levels: level {b.level} must not come before level {a.level} ({b.days} < {a.days} days)")
        return self


class LateFeeConfig(ConfigModel):
    """The late-payment fee (违约金) of an overdue bill: each overdue day ``rate_per_day`` × the
    overdue amount, at most ``cap`` (money) and at most ``cap_rate`` × the overdue amount per bill."""

    rate_per_day: DecimalStr = Decimal(0)  # 0.001 = 1 ‰ a day; 0 = no late fee
    cap: DecimalStr | None = None
    cap_rate: DecimalStr | None = None

    @field_validator("rate_per_day", "cap", "cap_rate")
    @classmethod
    def _bounded(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and not (0 <= v <= 1_000_000):
            raise ValueError(f"expected a value from 0 to 1000000, found {v}")
        return v

    @model_validator(mode="after")
    def _rates(self) -> LateFeeConfig:
        if self.rate_per_day > 1:
            raise ValueError(f"rate_per_day: a fraction of the overdue amount per day (0.001 = 1 ‰), found {self.rate_per_day}")
        if self.cap_rate is not None and self.cap_rate > 10:
            raise ValueError(f"cap_rate: a fraction of the overdue amount (0.3 = 30 %), found {self.cap_rate}")
        return self


class DemoBillingConfig(ConfigModel):
    """What ``scada demo`` sets up for the back office when its database is new."""

    enabled: bool = True
    property_fee_per_m2: DecimalStr = Decimal("3.50")  # a month, on every room's bill
    postpaid_rooms: list[str] = ["B1-R101", "B1-R102", "B1-R103"]  # shops on contract
    shop_rent: DecimalStr = Decimal("1200.00")  # a month, billed on the postpaid shops' bills


class BillingConfig(ConfigModel):
    """Back office: custom charges, bills, payments, statements, adjustments, arrears."""

    enabled: bool = True
    due_days: int = Field(default=15, ge=0, le=365)  # a bill is due this many days after it is issued
    tick_s: float = Field(default=60.0, gt=0, le=3600)  # period charges, dunning and late fees
    # a folder whose bill.html / statement.html replace the built-in print templates
    templates_dir: str = ""
    # tax shown per energy line, by commodity (a fraction: "0.13" = 13 %); none when absent
    tax_rates: dict[str, DecimalStr] = {}
    max_amount: DecimalStr = Decimal("100000000")  # the largest rule amount or payment accepted
    dunning: DunningConfig = DunningConfig()
    late_fee: LateFeeConfig = LateFeeConfig()
    demo: DemoBillingConfig = DemoBillingConfig()

    @field_validator("tax_rates")
    @classmethod
    def _rates(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for k, rate in v.items():
            if k not in ("electricity", "water"):
                raise ValueError(f"{k}: expected electricity or water")
            if not 0 <= rate < 1:
                raise ValueError(f"{k}: a tax rate is a fraction from 0 to 1 (0.13 = 13 %), found {rate}")
        return v
