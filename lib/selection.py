"""Selections: which active operations a ``{"select": {...}}`` request (or a budget alert) means.

A selection is parsed and validated up front; matching is a pure function of an operation's
JSON and the current time, applied to the pages that Earth Engine lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from lib.config import PROJECT_ID, Config
from lib.errors import Rejected, json_type
from lib.names import excerpt

STATES: Final = frozenset({"PENDING", "RUNNING", "CANCELLING", "SUCCEEDED", "CANCELLED", "FAILED"})
ACTIVE: Final = frozenset({"PENDING", "RUNNING"})
# Only these can still be cancelled; a selection naming others matches nothing to cancel.
CANCELLABLE: Final = ACTIVE
# The states of an operation whose cancellation took effect.
CANCELLED_STATES: Final = frozenset({"CANCELLING", "CANCELLED"})
_FIELDS: Final = frozenset(
    {"project", "states", "types", "descriptionRegex", "olderThanSeconds", "minEecuSeconds"}
)
_TYPE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_MAX_REGEX: Final = 512


@dataclass(frozen=True)
class Selection:
    """Filters combined with AND; ``None`` means "any"."""

    projects: tuple[str, ...]
    states: frozenset[str] = ACTIVE
    types: frozenset[str] | None = None
    description: re.Pattern[str] | None = None
    older_than: float | None = None
    min_eecu: float | None = None

    def matches(
        self, operation: Mapping[str, Any], now: datetime, since: datetime | None = None
    ) -> bool:
        """Whether a listed operation is one to cancel (or, with ``since``, to report again).

        An operation that went CANCELLING or CANCELLED at or after ``since`` (the message's
        publish time) also matches, whatever ``states`` says: an earlier delivery of this same
        message may have cancelled it and then failed to publish its outcome (a crash, a
        results-topic outage), and the redelivery must still report it.
        """
        metadata = operation.get("metadata")
        if not isinstance(metadata, Mapping):
            return False
        state = metadata.get("state")
        if state in CANCELLED_STATES:
            updated = parse_time(metadata.get("updateTime"))
            if since is None or updated is None or updated < since:
                return False
        elif operation.get("done") is True or state not in self.states & CANCELLABLE:
            return False
        if self.types is not None and metadata.get("type") not in self.types:
            return False
        if self.description is not None:
            description = metadata.get("description")
            if not isinstance(description, str) or not self.description.search(description):
                return False
        if self.older_than is not None:
            created = parse_time(metadata.get("createTime"))
            if created is None or (now - created).total_seconds() < self.older_than:
                return False
        if self.min_eecu is not None:
            eecu = metadata.get("batchEecuUsageSeconds", 0)
            if not isinstance(eecu, int | float) or isinstance(eecu, bool):
                eecu = 0
            if eecu < self.min_eecu:
                return False
        return True


def everything_active(config: Config) -> Selection:
    """The selection a budget alert acts on: every active operation in every project."""
    return Selection(projects=config.ee_projects)


def parse_selection(raw: object, config: Config) -> Selection:
    """Validate the object under ``"select"``; raises ``Rejected``."""
    if not isinstance(raw, dict):
        raise Rejected("INVALID_ARGUMENT", f'"select" must be an object, not {json_type(raw)}')
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise Rejected(
            "INVALID_ARGUMENT",
            f"unknown select field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_FIELDS))}",
        )
    return Selection(
        projects=_projects(raw.get("project"), config),
        states=_states(raw.get("states")),
        types=_types(raw.get("types")),
        description=_regex(raw.get("descriptionRegex")),
        older_than=_seconds(raw, "olderThanSeconds"),
        min_eecu=_seconds(raw, "minEecuSeconds"),
    )


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _projects(value: object, config: Config) -> tuple[str, ...]:
    if value is None:
        return config.ee_projects
    if not isinstance(value, str) or not PROJECT_ID.fullmatch(value):
        shown = excerpt(value) if isinstance(value, str) else json_type(value)
        raise Rejected("INVALID_ARGUMENT", f'select "project" {shown!s} is not a project ID')
    if value not in config.ee_projects:
        raise Rejected(
            "PERMISSION_DENIED",
            f"project {value!r} is not one of EE_PROJECTS ({', '.join(config.ee_projects)}); "
            "selections need a concrete listed project",
        )
    return (value,)


def _string_list(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Rejected("INVALID_ARGUMENT", f'select "{field}" must be a non-empty list of strings')
    if not all(isinstance(item, str) for item in value):
        raise Rejected("INVALID_ARGUMENT", f'select "{field}" must contain only strings')
    return value


def _states(value: object) -> frozenset[str]:
    if value is None:
        return ACTIVE
    states = _string_list(value, "states")
    unknown = [state for state in states if state not in STATES]
    if unknown:
        raise Rejected(
            "INVALID_ARGUMENT",
            f"unknown state(s) {', '.join(repr(excerpt(s)) for s in unknown[:5])}; "
            f"allowed: {', '.join(sorted(STATES))}",
        )
    return frozenset(states)


def _types(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    types = _string_list(value, "types")
    bad = [item for item in types if not _TYPE.fullmatch(item)]
    if bad:
        raise Rejected(
            "INVALID_ARGUMENT",
            f'select "types" entry {excerpt(bad[0])!r} is not an operation type like EXPORT_IMAGE',
        )
    return frozenset(types)


def _regex(value: object) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected("INVALID_ARGUMENT", '"descriptionRegex" must be a string')
    if len(value) > _MAX_REGEX:
        raise Rejected("INVALID_ARGUMENT", f'"descriptionRegex" is longer than {_MAX_REGEX}')
    try:
        return re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise Rejected(
            "INVALID_ARGUMENT", f'"descriptionRegex" {excerpt(value)!r} is not a valid regex: {exc}'
        ) from None


def _seconds(raw: Mapping[str, object], field: str) -> float | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Rejected("INVALID_ARGUMENT", f'select "{field}" must be a number')
    if value < 0 or value == float("inf"):
        raise Rejected("INVALID_ARGUMENT", f'select "{field}" must be a finite number >= 0')
    return float(value)
