"""Request statistics of links and devices, kept for the HMI (read through ModbusPoller)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from tags import QualityReason, utcnow

__all__ = ["Counters", "DeviceStats", "LinkStats"]

_EWMA = 0.2  # weight of the newest latency sample


@dataclass
class Counters:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    exceptions: int = 0
    bad_frames: int = 0
    comm_failures: int = 0
    latency_ms: float | None = None  # moving average of answered requests
    max_latency_ms: float = 0.0
    last_error: str = ""
    last_error_at: datetime | None = None
    last_ok_at: datetime | None = None

    def ok(self, latency_s: float) -> None:
        ms = latency_s * 1000.0
        self.latency_ms = ms if self.latency_ms is None else self.latency_ms + _EWMA * (ms - self.latency_ms)
        if ms > self.max_latency_ms:
            self.max_latency_ms = ms
        self.last_ok_at = utcnow()

    def failed(self, reason: QualityReason, detail: str, latency_s: float | None = None) -> None:
        self.errors += 1
        if reason is QualityReason.TIMEOUT:
            self.timeouts += 1
        elif reason is QualityReason.DEVICE_EXCEPTION:
            self.exceptions += 1
            if latency_s is not None:
                self.ok(latency_s)  # the device answered: the answer's latency counts
        elif reason is QualityReason.BAD_FRAME:
            self.bad_frames += 1
        else:
            self.comm_failures += 1
        self.last_error = detail
        self.last_error_at = utcnow()


@dataclass
class LinkStats(Counters):
    name: str = ""
    kind: str = ""
    endpoint: str = ""
    state: str = "connecting"  # connecting | up | down
    connections_up: int = 0
    connections: int = 0  # the link's limit of requests in flight = its connections
    in_flight: int = 0
    max_in_flight: int = 0
    queued: int = 0  # polls and commands due and waiting for a connection
    devices: int = 0
    devices_offline: int = 0
    reconnects: int = 0
    # polls that started a tenth of their interval or more late; the share of them in the last
    # full window; most of them late window after window (see protocols.modbus.pace)
    polls_late: int = 0
    late_share: float = 0.0
    overloaded: bool = False

    def snapshot(self) -> LinkStats:
        return replace(self)


@dataclass
class DeviceStats(Counters):
    meter_id: str = ""
    link: str = ""
    unit_id: int = 0
    address: str | None = None  # a DL/T 645 address, an MQTT device id
    circuit: int | None = None
    profile: str = ""
    state: str = "unknown"  # unknown | online | offline | config_error
    consecutive_failures: int = 0
    polls: int = 0
    last_poll_at: datetime | None = None
    next_probe_s: float | None = None  # while offline: seconds between probes
    extra: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> DeviceStats:
        return replace(self, extra=dict(self.extra))
