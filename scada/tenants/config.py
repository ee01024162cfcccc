"""The ``[tenants]`` configuration section: the tenant portal's sessions, PINs and one-time codes."""

from __future__ import annotations

from pydantic import Field, model_validator

from scada.core.configbase import ConfigModel

__all__ = ["TenantsConfig"]


class TenantsConfig(ConfigModel):
    """Tenant self-service (``/tenant/``): who may sign in, how, and for how long."""

    enabled: bool = True
    # a tenant's session ends after this long without a request, and at the latest after max_hours
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_max_hours: int = Field(default=12, ge=1, le=24 * 30)
    pin_digits: int = Field(default=6, ge=4, le=12)  # a PIN is exactly this many digits
    # one-time codes by SMS: the notification channel (kind sms) they go through; empty: the
    # first SMS channel of [alarms.notifications]; no SMS channel: no sign-in by code
    code_channel: str = ""
    code_digits: int = Field(default=6, ge=4, le=10)
    code_ttl_s: float = Field(default=300.0, ge=30, le=3600)  # a code expires after this
    code_resend_s: float = Field(default=60.0, ge=0, le=3600)  # at most one code per number this often
    code_sends_per_hour: int = Field(default=5, ge=1, le=100)  # codes per phone number in an hour
    code_sends_per_address_per_hour: int = Field(default=20, ge=1, le=10_000)  # codes asked from one address
    code_max_attempts: int = Field(default=5, ge=1, le=20)  # wrong entries after which a code is void

    @model_validator(mode="after")
    def _session(self) -> TenantsConfig:
        if self.session_idle_minutes > self.session_max_hours * 60:
            raise ValueError("session_idle_minutes: longer than session_max_hours")
        return self
