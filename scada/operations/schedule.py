"""Cron expressions of repeating jobs, in the site's time zone.

Parsing is ``croniter``'s (pinned): a well-kept parser of the five-field syntax with ranges,
steps, names and the day-of-month/day-of-week rule, and correct across daylight-saving
changes with ``zoneinfo`` times; writing our own would repeat its edge cases. Only the
standard five fields are accepted (minute hour day-of-month month day-of-week): a seconds
field or a sixth "year" field is refused rather than guessed at.
"""

from __future__ import annotations

import datetime as dt

from croniter import croniter

__all__ = ["CronError", "check_cron", "next_run"]


class CronError(ValueError):
    pass


def check_cron(expr: str) -> str:
    """The expression, normalised (single spaces), or :class:`CronError` saying what is wrong."""
    text = " ".join(expr.split())
    fields = text.split(" ")
    if len(text) > 120:
        raise CronError("a cron expression of at most 120 characters")
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), found {len(fields)} in {expr!r}")
    if not croniter.is_valid(text):
        raise CronError(f"not a valid cron expression: {expr!r}")
    return text


def next_run(expr: str, after: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The first time after ``after`` (aware) that ``expr`` names, in site time; as UTC."""
    it = croniter(expr, after.astimezone(tz))
    nxt = it.get_next(dt.datetime)
    assert isinstance(nxt, dt.datetime)
    return nxt.astimezone(dt.UTC)
