"""Message → request: every shape of SPEC §3, and every way a message can be wrong."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lib.messages import Ignored, Invalid, Message, Request, parse
from tests.unit.fakes import config

CONFIG = config()


def message(data: str | bytes | Any = "", attributes: dict[str, str] | None = None) -> Message:
    if not isinstance(data, str | bytes):
        data = json.dumps(data)
    raw = data.encode() if isinstance(data, str) else data
    return Message(base64.b64encode(raw).decode(), attributes or {}, "m-1", "2026-12-04T00:00:00Z")


def request(data: Any, attributes: dict[str, str] | None = None, **overrides: Any) -> Request:
    parsed = parse(message(data, attributes), config(**overrides) if overrides else CONFIG)
    assert isinstance(parsed, Request), parsed
    return parsed


def invalid(data: Any, attributes: dict[str, str] | None = None) -> Invalid:
    parsed = parse(message(data, attributes), CONFIG)
    assert isinstance(parsed, Invalid), parsed
    return parsed


@pytest.mark.parametrize("key", ["name", "operation"])
def test_single_name(key: str) -> None:
    got = request({key: "projects/ee-other/operations/A1"})
    assert got.names == ("projects/ee-other/operations/A1",)
    assert got.kind == "request" and not got.dry_run


@pytest.mark.parametrize("key", ["names", "operations"])
def test_name_list_is_resolved_and_deduplicated(key: str) -> None:
    got = request({key: ["A1", "projects/ee-project/operations/A1", "B2"]})
    assert got.names == ("projects/ee-project/operations/A1", "projects/ee-project/operations/B2")


def test_names_outside_ee_projects_are_denied_one_by_one() -> None:
    got = request({"names": ["A1", "projects/stranger-1/operations/B2"]})
    assert got.names == ("projects/ee-project/operations/A1",)
    assert [(d.status, d.operation) for d in got.denied] == [
        ("PERMISSION_DENIED", "projects/stranger-1/operations/B2")
    ]


def test_plain_text_and_bare_id() -> None:
    assert request("  \n projects/ee-other/operations/T1 \t").names == (
        "projects/ee-other/operations/T1",
    )
    assert request("6CIGR7EG2J45GJ2DN2J7X3WZ").names == (
        "projects/ee-project/operations/6CIGR7EG2J45GJ2DN2J7X3WZ",
    )


@pytest.mark.parametrize("key", ["operation", "name"])
def test_empty_data_uses_the_attribute(key: str) -> None:
    assert request("", {key: " X9 "}).names == ("projects/ee-project/operations/X9",)


def test_dry_run_from_message_and_from_environment() -> None:
    assert request({"name": "A1", "dryRun": True}).dry_run
    assert request({"name": "A1"}, DRY_RUN="true").dry_run
    assert request("A1", DRY_RUN="true").dry_run


def test_select_request() -> None:
    got = request({"select": {"types": ["EXPORT_IMAGE"], "olderThanSeconds": 60}, "dryRun": True})
    assert got.kind == "select" and got.dry_run
    assert got.selection is not None
    assert got.selection.projects == ("ee-project", "ee-other")
    assert got.selection.types == frozenset({"EXPORT_IMAGE"})


def test_budget_over_threshold_selects_everything_active() -> None:
    body = {
        "costAmount": 120.0,
        "budgetAmount": 100.0,
        "budgetDisplayName": "EE",
        "currencyCode": "USD",
    }
    got = request(body, {"billingAccountId": "0123", "budgetId": "b-1", "schemaVersion": "1.0"})
    assert got.kind == "budget"
    assert got.selection is not None and got.selection.projects == ("ee-project", "ee-other")
    assert got.budget is not None
    assert got.budget["budgetId"] == "b-1" and got.budget["fraction"] == pytest.approx(1.2)


def test_budget_below_threshold_is_ignored() -> None:
    parsed = parse(message({"costAmount": 50, "budgetAmount": 100}), CONFIG)
    assert isinstance(parsed, Ignored)
    assert "below BUDGET_THRESHOLD" in parsed.reason


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (None, "not null"),
        (12, "not a number"),
        ('"A1"', "not a string"),
        (["A1"], "not a list"),
        ({}, "needs"),
        ({"name": "A1", "names": ["B1"]}, "only one"),
        ({"name": "A1", "extra": 1}, "unknown field"),
        ({"names": []}, "non-empty list"),
        ({"names": "A1"}, "non-empty list"),
        ({"names": ["A1", 5]}, "entry 1"),
        ({"names": ["A1", "../x"]}, "entry 1"),
        ({"name": "A1", "dryRun": "yes"}, "dryRun"),
        ({"select": []}, "must be an object"),
        ({"select": {"colour": "red"}}, "unknown select field"),
        ({"select": {"states": ["SLEEPING"]}}, "unknown state"),
        ({"select": {"descriptionRegex": "("}}, "not a valid regex"),
        ({"select": {"olderThanSeconds": -1}}, ">= 0"),
        ({"select": {"minEecuSeconds": "9"}}, "must be a number"),
        ({"select": {"types": ["export image"]}}, "operation type"),
        ({"costAmount": "12", "budgetAmount": 100}, "costAmount"),
        ({"costAmount": 1, "budgetAmount": -5}, "negative"),
        ("{not json", "not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ("projects/ee-project/operations/A1/../x", "is not projects/"),
        ("", "nothing to cancel"),
    ],
)
def test_bad_requests_are_invalid_argument_with_a_reason(data: Any, fragment: str) -> None:
    got = invalid(data)
    assert got.status == "INVALID_ARGUMENT"
    assert fragment in got.message


def test_select_project_outside_ee_projects_is_permission_denied() -> None:
    parsed = parse(message({"select": {"project": "stranger-1"}}), CONFIG)
    assert isinstance(parsed, Invalid) and parsed.status == "PERMISSION_DENIED"
    assert parsed.kind == "select"


def test_bad_base64_and_bad_utf8() -> None:
    bad64 = parse(Message("%%%not-base64", {}, "m", "t"), CONFIG)
    assert isinstance(bad64, Invalid) and "base64" in bad64.message
    bad_utf8 = parse(message(b"\xff\xfeA1"), CONFIG)
    assert isinstance(bad_utf8, Invalid) and "UTF-8" in bad_utf8.message


def test_too_many_names_is_refused() -> None:
    parsed = parse(
        message({"names": [f"A{i}" for i in range(11)]}), config(MAX_OPERATIONS_PER_MESSAGE=10)
    )
    assert isinstance(parsed, Invalid) and "MAX_OPERATIONS_PER_MESSAGE" in parsed.message


def test_huge_payload_is_refused_without_decoding() -> None:
    parsed = parse(Message("A" * 2_000_000, {}, "m", "t"), CONFIG)
    assert isinstance(parsed, Invalid) and "larger than" in parsed.message


def test_deeply_nested_json_is_refused() -> None:
    parsed = parse(message("[" * 100_000 + "]" * 100_000), CONFIG)
    assert isinstance(parsed, Invalid) and parsed.status == "INVALID_ARGUMENT"
