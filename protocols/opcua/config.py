"""Configuration of the OPC UA server (the ``[opcua]`` table; absent: no OPC UA server)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["OpcUaConfig", "SecurityMode"]

SecurityMode = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]


class OpcUaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=4840, ge=0, le=65535)  # 0: any free port (tests)
    # unique per installation; the server certificate names it. Default: urn:<hostname>:prepaid-scada
    application_uri: str | None = Field(default=None, min_length=1)
    namespace_uri: str = Field(default="urn:prepaid-scada:site", min_length=1)
    server_name: str = Field(default="Prepaid-metering SCADA", min_length=1)
    security: list[SecurityMode] = ["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"]
    allow_anonymous: bool = False  # anonymous sessions may browse, read and subscribe; never call
    pki_dir: str | None = None  # default <runtime.data_dir>/pki
    certificate_hosts: list[str] = []  # extra DNS names / addresses for the server certificate
    publish_batch: int = Field(default=5_000, ge=1, le=1_000_000)  # tag changes taken per update round
    queue_size: int = Field(default=100_000, ge=100)  # the tag subscription's queue (it coalesces beyond)
    history_max_values: int = Field(default=10_000, ge=100, le=1_000_000)  # HistoryRead values per node and answer
    # security mode None and anonymous sessions are refused by `scada check-config` and `scada run`
    # unless this says, with a reason, why this site allows them
    insecure_ok: bool = False
    insecure_reason: str = Field(default="", max_length=500)

    @field_validator("security")
    @classmethod
    def _security(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one security mode is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate security modes in {value}")
        if not any(v.startswith("Basic256Sha256") for v in value):
            # without a signing policy a user name's password would cross the network in clear
            raise ValueError('add "Basic256Sha256_SignAndEncrypt": user passwords are encrypted with it')
        return value

    @model_validator(mode="after")
    def _reasoned(self) -> OpcUaConfig:
        if self.insecure_ok and not self.insecure_reason.strip():
            raise ValueError("insecure_reason: say why this site accepts an insecure OPC UA server (insecure_ok = true)")
        return self

    @field_validator("application_uri", "namespace_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError(f"expected a URI such as urn:example:scada, found {value!r}")
        return value

    @property
    def none_allowed(self) -> bool:
        return "None" in self.security

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
