"""The one error vocabulary of the project: google.rpc status codes.

Every Earth Engine error body is mapped to its status name here, once, and the rest of the
code speaks in these names. ``is_transient`` is the single definition of "worth retrying".
"""

from __future__ import annotations

from typing import Any, Final

CODES: Final[dict[str, int]] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

# Used only when an error body carries no usable status (e.g. an HTML page from a proxy).
_BY_HTTP: Final[dict[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# HTTP statuses that are worth retrying whatever the body says: rate limits and server trouble.
_TRANSIENT_HTTP: Final[frozenset[int]] = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_STATUS: Final[frozenset[str]] = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"}
)


def code_of(status: str) -> int:
    """The numeric google.rpc code of a status name (UNKNOWN for names we do not know)."""
    return CODES.get(status, CODES["UNKNOWN"])


def status_from_http(http_status: int, body: Any) -> tuple[str, str]:
    """Map an HTTP error response to (status name, message), reading ``error.status`` first."""
    error = body.get("error") if isinstance(body, dict) else None
    status = ""
    message = ""
    if isinstance(error, dict):
        raw_status = error.get("status")
        if isinstance(raw_status, str) and raw_status in CODES:
            status = raw_status
        raw_message = error.get("message")
        if isinstance(raw_message, str):
            message = raw_message.strip()
    if not status:
        status = _BY_HTTP.get(http_status) or (
            "INTERNAL" if http_status >= 500 else "FAILED_PRECONDITION"
        )
    if not message:
        message = f"Earth Engine answered HTTP {http_status} ({status})"
    return status, message


def is_transient(status: str, http_status: int | None) -> bool:
    """Whether a failure may go away by itself, so the call is worth repeating.

    HTTP 501 (UNIMPLEMENTED) is permanent even though it is a 5xx.
    """
    if status == "UNIMPLEMENTED":
        return False
    if http_status is not None and http_status in _TRANSIENT_HTTP:
        return True
    return status in _TRANSIENT_STATUS
