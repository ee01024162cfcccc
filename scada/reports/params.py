"""A report request as a user states it, checked before any work: kind, range, interval, group,
format, language.

``from`` and ``to`` are dates (``2026-11-03``: local midnight of the site; ``to`` as a date means
the end of that day, so ``from=2026-11-01&to=2026-11-30`` is the whole of November) or times with
a UTC offset (``to`` then exclusive). Buckets follow the site's calendar: ``day``, ``week`` (ISO
weeks from Monday), ``month``, ``year``. A wrong parameter is a :class:`ReportError` naming it;
the answer's size is computed from the request alone (:func:`count_buckets` × groups) and
refused by :func:`scada.core.limits.check_answer_size` before anything is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from scada.core.inputs import InputError, check_time, quote

__all__ = [
    "DEFAULT_GROUP",
    "FORMATS",
    "GROUPS",
    "INTERVALS",
    "KINDS",
    "LANGUAGES",
    "ReportError",
    "ReportRequest",
    "bucket_label",
    "bucket_of",
    "bucket_starts",
    "count_buckets",
    "parse_request",
    "year_earlier",
]

KINDS = ("energy", "compare", "finance", "arrears", "losses")
INTERVALS = ("day", "week", "month", "year")
FORMATS = ("json", "csv", "xlsx", "pdf")
LANGUAGES = ("en", "zh-CN")
COMMODITIES = ("electricity", "water")
_ASSET_GROUPS = ("meter", "room", "floor", "building", "customer")
GROUPS: dict[str, tuple[str, ...]] = {
    "energy": _ASSET_GROUPS,
    "compare": _ASSET_GROUPS,
    "finance": ("channel", "cashier", "room", "floor", "building", "customer"),
    "arrears": ("room", "floor", "building", "customer"),
    "losses": ("meter",),
}
DEFAULT_GROUP = {"energy": "room", "compare": "room", "finance": "channel", "arrears": "room", "losses": "meter"}
# the query parameters a report takes (anything else is refused, naming it)
PARAMS = ("from", "to", "interval", "group", "format", "lang", "commodity")


class ReportError(ValueError):
    """A wrong report parameter; ``param`` names it, ``status`` is the HTTP status to answer."""

    def __init__(self, param: str, message: str, status: int = 422) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ReportRequest:
    kind: str
    start: dt.datetime  # inclusive, aware
    end: dt.datetime  # exclusive, aware
    interval: str
    group: str
    format: str = "json"
    language: str = "en"
    commodity: str = "electricity"  # compare: which consumption is compared
    tz: Any = dt.UTC

    def local(self, t: dt.datetime) -> dt.datetime:
        return t.astimezone(self.tz)

    def with_range(self, start: dt.datetime, end: dt.datetime) -> ReportRequest:
        return replace(self, start=start, end=end)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "from": self.local(self.start).isoformat(), "to": self.local(self.end).isoformat(),
            "interval": self.interval, "group": self.group, "timezone": str(self.tz),
            **({"commodity": self.commodity} if self.kind == "compare" else {}),
        }


def _instant(raw: str | None, name: str, tz: Any, *, end: bool) -> dt.datetime:
    if raw is None or not raw.strip():
        raise ReportError(name, "required: a date YYYY-MM-DD or a time with a UTC offset")
    text = raw.strip()
    if len(text) > 40 or not text.isascii():
        raise ReportError(name, f"{quote(text, 40)} is not a date or an ISO 8601 time")
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            t = dt.datetime.combine(day, dt.time(), tz)
        else:
            t = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise ReportError(name, f"expected a date YYYY-MM-DD or a time with a UTC offset, found {quote(text, 40)}") from None
    if t.tzinfo is None:
        raise ReportError(name, f"{quote(text, 40)} has no UTC offset: add one (e.g. +08:00 or Z) or give a plain date")
    try:
        return check_time(t.astimezone(dt.UTC))
    except (InputError, OverflowError) as exc:
        raise ReportError(name, str(exc)) from None


def parse_request(kind: str, params: Mapping[str, str], tz: ZoneInfo | dt.tzinfo, *, now: dt.datetime | None = None,
                  available: tuple[str, ...] = KINDS) -> ReportRequest:
    """Check and parse a report request; :class:`ReportError` names the first wrong parameter.
    Nothing is read: this is all arithmetic on the request."""
    if kind not in KINDS:
        raise ReportError("kind", f"unknown report {quote(kind, 40)} (reports: {', '.join(k for k in KINDS if k in available)})", 404)
    if kind not in available:
        raise ReportError("kind", f"the {kind} report is not available on this server (it needs the meter topology)", 404)
    for name in params:
        if name not in PARAMS:
            raise ReportError(name[:64], f"unknown parameter (known: {', '.join(PARAMS)})")
    fmt = params.get("format") or "json"
    if fmt not in FORMATS:
        raise ReportError("format", f"expected one of {', '.join(FORMATS)}, found {quote(fmt, 40)}")
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise ReportError("interval", f"expected one of {', '.join(INTERVALS)}, found {quote(interval, 40)}")
    group = params.get("group") or DEFAULT_GROUP[kind]
    if group not in GROUPS[kind]:
        raise ReportError("group", f"the {kind} report groups by {', '.join(GROUPS[kind])}, found {quote(group, 40)}")
    language = params.get("lang") or "en"
    if language not in LANGUAGES:
        raise ReportError("lang", f"expected one of {', '.join(LANGUAGES)}, found {quote(language, 40)}")
    commodity = params.get("commodity") or "electricity"
    if commodity not in COMMODITIES:
        raise ReportError("commodity", f"expected electricity or water, found {quote(commodity, 40)}")
    if kind == "arrears" and not params.get("from"):
        # a picture at one moment: the end of ``to`` (default now); ``from`` is not needed
        end = _instant(params.get("to"), "to", tz, end=True) if params.get("to") else check_time(now or dt.datetime.now(dt.UTC))
        return ReportRequest(kind, end, end, interval, group, fmt, language, commodity, tz)
    start = _instant(params.get("from"), "from", tz, end=False)
    end = _instant(params.get("to"), "to", tz, end=True)
    if end <= start:
        raise ReportError("to", f"must be after from ({start.astimezone(tz).isoformat()}), found {end.astimezone(tz).isoformat()}")
    return ReportRequest(kind, start, end, interval, group, fmt, language, commodity, tz)


# -- buckets in the site's calendar ----------------------------------------------------------------
def _floor_day(day: dt.date, interval: str) -> dt.date:
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    if interval == "year":
        return day.replace(month=1, day=1)
    return day


def _next_day(day: dt.date, interval: str) -> dt.date:
    if interval == "week":
        return day + dt.timedelta(days=7)
    if interval == "month":
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if interval == "year":
        return day.replace(year=day.year + 1)
    return day + dt.timedelta(days=1)


def _span(request: ReportRequest) -> tuple[dt.date, dt.date]:
    first = request.local(request.start).date()
    last = request.local(request.end - dt.timedelta(microseconds=1)).date()
    return first, last


def count_buckets(request: ReportRequest) -> int:
    """How many buckets the range has, by arithmetic (no list is built)."""
    first, last = _span(request)
    if last < first:
        return 0
    a, b = _floor_day(first, request.interval), _floor_day(last, request.interval)
    if request.interval == "day":
        return (b - a).days + 1
    if request.interval == "week":
        return (b - a).days // 7 + 1
    if request.interval == "month":
        return (b.year - a.year) * 12 + b.month - a.month + 1
    return b.year - a.year + 1


def bucket_starts(request: ReportRequest) -> list[dt.date]:
    """The first local day of every bucket of the range (call after the size was checked)."""
    first, last = _span(request)
    day = _floor_day(first, request.interval)
    out: list[dt.date] = []
    while day <= last:
        out.append(day)
        day = _next_day(day, request.interval)
    return out


def bucket_of(day: dt.date, interval: str) -> dt.date:
    return _floor_day(day, interval)


def bucket_label(day: dt.date, interval: str) -> str:
    """``2026-11-03`` (day), ``2026-W45`` (ISO week), ``2026-11`` (month), ``2026`` (year)."""
    if interval == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if interval == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if interval == "year":
        return f"{day.year:04d}"
    return day.isoformat()


def year_earlier(t: dt.datetime, tz: Any) -> dt.datetime:
    """The same local wall time a year earlier (29 February → 28 February)."""
    local = t.astimezone(tz)
    try:
        shifted = local.replace(year=local.year - 1)
    except ValueError:
        shifted = local.replace(year=local.year - 1, day=28)
    return dt.datetime.combine(shifted.date(), shifted.time(), tz).astimezone(dt.UTC)
