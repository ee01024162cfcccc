"""A link that cannot poll its meters in their intervals says so (protocols.modbus.pace): in its
statistics and in one warning, once most of its polls start late window after window; a backlog
after an outage (one window) is not an overload; and it says when it keeps up again."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from protocols.modbus import pace
from protocols.modbus.pace import PollPace
from protocols.modbus.poller import DeviceSpec
from protocols.modbus.sim import Simulator
from protocols.modbus.stats import LinkStats

from .conftest import link_config, until


def window(p: PollPace, start: float, late_share: float, polls: int = 20, interval: float = 10.0) -> float:
    """``polls`` polls spread over one window from ``start``, that share of them late; returns
    the start of the next window."""
    late = round(polls * late_share)
    for i in range(polls):
        p.started(2.0 if i < late else 0.0, interval, start + i * pace.WINDOW_S / polls)
    return start + pace.WINDOW_S


def test_overloaded_after_two_late_windows_and_keeps_up_after_two_good_ones(caplog: pytest.LogCaptureFixture) -> None:
    stats = LinkStats(name="gw-1", devices=40)
    p = PollPace(stats)
    caplog.set_level(logging.INFO, logger="protocols.modbus.pace")
    t = window(p, 0.0, 0.0)
    t = window(p, t, 0.9)  # a backlog after an outage: one window
    t = window(p, t, 0.0)
    t = window(p, t, 0.0)
    assert not stats.overloaded and stats.polls_late == 18
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    t = window(p, t, 0.8)
    t = window(p, t, 0.7)
    assert not stats.overloaded  # a window is judged when the next poll comes after it
    t = window(p, t, 0.75)
    assert stats.overloaded and stats.late_share == 0.7
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].link == "gw-1" and warnings[0].late_share == 0.7  # type: ignore[attr-defined]
    assert "overloaded" in warnings[0].getMessage()
    t = window(p, t, 0.6)  # still late: no second warning
    t = window(p, t, 0.1)
    t = window(p, t, 0.3)  # between the two marks: neither way
    t = window(p, t, 0.0)
    t = window(p, t, 0.05)
    assert stats.overloaded
    window(p, t, 0.0)
    assert not stats.overloaded
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert any("keeps up" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_a_window_with_few_polls_says_nothing() -> None:
    stats = LinkStats(name="gw-1")
    p = PollPace(stats)
    t = 0.0
    for _ in range(5):
        t = window(p, t, 1.0, polls=pace.MIN_POLLS - 1)
    assert not stats.overloaded and stats.late_share == 0.0 and stats.polls_late == 5 * (pace.MIN_POLLS - 1)


async def test_a_link_with_more_polls_than_it_can_carry_is_overloaded_and_its_neighbour_is_not(
    sim: Simulator, running_poller: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Real polls over TCP: on ``tcp`` twelve meters polled every 0.2 s through one connection
    that keeps 40 ms between frames (~25 requests/s for ~120 wanted); on ``rtu`` one meter."""
    monkeypatch.setattr(pace, "WINDOW_S", 1.0)
    monkeypatch.setattr(pace, "MIN_POLLS", 3)
    caplog.set_level(logging.WARNING, logger="protocols.modbus.pace")
    busy = [DeviceSpec(f"T{i}", "acrel-ddsy1352", "tcp", i) for i in range(1, 13)]
    calm = [DeviceSpec("R1", "acrel-ddsy1352", "rtu", 1)]
    links = [link_config(sim, "tcp", max_in_flight=1, inter_frame_gap_ms=40), link_config(sim, "rtu")]
    intervals = {"fast": 0.2, "energy": 0.2, "slow": 3600, "volume": 3600}
    async with running_poller([*busy, *calm], links=links, poll_intervals=intervals) as (poller, _tags):
        await until(lambda: next(s for s in poller.link_stats() if s.name == "tcp").overloaded, timeout=15,
                    what="the busy link said to be overloaded")
        stats = {s.name: s for s in poller.link_stats()}
    assert stats["tcp"].late_share > pace.OVERLOADED_ABOVE and stats["tcp"].polls_late > 0
    assert not stats["rtu"].overloaded
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "overloaded" in r.getMessage()]
    assert [r.link for r in warned] == ["tcp"]  # type: ignore[attr-defined]
