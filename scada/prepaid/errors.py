"""Errors of prepaid operations, carrying the HTTP status and the offending field."""

from __future__ import annotations

__all__ = ["PrepaidError"]


class PrepaidError(Exception):
    """An operation refused: ``status`` 404 (no such thing), 409 (conflicts with the state),
    422 (bad input; ``field`` names it)."""

    def __init__(self, message: str, *, status: int = 409, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
