"""The collector's watch: a slow collection of the oldest generation is logged, others are not."""

from __future__ import annotations

import gc
import logging

import pytest

from scada.core.gctune import watch_slow_collections


def test_each_collection_over_the_threshold_is_logged_and_stop_ends_the_watch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scada.core.gctune")
    enabled = gc.isenabled()
    gc.disable()  # only the collections this test makes
    stop = watch_slow_collections(threshold_s=0.0)
    try:
        gc.collect(0)
        gc.collect(1)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect()
        records = [r for r in caplog.records if r.getMessage() == "slow garbage collection"]
        assert [r.generation for r in records] == [0, 1, 2]  # type: ignore[attr-defined]
        assert records[2].ms >= 0 and records[2].collected >= 1  # type: ignore[attr-defined]
    finally:
        stop()
        if enabled:
            gc.enable()
    stop()  # twice is harmless
    gc.collect()
    assert len(caplog.records) == 3


def test_a_quick_full_collection_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scada.core.gctune")
    stop = watch_slow_collections(threshold_s=60.0)
    try:
        gc.collect()
    finally:
        stop()
    assert not caplog.records
