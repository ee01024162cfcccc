"""Whether a link keeps up with its polls.

A poll that starts a tenth of its interval or more after it was due has waited for the link
(the poller's own measure: such a poll takes the moment it was served as its new phase). Some do
after a link comes back (its backlog) or while a batch job takes the link's spare time. When most
polls of a link start that late window after window, the link carries more than it can poll in
their intervals — too many meters on it, intervals too short, too few connections, a slow bus —
and its values are older than the operator thinks. :class:`PollPace` counts a link's polls and
late polls in windows of :data:`WINDOW_S` and says so once, in a warning naming the link and the
share of late polls (and in its :class:`~protocols.modbus.stats.LinkStats`: ``overloaded``,
``late_share``, ``polls_late``), and once more when the link keeps up again.
"""

from __future__ import annotations

import logging

from .stats import LinkStats

__all__ = ["PollPace", "WINDOW_S"]

log = logging.getLogger(__name__)

WINDOW_S = 60.0
LATE_FRACTION = 0.1  # of the poll's interval
OVERLOADED_ABOVE = 0.5  # share of late polls in a window
KEEPS_UP_BELOW = 0.2
WINDOWS = 2  # windows in a row before the link is said to be overloaded, or to keep up again
MIN_POLLS = 10  # a window with fewer polls says nothing either way


class PollPace:
    """The late polls of one link (see the module docstring); ``now`` is the event loop's clock."""

    def __init__(self, stats: LinkStats) -> None:
        self.stats = stats
        self._window_end: float | None = None
        self._polls = 0
        self._late = 0
        self._streak = 0  # full windows in a row that point away from the link's current state

    def started(self, late_s: float, interval_s: float, now: float) -> None:
        """A poll of ``interval_s`` started ``late_s`` after it was due."""
        if self._window_end is None:
            self._window_end = now + WINDOW_S
        elif now >= self._window_end:
            self._close(now)
        self._polls += 1
        if late_s >= LATE_FRACTION * interval_s:
            self._late += 1
            self.stats.polls_late += 1

    def _close(self, now: float) -> None:
        polls, late = self._polls, self._late
        self._polls = self._late = 0
        self._window_end = now + WINDOW_S
        if polls < MIN_POLLS:
            return
        stats = self.stats
        share = late / polls
        stats.late_share = round(share, 3)
        away = share < KEEPS_UP_BELOW if stats.overloaded else share > OVERLOADED_ABOVE
        self._streak = self._streak + 1 if away else 0
        if self._streak < WINDOWS:
            return
        self._streak = 0
        stats.overloaded = not stats.overloaded
        extra = {"link": stats.name, "late_share": stats.late_share, "polls": polls, "window_s": WINDOW_S, "devices": stats.devices}
        if stats.overloaded:
            log.warning(
                "link overloaded: most polls start late (more meters or shorter intervals than it can poll; "
                "spread them over more links or connections, or poll less often)", extra=extra,
            )
        else:
            log.info("link keeps up with its polls again", extra=extra)
