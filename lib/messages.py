"""Pub/Sub message → request: what a message asks for, decided once and validated up front.

The message shapes are those of SPEC §3, tried in order: a budget notification, names, a
selection, plain text, and the ``operation`` attribute of an empty message.
"""

from __future__ import annotations

import binascii
import json
import math
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from lib.budget import Budget, is_budget_notification, parse_budget
from lib.config import Config
from lib.errors import Rejected, json_type
from lib.names import excerpt, resolve
from lib.selection import Selection, everything_active, parse_selection

Kind = Literal["request", "select", "budget"]

# The Pub/Sub limit is 10 MB; the largest useful request (5,000 full names) is ~400 KB.
MAX_DATA_BYTES: Final = 1_000_000
_NAME_KEYS: Final = ("name", "operation")
_LIST_KEYS: Final = ("names", "operations")
_OPTION_KEYS: Final = frozenset({"dryRun"})


@dataclass(frozen=True)
class Message:
    """The parts of a Pub/Sub message the function uses; ``data`` is still base64 text."""

    data: str
    attributes: Mapping[str, str]
    message_id: str
    publish_time: str


@dataclass(frozen=True)
class Request:
    """A valid request: explicit names (some perhaps refused) or a selection to list."""

    kind: Kind
    dry_run: bool
    names: tuple[str, ...] = ()
    denied: tuple[Rejected, ...] = ()
    selection: Selection | None = None
    budget: dict[str, Any] | None = None


@dataclass(frozen=True)
class Invalid:
    """A request refused whole: one INVALID_ARGUMENT (or PERMISSION_DENIED) outcome."""

    kind: Kind
    status: str
    message: str


@dataclass(frozen=True)
class Ignored:
    """A message that asks for nothing now: a budget notification below the threshold."""

    reason: str
    budget: dict[str, Any]


Parsed = Request | Invalid | Ignored


def parse(message: Message, config: Config) -> Parsed:
    """Decide what a message asks for. Never raises for bad input: it returns ``Invalid``."""
    kind: Kind = "request"
    try:
        text = _decode(message.data)
        if not text.strip():
            return _attribute_request(message.attributes, config)
        body = _json(text)
        if body is _NOT_JSON:
            return _names_request([text.strip()], dry_run=config.dry_run, config=config)
        if not isinstance(body, dict):
            raise Rejected(
                "INVALID_ARGUMENT",
                f"a JSON request must be an object, not {json_type(body)}",
            )
        if is_budget_notification(body):
            kind = "budget"
            return _budget_request(body, message.attributes, config)
        if "select" in body:
            kind = "select"
            _only(body, {"select"})
            return Request(
                kind="select",
                dry_run=_dry_run(body, config),
                selection=parse_selection(body["select"], config),
            )
        return _names_request(_names_of(body), dry_run=_dry_run(body, config), config=config)
    except Rejected as exc:
        return Invalid(kind=kind, status=exc.status, message=exc.message)


_NOT_JSON: Final = object()


def _decode(data: str) -> str:
    if len(data) > MAX_DATA_BYTES * 4 // 3 + 4:
        raise Rejected("INVALID_ARGUMENT", f"message data is larger than {MAX_DATA_BYTES} bytes")
    try:
        raw = b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("INVALID_ARGUMENT", "message data is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            "INVALID_ARGUMENT", f"message data is not UTF-8 (bad byte at {exc.start})"
        ) from None


def _reject_constant(value: str) -> object:
    raise ValueError(f"{value} is not valid JSON")


def _json(text: str) -> object:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '{["-0123456789tfn':
        return _NOT_JSON
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejected("INVALID_ARGUMENT", "message data is JSON nested too deeply") from None
    except ValueError as exc:
        if stripped[0] in "{[":
            raise Rejected("INVALID_ARGUMENT", f"message data is not valid JSON: {exc}") from None
        return _NOT_JSON


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed - _OPTION_KEYS)
    if unknown:
        raise Rejected(
            "INVALID_ARGUMENT",
            f"unknown field(s) {', '.join(repr(excerpt(k, 40)) for k in unknown[:5])}",
        )


def _dry_run(body: Mapping[str, Any], config: Config) -> bool:
    value = body.get("dryRun", False)
    if not isinstance(value, bool):
        raise Rejected(
            "INVALID_ARGUMENT", f'"dryRun" must be true or false, not {json_type(value)}'
        )
    return value or config.dry_run


def _names_of(body: Mapping[str, Any]) -> list[object]:
    present = [key for key in (*_NAME_KEYS, *_LIST_KEYS) if key in body]
    if not present:
        raise Rejected(
            "INVALID_ARGUMENT",
            'a JSON request needs "name", "names", "operation", "operations" or "select"',
        )
    if len(present) > 1:
        raise Rejected("INVALID_ARGUMENT", f"give only one of {', '.join(present)}")
    key = present[0]
    _only(body, {key})
    if key in _NAME_KEYS:
        return [body[key]]
    value = body[key]
    if not isinstance(value, list) or not value:
        raise Rejected("INVALID_ARGUMENT", f'"{key}" must be a non-empty list of operation names')
    return value


def _names_request(raw: list[object], *, dry_run: bool, config: Config) -> Request:
    if len(raw) > config.max_operations:
        raise Rejected(
            "INVALID_ARGUMENT",
            f"{len(raw)} operations requested; MAX_OPERATIONS_PER_MESSAGE is "
            f"{config.max_operations}",
        )
    names: dict[str, None] = {}
    denied: dict[str, Rejected] = {}
    for position, item in enumerate(raw):
        try:
            names[resolve(item, config)] = None
        except Rejected as exc:
            if exc.operation is None:
                where = f"entry {position}: " if len(raw) > 1 else ""
                raise Rejected(exc.status, where + exc.message) from None
            denied[exc.operation] = exc
    return Request(
        kind="request", dry_run=dry_run, names=tuple(names), denied=tuple(denied.values())
    )


def _attribute_request(attributes: Mapping[str, str], config: Config) -> Parsed:
    for key in ("operation", "name"):
        if key in attributes:
            return _names_request([attributes[key].strip()], dry_run=config.dry_run, config=config)
    raise Rejected(
        "INVALID_ARGUMENT",
        'message has no data and no "operation" attribute: nothing to cancel',
    )


def _budget_request(
    body: Mapping[str, Any], attributes: Mapping[str, str], config: Config
) -> Parsed:
    budget: Budget = parse_budget(body, attributes)
    figures = budget.as_trigger(config.budget_threshold)
    dry_run = _dry_run(body, config)
    fraction = budget.crossing(config.budget_threshold, config.budget_use_forecast)
    if fraction is None:
        spent = budget.spent_fraction
        shown = "n/a" if spent is None or not math.isfinite(spent) else f"{spent:.3f}"
        return Ignored(
            reason=f"budget at {shown} of its amount, below BUDGET_THRESHOLD "
            f"{config.budget_threshold:g}: nothing cancelled",
            budget=figures,
        )
    return Request(
        kind="budget",
        dry_run=dry_run,
        selection=everything_active(config),
        budget={**figures, "fraction": fraction},
    )
