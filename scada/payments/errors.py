"""The error of the payments feature: a status and the field it names, like the API's."""

from __future__ import annotations

__all__ = ["PaymentError"]


class PaymentError(Exception):
    """A refused payment operation; the API answers ``status`` with ``message`` naming ``field``."""

    def __init__(self, message: str, *, status: int = 409, field: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.reason = reason  # a short machine word for logs: forged, replayed, stale, mismatch, unknown_order …
