"""Errors of back-office operations, carrying the HTTP status and the offending field."""

from __future__ import annotations

__all__ = ["BillingError"]


class BillingError(Exception):
    """An operation refused: 404 (no such thing), 409 (conflicts with the state), 422 (bad
    input; ``field`` names it), 403 (the four-eyes rule)."""

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
