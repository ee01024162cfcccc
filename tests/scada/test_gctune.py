"""The collector's watch: a slow collection of the oldest generation is logged, others are not."""

from __future__ import annotations

import gc
import logging

import pytest

from scada.core.gctune import watch_slow_collections


def test_a_full_collection_over_the_threshold_is_logged_once_and_stop_ends_the_watch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scada.core.gctune")
    stop = watch_slow_collections(threshold_s=0.0)
    try:
        gc.collect(0)
        gc.collect(1)
        assert not caplog.records  # the young generations are not watched
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect()
        (record,) = caplog.records
        assert record.getMessage() == "slow garbage collection"
        assert record.generation == 2 and record.ms >= 0 and record.collected >= 1  # type: ignore[attr-defined]
    finally:
        stop()
    stop()  # twice is harmless
    gc.collect()
    assert len(caplog.records) == 1


def test_a_quick_full_collection_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scada.core.gctune")
    stop = watch_slow_collections(threshold_s=60.0)
    try:
        gc.collect()
    finally:
        stop()
    assert not caplog.records
