"""The outcome's one JSON form, and the mapping of error bodies to google.rpc codes."""

from __future__ import annotations

import json

import pytest

from lib.earthengine import _retry_after, operation_state
from lib.outcomes import Outcome, Trigger
from lib.rpc import code_of, is_transient, status_from_http

TRIGGER = Trigger("request", "m-1", "2026-12-04T00:00:00Z")


def test_ok_outcome_has_every_field_of_the_spec() -> None:
    outcome = Outcome(
        "projects/p/operations/X",
        "OK",
        "cancellation requested",
        TRIGGER,
        response={},
        http_status=200,
    )
    body = json.loads(outcome.data())
    assert body["operation"] == "projects/p/operations/X"
    assert (body["status"], body["code"], body["httpStatus"]) == ("OK", 0, 200)
    assert body["response"] == {} and body["dryRun"] is False
    assert body["trigger"] == {
        "kind": "request",
        "messageId": "m-1",
        "publishTime": "2026-12-04T00:00:00Z",
    }
    assert body["completedAt"].endswith("Z") and "state" not in body
    assert outcome.attributes() == {
        "status": "OK",
        "operation": "projects/p/operations/X",
        "trigger": "request",
        "sourceMessageId": "m-1",
    }


def test_refused_request_outcome_has_null_operation_and_no_http_status() -> None:
    outcome = Outcome(None, "INVALID_ARGUMENT", "bad", TRIGGER)
    body = outcome.as_json()
    assert body["operation"] is None and body["code"] == 3
    assert "httpStatus" not in body and "response" not in body
    assert outcome.attributes()["operation"] == ""


def test_budget_trigger_carries_the_figures() -> None:
    trigger = Trigger("budget", "m-2", "t", {"costAmount": 1.0})
    assert Outcome("x", "OK", "ok", trigger).as_json()["trigger"]["budget"] == {"costAmount": 1.0}


@pytest.mark.parametrize(
    ("http", "body", "status"),
    [
        (
            400,
            {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "done"}},
            "FAILED_PRECONDITION",
        ),
        (400, {"error": {"code": 400, "status": "OUT_OF_RANGE"}}, "OUT_OF_RANGE"),
        (400, {"error": {"code": 400}}, "INVALID_ARGUMENT"),
        (501, {"error": {"status": "UNIMPLEMENTED"}}, "UNIMPLEMENTED"),
        (503, None, "UNAVAILABLE"),
        (418, "teapot", "FAILED_PRECONDITION"),
        (599, {}, "INTERNAL"),
        (404, {"error": {"status": "NOT_A_CODE"}}, "NOT_FOUND"),
    ],
)
def test_status_comes_from_the_body_first(http: int, body: object, status: str) -> None:
    got, message = status_from_http(http, body)
    assert got == status and message


def test_transient_predicate() -> None:
    assert is_transient("RESOURCE_EXHAUSTED", 429) and is_transient("UNAVAILABLE", None)
    assert is_transient("INTERNAL", 500) and is_transient("UNKNOWN", 502)
    assert not is_transient("UNIMPLEMENTED", 501)
    assert not is_transient("NOT_FOUND", 404) and not is_transient("FAILED_PRECONDITION", 400)
    assert code_of("UNAVAILABLE") == 14 and code_of("???") == 2


def test_retry_after_forms() -> None:
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_operation_state_from_metadata_or_done_flag() -> None:
    assert operation_state({"metadata": {"state": "RUNNING"}}) == "RUNNING"
    assert operation_state({"done": True, "error": {"code": 1}}) == "CANCELLED"
    assert operation_state({"done": True, "response": {}}) == "SUCCEEDED"
    assert operation_state({}) is None
