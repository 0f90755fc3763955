"""Operation names: the only text from a message that ever becomes part of a URL.

A name is ``projects/{project}/operations/{id}`` or a bare ``{id}`` resolved in the default
project. Both parts are checked against strict patterns, so nothing a message says can add a
path segment, a query, a fragment or another host to the URL built from it.
"""

from __future__ import annotations

import re
from typing import Final

from lib.config import PROJECT_ID, Config
from lib.errors import Rejected, json_type

OPERATION_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FULL: Final = re.compile(r"projects/([^/]*)/operations/([^/]*)")
_EXCERPT: Final = 80


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """A bounded, printable excerpt of untrusted text, for messages and logs."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


def is_operation_name(name: str) -> bool:
    """Whether ``name`` is a full, well-formed operation name."""
    match = _FULL.fullmatch(name)
    return bool(
        match and PROJECT_ID.fullmatch(match.group(1)) and OPERATION_ID.fullmatch(match.group(2))
    )


def resolve(text: object, config: Config) -> str:
    """Validate one requested name and return the full operation name.

    Raises ``Rejected`` with INVALID_ARGUMENT for anything malformed, and with
    PERMISSION_DENIED (carrying the name) for a valid name outside ``EE_PROJECTS``.
    """
    if not isinstance(text, str):
        raise Rejected(
            "INVALID_ARGUMENT", f"an operation name must be a string, not {json_type(text)}"
        )
    if OPERATION_ID.fullmatch(text):
        return f"projects/{config.default_project}/operations/{text}"
    match = _FULL.fullmatch(text)
    if not match:
        raise Rejected(
            "INVALID_ARGUMENT",
            f"{excerpt(text)!r} is not projects/PROJECT/operations/ID or a task ID "
            "(letters, digits, '-' and '_', at most 128)",
        )
    project, op_id = match.groups()
    if not PROJECT_ID.fullmatch(project):
        raise Rejected("INVALID_ARGUMENT", f"{excerpt(project)!r} is not a valid project ID")
    if not OPERATION_ID.fullmatch(op_id):
        raise Rejected(
            "INVALID_ARGUMENT",
            f"{excerpt(op_id)!r} is not a valid operation ID "
            "(letters, digits, '-' and '_', at most 128)",
        )
    if not config.admits(project):
        raise Rejected(
            "PERMISSION_DENIED",
            f"project {project!r} is not in EE_PROJECTS; its operations may not be cancelled here",
            operation=text,
        )
    return text
