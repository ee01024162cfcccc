"""The ``[payments]`` configuration section: providers, amounts, order expiry, notifications'
replay window, late payments, reconciliation, the sandbox provider and the payment message."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from scada.core.configbase import ConfigModel, DecimalStr

__all__ = ["PROVIDER_NAMES", "PaymentsConfig", "SandboxConfig"]

# the providers this server ships code for; a real provider (WeChat Pay, Alipay, Stripe) is added
# as a module implementing scada.payments.provider.PaymentProvider and a name here
PROVIDER_NAMES = ("sandbox",)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SandboxConfig(ConfigModel):
    """The built-in sandbox provider: a provider of our own that behaves like a real one."""

    # its Ed25519 key pair (PEM, PKCS#8), under runtime.data_dir unless absolute; made when missing
    key_file: str = "payments-sandbox.pem"
    # how long after a payment its notification is sent, and between duplicates
    notify_delay_s: float = Field(default=0.2, ge=0, le=3600)
    # further copies of each notification (each signed anew, as a provider's retries are)
    duplicates: int = Field(default=0, ge=0, le=10)
    # also send a stale "payment.pending" event after the "payment.succeeded" one
    out_of_order: bool = False
    # a notification the server does not accept with a 2xx is sent again after these delays
    retry_delays_s: list[float] = [1.0, 5.0, 30.0, 120.0]

    @field_validator("retry_delays_s")
    @classmethod
    def _delays(cls, v: list[float]) -> list[float]:
        if len(v) > 20 or any(not 0 < d <= 86_400 for d in v):
            raise ValueError("at most 20 delays, each more than 0 and at most 86400 seconds")
        return v


class PaymentsConfig(ConfigModel):
    """Online payment of prepaid accounts through payment providers."""

    enabled: bool = True
    providers: list[str] = ["sandbox"]  # the providers offered, in this order
    # the address browsers and providers reach this server at (pay pages, return and notify
    # URLs); empty: the HMI's own URL
    public_url: str = ""
    min_amount: DecimalStr = Decimal("1.00")
    max_amount: DecimalStr = Decimal("5000.00")
    order_ttl_s: float = Field(default=900.0, ge=10, le=7 * 86_400)  # a created order expires after this
    # an order paid after it expired (the tenant paid at the last moment): credit it, or refund it
    late_payment: Literal["credit", "refund"] = "credit"
    # a notification's timestamp must be this close to now; its nonce is remembered this long
    replay_window_s: float = Field(default=300.0, ge=10, le=86_400)
    # paid orders not yet credited are credited again (after a crash), created ones expired
    recover_every_s: float = Field(default=30.0, gt=0, le=3600)
    # the daily reconciliation of the previous day against each provider's statement (site time);
    # empty: only on demand (scada payments reconcile, the API)
    reconcile_at: str = "02:00"
    # the payment-success message: the first of these notification channels (alarms.notifications
    # .channels) the tenant has an address for; empty: no message
    message_channels: list[str] = []
    sandbox: SandboxConfig = SandboxConfig()

    @field_validator("providers")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if name not in PROVIDER_NAMES:
                raise ValueError(f"[{i}]: unknown provider {name!r} (this server has: {', '.join(PROVIDER_NAMES)})")
        if len(set(v)) != len(v):
            raise ValueError("a provider is named twice")
        return v

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", v):
            raise ValueError(f"expected an http:// or https:// URL without query, found {v!r}")
        return v.rstrip("/")

    @field_validator("reconcile_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if v and not _HHMM.match(v):
            raise ValueError(f"expected a time HH:MM (24 h) or \"\", found {v!r}")
        return v

    @model_validator(mode="after")
    def _amounts(self) -> PaymentsConfig:
        if self.min_amount <= 0:
            raise ValueError(f"min_amount: must be more than 0, found {self.min_amount}")
        if self.max_amount < self.min_amount:
            raise ValueError(f"max_amount: must not be below min_amount ({self.max_amount} < {self.min_amount})")
        return self
