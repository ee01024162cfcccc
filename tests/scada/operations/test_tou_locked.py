"""A time-of-use check that meets a locked SQLite database (an overloaded server: another
writer held the write lock past the busy timeout) is tried again behind the queue, not dropped
until the next daily round; any other failure is logged as an error and not retried."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy.exc

from scada.operations import meters as meters_module
from scada.operations.meters import MeterSettings, TouCheck
from scada.site.assets import AssetSnapshot, MeterInfo
from tags import TagDB


def meter(meter_id: str) -> MeterInfo:
    return MeterInfo(
        id=meter_id, kind="electricity", role="tenant", room_id="R1", building_id="B1", profile="p", link="L1",
        unit_id=1, circuit=None, multiplier=Decimal(1), install_date=None, initial_reading=Decimal(0),
        max_power_kw=None, replaced_by=None, active=True,
    )


async def test_a_locked_database_is_tried_again_and_other_failures_are_not(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(meters_module, "LOCKED_RETRY_S", 0.0)
    snapshot = AssetSnapshot(meters={m.id: m for m in (meter("E-1"), meter("E-2"))})
    driver: Any = SimpleNamespace(block_spec=lambda _meter, _name: None)  # no meter is a daily candidate

    async def no_table(*_a: Any) -> None:
        return None

    settings = MeterSettings(SimpleNamespace(snapshot=snapshot), TagDB(), driver, tz=dt.UTC,  # type: ignore[arg-type]
                             expected_table=no_table, max_defer_s=0)
    tries: list[str] = []
    done = asyncio.Event()

    async def check(m: MeterInfo) -> TouCheck:
        tries.append(m.id)
        if m.id == "E-1" and tries.count("E-1") <= 2:
            raise sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
        if m.id == "E-2":
            raise ValueError("the meter answered nonsense")
        done.set()
        return TouCheck(m.id, False, "matches the tariff")

    settings.check = check  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="scada.operations.meters")
    runner = asyncio.create_task(settings.run())
    try:
        settings.schedule_check("E-1")
        settings.schedule_check("E-2")
        await asyncio.wait_for(done.wait(), 10)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert tries == ["E-1", "E-2", "E-1", "E-1"]  # E-1 behind E-2 each time, E-2 not again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [getattr(r, "meter", None) for r in warnings] == ["E-1", "E-1"]
    assert [(r.getMessage(), getattr(r, "meter", None)) for r in errors] == [("time-of-use check failed", "E-2")]
