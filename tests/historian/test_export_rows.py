"""History rows are converted a column at a time (times on the arrays, not one ``isoformat`` per
row): the answer is the same, in every zone, with DST steps, odd offsets and fractions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from historian.export import to_rows


def by_row(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The conversion as it was: one value at a time."""
    out = []
    for values in frame.itertuples(index=False, name=None):
        row: dict[str, object] = {}
        for col, v in zip(frame.columns, values, strict=True):
            if isinstance(v, pd.Timestamp):
                row[col] = v.isoformat()
            elif isinstance(v, float):
                row[col] = None if math.isnan(v) else float(v)
            elif hasattr(v, "item"):
                row[col] = v.item()
            else:
                row[col] = v
        out.append(row)
    return out


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Africa/Monrovia", "UTC"])
@pytest.mark.parametrize("freq", ["7h", "1D", "1500ms"])
def test_rows_are_the_same_as_one_value_at_a_time(tz: str, freq: str) -> None:
    n = 3000
    frame = pd.DataFrame({
        "time": pd.date_range("1970-01-01", periods=n, freq=freq, tz="UTC").tz_convert(tz),
        "room": "B1-R101",
        "point": "energy_total",
        "value": np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 0.01),
        "intervals": np.arange(n, dtype="int64"),
        "flags": np.where(np.arange(n) % 5 == 0, "gap", ""),
    })
    assert to_rows(frame) == by_row(frame)
