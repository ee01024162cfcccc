"""The ``[approvals]`` section: the four-eyes rule for actions that create value.

Every default of the rule is here. Amounts are decimal strings in the site's currency; an
action needs a second user's approval when it goes *above* the amount (``"0"``: any amount).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from scada.core.configbase import ConfigModel, DecimalStr

__all__ = ["ApprovalsConfig"]


class ApprovalsConfig(ConfigModel):
    """The ``[approvals]`` section: how long a request may wait, and what needs a second user."""

    # a request nobody decided within this long expires (nothing runs)
    expire_after_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    # how often expired requests are swept (they are also expired when read or decided)
    sweep_interval_s: float = Field(default=60.0, gt=0, le=3600)
    # reversals needing approval: "credits" (those that credit an account: of a refund, a
    # deduction or a charge), "all", or "none"
    reversals: Literal["credits", "all", "none"] = "credits"
    # opening (or reopening) an account with an opening balance above this
    opening_balance_above: DecimalStr = Decimal(0)
    # a refund above this (a cashier alone refunds up to it)
    refund_above: DecimalStr = Decimal(500)
    # raising an account's credit limit, or its emergency credit, above this
    credit_limit_above: DecimalStr = Decimal(0)
    emergency_credit_above: DecimalStr = Decimal(0)
    # marking an account protected (never cut off)
    protection: bool = True

    @field_validator("opening_balance_above", "refund_above", "credit_limit_above", "emergency_credit_above")
    @classmethod
    def _not_negative(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise ValueError(f"expected an amount >= 0, found {v}")
        return v
