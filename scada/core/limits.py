"""Work bounded before it is done: the size of an answer (rows of a history query, a report, an
export) is computed from the request and refused, naming the limit, before anything is built.

A query or report computes how many rows its answer would have from its parameters alone
(``days × rooms``, ``buckets × meters × points``) and calls :func:`check_answer_size`; the API
answers :class:`AnswerTooLarge` with a 422 naming the parameter to change, the row count and the
limit (``{"error": …, "field": "end", "rows": 281000000, "limit": 2000000}``). Answers within the
limit but large are streamed (``hmi/api/stream.py``), never built whole in memory.
"""

from __future__ import annotations

__all__ = ["AnswerTooLarge", "check_answer_size"]


class AnswerTooLarge(ValueError):
    """An answer of ``rows`` rows where at most ``limit`` are allowed; ``field`` names the request
    parameter that makes it large (a time range's end, an interval, a list of ids)."""

    def __init__(self, field: str, rows: int, limit: int, hint: str = "narrow the range or use a longer interval") -> None:
        self.field = field
        self.rows = rows
        self.limit = limit
        self.message = f"the answer would have {rows:,} rows (more than {limit:,}): {hint}"
        super().__init__(f"{field}: {self.message}")


def check_answer_size(rows: int, limit: int, *, field: str, hint: str | None = None) -> int:
    """``rows`` when it is at most ``limit``; else :class:`AnswerTooLarge`. Call it with the size
    computed from the request, before building the answer."""
    if rows > limit:
        raise AnswerTooLarge(field, rows, limit, *(() if hint is None else (hint,)))
    return rows
