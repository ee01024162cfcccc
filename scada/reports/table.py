"""A computed report: its columns, its rows as a DataFrame of exact integers, its totals.

Every value column is an integer in a fixed scale, so nothing is ever a binary float on the way
out: money in the currency's minor units, energy (kWh) and water (m³) in millionths (the
historian's exact unit), per cents in hundredths. Rows become JSON objects and CSV lines a chunk
at a time (:meth:`Report.json_chunks`, :meth:`Report.csv_chunks`), so a large report is never one
string in memory; amounts are decimal strings (``"1234.50"``), a missing value is ``null`` in
JSON and empty in CSV. A chunk is formatted a column at a time (:func:`format_column`): a month
by day for 10,000 rooms is 4.65 million values, too many for a Python call each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from scada.reports.params import ReportRequest

__all__ = ["CHUNK_ROWS", "Column", "Report", "format_column", "format_scaled"]


def _along(series: pd.Series, agg: str) -> Any:
    present = series.dropna()
    if agg == "first":
        return present.iloc[0] if len(present) else pd.NA
    if agg == "last":
        return present.iloc[-1] if len(present) else pd.NA
    return series.sum(min_count=1)

CHUNK_ROWS = 5_000
MICRO = 6  # energy and volume: millionths


def format_scaled(value: int, decimals: int, *, trim: bool = False) -> str:
    """``123456, 2`` → ``"1234.56"``; ``trim`` drops trailing zeros (``"12.3"``, ``"0"``)."""
    if decimals == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    text = f"{frac:0{decimals}d}"
    if trim:
        text = text.rstrip("0")
        return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"
    return f"{sign}{whole}.{text}"


_ZERO, _POINT, _MINUS, _COMMA = ord("0"), ord("."), ord("-"), ord(",")


def format_column(values: np.ndarray, decimals: int, *, trim: bool = False) -> list[str]:
    """:func:`format_scaled` of every integer of an int64 array (the same text), with no Python
    call per value: numpy writes every value's characters into one byte buffer, each text
    followed by a comma, and the buffer is decoded and split once."""
    a = np.asarray(values, dtype=np.int64)
    n = len(a)
    if n == 0:
        return []
    if decimals == 0:
        return list(a.astype(StringDType()).tolist())
    magnitude = np.abs(a).astype(np.uint64)  # int64's minimum has no int64 absolute value
    top = int(magnitude.max())
    rest = magnitude.astype(np.int64) if top < 2**63 else magnitude
    ten = rest.dtype.type(10)
    if 10**decimals > top:
        whole, frac = np.zeros_like(rest), rest
    else:
        whole, frac = np.divmod(rest, rest.dtype.type(10**decimals))
    places = len(str(int(whole.max())))
    width = np.ones(n, dtype=np.int64)  # the whole part's digits, at least one ("0.05")
    for k in range(1, places):
        width += whole >= 10**k
    if trim:  # the fraction's digits once its trailing zeros are dropped (none: no point either)
        shown = np.where(frac == 0, 0, decimals)
        for k in range(1, decimals):
            if 10**k <= top:
                shown -= frac % rest.dtype.type(10**k) == 0
    else:
        shown = np.full(n, decimals)
    negative = a < 0
    lengths = negative + width + np.where(shown > 0, shown + 1, 0)
    ends = np.cumsum(lengths + 1)  # each text and its comma, one after the other
    buf = np.empty(int(ends[-1]), dtype=np.uint8)  # every byte is written below
    buf[ends - 1] = _COMMA
    point = ends - 1 - lengths + negative + width  # each value's point (its comma when it has no fraction)
    buf[point[negative] - width[negative] - 1] = _MINUS
    for j in range(places):  # the whole part, from its units up
        whole, digit = np.divmod(whole, ten)
        live = np.flatnonzero(width > j) if j else slice(None)
        buf[point[live] - 1 - j] = digit[live] + _ZERO
    with_point = np.flatnonzero(shown > 0) if trim else slice(None)
    buf[point[with_point]] = _POINT
    for m in range(decimals - 1, -1, -1):  # the fraction, from its last digit back
        frac, digit = np.divmod(frac, ten)
        live = np.flatnonzero(shown > m) if trim else slice(None)
        buf[point[live] + 1 + m] = digit[live] + _ZERO
    out = buf.tobytes().decode("ascii").split(",")
    out.pop()  # after the last comma
    return out


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _strings(values: pd.Series, missing: str | None) -> list[str | None]:
    """:meth:`Report.text` of a text column's values, ``missing`` for a missing one."""
    items = values.to_numpy(dtype=object).tolist()
    if isinstance(values.dtype, pd.StringDtype):  # strings or a missing marker: only the missing ones to replace
        out: list[str | None] = items
        for i in np.flatnonzero(values.isna().to_numpy()).tolist():
            out[i] = missing
        return out
    return [missing if _missing(v) else (v if v.__class__ is str else str(v)) for v in items]


