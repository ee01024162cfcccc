"""What method handlers share: the refusal they raise and the check of their input arguments."""

from __future__ import annotations

from typing import Any

from asyncua import ua

from .status import status_name

__all__ = ["MethodRefused", "bad_args"]


class MethodRefused(Exception):
    """Raised by a method hook: the call ends with ``status`` (an ``ua.StatusCodes`` value)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or status_name(status))
        self.status = status
        self.message = message


def bad_args(args: tuple[Any, ...] | list[Any], expected: list[ua.VariantType | tuple[ua.VariantType, ...]]) -> ua.CallMethodResult | None:
    """The refusal of a call whose arguments are missing, too many or of the wrong type (naming
    each wrong one in ``InputArgumentResults``); None when they fit."""
    if len(args) < len(expected):
        return ua.CallMethodResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadArgumentsMissing))
    if len(args) > len(expected):
        return ua.CallMethodResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadTooManyArguments))
    results = []
    for arg, want in zip(args, expected, strict=False):
        types = want if isinstance(want, tuple) else (want,)
        ok = isinstance(arg, ua.Variant) and arg.VariantType in types and not arg.is_array
        results.append(ua.StatusCode() if ok else ua.StatusCode(ua.StatusCodes.BadTypeMismatch))
    if all(r.is_good() for r in results):
        return None
    return ua.CallMethodResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadInvalidArgument), InputArgumentResults=results)
