"""The exception that carries a refusal of a request, in google.rpc terms."""

from __future__ import annotations


class Rejected(Exception):
    """A request (or one operation in it) is refused before any Earth Engine call.

    ``status`` is a google.rpc code name; ``operation`` is set when the refusal concerns one
    well-formed operation name (PERMISSION_DENIED), and is None for a malformed request.
    """

    def __init__(self, status: str, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.operation = operation


def json_type(value: object) -> str:
    """How a decoded JSON value's type reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
