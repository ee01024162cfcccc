"""The JSON API under /api/v1. Each part declares its routes with an ApiRouter in a module here."""

from .router import ApiCall, ApiError, ApiRouter, json_response, to_json

__all__ = ["ApiCall", "ApiError", "ApiRouter", "json_response", "to_json"]
