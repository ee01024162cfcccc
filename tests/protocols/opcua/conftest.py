"""An OPC UA server on a loopback port with a small site, and hooks that record their calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from protocols.opcua import (
    BuildingSpec,
    Caller,
    FloorSpec,
    MeterSpec,
    MethodRefused,
    OpcUaConfig,
    OpcUaServer,
    PointSpec,
    RoomSpec,
    ServerHooks,
    SiteSpec,
)
from protocols.opcua.catalogue import (
    ELECTRICITY_POINTS,
    ROOM_POINTS,
    ROOM_REQUIRED,
    WATER_POINTS,
)
from tags import DataType

USERS = {"alice": "alice-password", "bob": "bob-password"}


@dataclass
class Recorder:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    relay_result: str = "confirmed"
    fail_with: Exception | None = None

    async def authenticate(self, user: str, password: str, peer: str) -> Any:
        self.calls.append(("login", user))
        return {"user": user} if USERS.get(user) == password else None

    async def set_relay(self, caller: Caller, meter_id: str, closed: bool) -> str:
        self.calls.append(("set_relay", (caller.name, meter_id, closed, caller.mode)))
        if self.fail_with is not None:
            raise self.fail_with
        if caller.anonymous:
            raise MethodRefused(ua.StatusCodes.BadUserAccessDenied)
        return self.relay_result

    async def recharge(self, caller: Caller, room_id: str, amount: float, reference: str) -> float:
        self.calls.append(("recharge", (caller.name, room_id, amount, reference)))
        return 100.0 + amount

    async def refused(self, caller: Caller, service: str) -> None:
        self.calls.append(("refused", (caller.name, service)))

    def hooks(self) -> ServerHooks:
        return ServerHooks(self.authenticate, self.set_relay, self.recharge, self.refused)


def meter_points(meter_id: str, kind: str) -> tuple[PointSpec, ...]:
    table = WATER_POINTS if kind == "water" else ELECTRICITY_POINTS
    return tuple(PointSpec(f"{meter_id}.{p}", p, k.data_type, k.unit, k.description) for p, k in table.items()) + (
        PointSpec(f"{meter_id}.comm_ok", "comm_ok", DataType.BOOL, "", "answers polls"),
    )


def room_points(room_id: str) -> tuple[PointSpec, ...]:
    return tuple(
        PointSpec(f"room:{room_id}.{p}", p, ROOM_POINTS[p].data_type, "CNY" if p == "balance" else "", ROOM_POINTS[p].description, derived=True)
        for p in ROOM_REQUIRED
    )


def small_site() -> SiteSpec:
    site = SiteSpec("Test Site")
    site.buildings["B1"] = BuildingSpec("B1", "Building 1")
    site.buildings["B2"] = BuildingSpec("B2", "Building 2")
    site.floors["B1-F1"] = FloorSpec("B1-F1", "B1", "F1", 1)
    site.floors["B1-F2"] = FloorSpec("B1-F2", "B1", "F2", 2)
    site.floors["B2-F1"] = FloorSpec("B2-F1", "B2", "F1", 1)
    for floor, rooms in (("B1-F1", ("R101", "R102")), ("B1-F2", ("R201",)), ("B2-F1", ("R101",))):
        for name in rooms:
            rid = f"{floor[:2]}-{name}"
            site.rooms[rid] = RoomSpec(rid, floor, name, points=room_points(rid))
    for rid in ("B1-R101", "B1-R102", "B1-R201", "B2-R101"):
        mid = "E-" + rid
        site.meters[mid] = MeterSpec(mid, "electricity", rid[:2], rid, points=meter_points(mid, "electricity"), switchable=True)
    site.meters["W-B1-R101"] = MeterSpec("W-B1-R101", "water", "B1", "B1-R101", points=meter_points("W-B1-R101", "water"), switchable=True)
    site.meters["E-B1-COMMON"] = MeterSpec("E-B1-COMMON", "electricity", "B1", None, points=meter_points("E-B1-COMMON", "electricity"))
    return site


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(tmp_path: Path, recorder: Recorder) -> AsyncIterator[OpcUaServer]:
    config = OpcUaConfig(
        port=0, security=["None", "Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"], allow_anonymous=True,
        application_uri="urn:test:scada",
    )
    srv = OpcUaServer(config, pki_dir=tmp_path / "pki", hooks=recorder.hooks())
    await srv.start()
    try:
        await srv.sync(small_site(), lambda _tag: None)
        yield srv
    finally:
        await srv.stop()