@dataclass(frozen=True)
class Column:
    """A column: its JSON name and what it holds (``text`` keys, or a scaled integer of kind
    ``money``, ``energy`` (kWh), ``volume`` (m³), ``percent``, ``count``)."""

    name: str
    kind: str = "text"
    agg: str = "sum"  # over buckets or groups: sum | first | last | derived (recomputed by Report.derive)

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


@dataclass
class Report:
    request: ReportRequest
    keys: list[Column]  # the interval's and the group's columns, in order
    values: list[Column]
    frame: pd.DataFrame  # keys as str (or None), values as nullable Int64 in their scale
    minor_units: int
    currency: str
    totals: dict[str, Any] = field(default_factory=dict)  # set by finish()
    meta: dict[str, Any] = field(default_factory=dict)  # reconciled, as_of, balances, notes
    # recomputes the ``derived`` columns of a frame whose other columns are already aggregated
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    interval_key: str | None = None  # the interval's column (None: a report at one moment)
    group_key: str | None = None

    def aggregate(self, by: list[str]) -> pd.DataFrame:
        """The rows aggregated to the keys ``by`` (``[]``: one row, the overall total). Along the
        intervals a column follows its ``agg`` (``first``/``last``: an opening or closing
        balance); across groups every column is summed; ``derived`` ones are recomputed."""
        names = [c.name for c in self.values if c.agg != "derived"]
        frame = self.frame[[*(k.name for k in self.keys), *names]]
        if self.interval_key is not None and self.interval_key not in by:
            rest = [k.name for k in self.keys if k.name != self.interval_key]
            frame = frame.sort_values(self.interval_key, kind="stable")
            if rest:
                grouped = frame.groupby(rest, sort=False, dropna=False)
                parts = {}
                for c in self.values:
                    if c.agg == "derived":
                        continue
                    g = grouped[c.name]
                    parts[c.name] = g.first() if c.agg == "first" else g.last() if c.agg == "last" else g.sum(min_count=1)
                frame = pd.DataFrame(parts).reset_index()
            else:
                frame = pd.DataFrame({c.name: [_along(frame[c.name], c.agg)] for c in self.values if c.agg != "derived"})
        if by:
            out = frame.groupby(by, sort=True, dropna=False)[names].sum(min_count=1).reset_index()
        else:
            out = pd.DataFrame({n: [frame[n].sum(min_count=1) if len(frame) else pd.NA] for n in names})
        for n in names:
            out[n] = out[n].astype("Int64")
        for c in self.values:
            if c.agg == "derived":
                out[c.name] = pd.array([pd.NA] * len(out), dtype="Int64")
        if self.derive is not None:
            out = self.derive(out)
        return out[[*by, *(c.name for c in self.values)]].reset_index(drop=True)

    def levels(self) -> list[tuple[str, list[Column], pd.DataFrame]]:
        """The report at each level of grouping: the rows, per group, per interval, overall."""
        keys = {k.name: k for k in self.keys}
        out: list[tuple[str, list[Column], pd.DataFrame]] = [("rows", self.keys, self.frame)]
        group_keys = [k for k in self.keys if k.name != self.interval_key]
        if self.interval_key is not None and group_keys:
            out.append((self.group_key or "group", group_keys, self.aggregate([k.name for k in group_keys])))
        if self.interval_key is not None:
            out.append((self.interval_key, [keys[self.interval_key]], self.aggregate([self.interval_key])))
        return out

    def finish(self) -> Report:
        """Compute the overall totals (call once the rows are complete)."""
        self.totals = self.overall()
        return self

    def overall(self) -> dict[str, Any]:
        row = self.aggregate([])
        out: dict[str, Any] = {}
        for c in self.values:
            v = row[c.name].iloc[0] if len(row) else None
            out[c.name] = None if v is None or v is pd.NA else (str(v) if c.kind == "text" else int(v))
        return out

    @property
    def columns(self) -> list[Column]:
        return self.keys + self.values

    def scale(self, col: Column) -> int:
        return {"money": self.minor_units, "energy": MICRO, "volume": MICRO, "percent": 2, "count": 0}.get(col.kind, 0)

    def text(self, col: Column, value: Any) -> str | None:
        """The value as it is shown in JSON and CSV (a decimal string), None when missing."""
        if _missing(value):
            return None
        if not col.numeric:
            return str(value)
        return format_scaled(int(value), self.scale(col), trim=col.kind in ("energy", "volume"))

    def decimal(self, col: Column, value: Any) -> Decimal | None:
        if value is None or value is pd.NA:
            return None
        return Decimal(int(value)).scaleb(-self.scale(col))

    @property
    def row_count(self) -> int:
        return len(self.frame)

    def texts(self, col: Column, values: pd.Series, missing: str | None = None) -> list[str | None]:
        """:meth:`text` of every value of a column, ``missing`` for a missing one: integers at
        once (:func:`format_column`), anything else (Python integers beyond int64, floats) one
        at a time."""
        if not col.numeric:
            return _strings(values, missing)
        dtype = values.dtype
        if pd.api.types.is_integer_dtype(dtype) and not (dtype.kind == "u" and dtype.itemsize == 8):
            out: list[str | None] = list(format_column(values.to_numpy(dtype="int64", na_value=0), self.scale(col),
                                                       trim=col.kind in ("energy", "volume")))
            for i in np.flatnonzero(values.isna().to_numpy()).tolist():
                out[i] = missing
            return out
        return [missing if (t := self.text(col, v)) is None else t for v in values.to_numpy(dtype=object).tolist()]

    def _chunk(self, start: int, stop: int, missing: str | None) -> Iterator[tuple[str | None, ...]]:
        part = self.frame.iloc[start:stop]
        return zip(*[self.texts(c, part[c.name], missing) for c in self.columns], strict=True)

    def json_chunks(self, size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
        names = [c.name for c in self.columns]
        for start in range(0, len(self.frame), size):
            yield list(map(dict, map(zip, repeat(names), self._chunk(start, start + size, None))))

    def csv_header(self) -> list[str]:
        return [c.name for c in self.columns]

    def csv_chunks(self, size: int = CHUNK_ROWS) -> Iterator[list[list[str]]]:
        for start in range(0, len(self.frame), size):
            yield [list(row) for row in self._chunk(start, start + size, "")]  # type: ignore[arg-type]

    def csv_chunks_with_totals(self) -> Iterator[list[list[str]]]:
        """The CSV rows, then a total per group (its interval column ``total``) and the overall
        total (every key column ``total``)."""
        yield from self.csv_chunks()
        for level, keys, frame in self.levels()[1:]:
            if level == self.interval_key:
                continue
            names = [k.name for k in keys]
            head = [_strings(frame[k.name], "") if k.name in names else ["total"] * len(frame) for k in self.keys]
            yield [list(row) for row in zip(*head, *(self.texts(c, frame[c.name], "") for c in self.values), strict=True)]
        if self.interval_key is not None:
            yield [["total"] * len(self.keys) + ["" if (v := self.text(c, self.totals.get(c.name))) is None else v for c in self.values]]

    def rows_json(self) -> list[dict[str, Any]]:
        return [row for chunk in self.json_chunks() for row in chunk]

    def totals_json(self) -> dict[str, str | None]:
        by_name = {c.name: c for c in self.values}
        # a total without a column of its own (a finance report's balances by channel) is money
        return {k: self.text(by_name.get(k) or Column(k, "money"), v) for k, v in self.totals.items()}

    def head(self) -> dict[str, Any]:
        """Everything of the JSON answer but ``rows``."""
        return {
            **self.request.as_json(), "currency": self.currency,
            "columns": [{"name": c.name, "kind": c.kind} for c in self.columns],
            "row_count": self.row_count, "totals": self.totals_json(), **self.meta,
        }

    def as_json(self) -> dict[str, Any]:
        return {**self.head(), "rows": self.rows_json()}
