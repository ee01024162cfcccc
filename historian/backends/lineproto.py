"""InfluxDB line protocol for our points, and InfluxQL quoting.

Measurements: ``interval`` (tag ``meter``; timestamp = interval start, precision s) and ``raw``
(tag ``tag``; timestamp = sample time, precision µs). Integer fields carry the ``i`` suffix
always and floats never, so a field keeps one type for ever (InfluxDB refuses a change).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..records import FLOAT_FIELDS, INT_FIELDS, IntervalRecord, RawPoint
from ..rollup import DAY_FLOAT_FIELDS, DAY_INT_FIELDS

__all__ = [
    "DAY_MEASUREMENT",
    "INTERVAL_MEASUREMENT",
    "RAW_MEASUREMENT",
    "day_lines",
    "interval_lines",
    "quote_ident",
    "quote_string",
    "raw_lines",
    "regex_any",
]

INTERVAL_MEASUREMENT = "interval"
DAY_MEASUREMENT = "day"
RAW_MEASUREMENT = "raw"


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _float(value: float) -> str | None:
    x = float(value)
    return repr(x) if math.isfinite(x) else None


def _record_lines(
    measurement: str, records: Iterable[IntervalRecord], ints: tuple[str, ...], floats: tuple[str, ...]
) -> str:
    out: list[str] = []
    for r in records:
        fields = [f"length={r.length}i"]
        values = r.values
        for name in ints:
            v = values.get(name)
            if v is not None:
                fields.append(f"{name}={int(v)}i")
        for name in floats:
            v = values.get(name)
            if v is not None:
                text = _float(v)
                if text is not None:
                    fields.append(f"{name}={text}")
        out.append(f"{measurement},meter={_escape_tag(r.meter)} {','.join(fields)} {r.start}")
    return "\n".join(out)


def interval_lines(records: Iterable[IntervalRecord]) -> str:
    return _record_lines(INTERVAL_MEASUREMENT, records, INT_FIELDS, FLOAT_FIELDS)


def day_lines(records: Iterable[IntervalRecord]) -> str:
    return _record_lines(DAY_MEASUREMENT, records, DAY_INT_FIELDS, DAY_FLOAT_FIELDS)


def raw_lines(points: Iterable[RawPoint]) -> str:
    out: list[str] = []
    for p in points:
        fields = f"quality={p.quality}i"
        if p.value is not None:
            text = _float(p.value)
            if text is not None:
                fields += f",value={text}"
        out.append(f"{RAW_MEASUREMENT},tag={_escape_tag(p.tag)} {fields} {p.ts}")
    return "\n".join(out)


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_REGEX_SPECIAL = set("\\.+*?()|[]{}^$/")


def regex_any(values: Iterable[str]) -> str:
    """An InfluxQL regex literal matching exactly one of ``values``."""
    parts = ["".join("\\" + c if c in _REGEX_SPECIAL else c for c in v) for v in values]
    return "/^(?:" + "|".join(parts) + ")$/"
