"""The function end to end: CloudEvents in, Earth Engine emulator calls, outcomes on Pub/Sub."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from deploy.local.stack import FunctionProcess, Results, Stack
from tests.integration.conftest import OTHER, PROJECT, logs_of

pytestmark = pytest.mark.integration

NAME = f"projects/{PROJECT}/operations/"
Seed = Callable[..., list[str]]


def outcome_of(results: Results, source: str, count: int = 1) -> list[dict[str, Any]]:
    return results.wait_for(source, count, timeout=30)


def state(stack: Stack, name: str) -> str:
    [op] = [op for op in stack.admin.operations() if op["name"] == name]
    return str(op["metadata"]["state"])


def cancel_calls(stack: Stack, since: float) -> list[dict[str, Any]]:
    return [r for r in stack.admin.requests(since=since) if r["path"].endswith(":cancel")]


def test_push_delivery_cancels_and_publishes(
    stack: Stack, function: FunctionProcess, results: Results, ops: Seed
) -> None:
    """The real delivery path: a push subscription from the trigger topic to the function."""
    [op_id] = ops(1)
    trigger = stack.topic("requests-push")
    stack.subscription(trigger, "push-to-function", push_endpoint=function.url)
    message_id = stack.publish(trigger, {"name": NAME + op_id})
    [outcome] = outcome_of(results, message_id)
    assert outcome["operation"] == NAME + op_id
    assert (outcome["status"], outcome["code"], outcome["httpStatus"]) == ("OK", 0, 200)
    assert outcome["response"] == {} and outcome["dryRun"] is False
    assert outcome["trigger"]["kind"] == "request" and outcome["trigger"]["messageId"] == message_id
    assert results.attributes[message_id][0] == {
        "status": "OK",
        "operation": NAME + op_id,
        "trigger": "request",
        "sourceMessageId": message_id,
    }
    assert state(stack, NAME + op_id) in {"CANCELLING", "CANCELLED"}


def test_attribute_only_message_through_push(
    stack: Stack, function: FunctionProcess, results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    trigger = stack.topic("requests-push")
    stack.subscription(trigger, "push-to-function", push_endpoint=function.url)
    message_id = stack.publish(trigger, b"", operation=op_id)
    [outcome] = outcome_of(results, message_id)
    assert outcome["operation"] == NAME + op_id and outcome["status"] == "OK"


@pytest.mark.parametrize("shape", ["bare", "plain", "list", "operation-key"])
def test_request_shapes(
    shape: str, stack: Stack, function: FunctionProcess, results: Results, ops: Seed
) -> None:
    ids = ops(2)
    data: Any = {
        "bare": ids[0],
        "plain": f"  {NAME}{ids[0]}\n",
        "list": {"operations": [ids[0], f"projects/{PROJECT}/operations/{ids[1]}"]},
        "operation-key": {"operation": ids[0]},
    }[shape]
    status, message_id = function.post_event(data)
    assert status == 200
    expected = 2 if shape == "list" else 1
    outcomes = outcome_of(results, message_id, expected)
    assert {o["operation"] for o in outcomes} == {NAME + i for i in ids[:expected]}
    assert all(o["status"] == "OK" for o in outcomes)


def test_unknown_operation_is_not_found(function: FunctionProcess, results: Results) -> None:
    status, message_id = function.post_event({"name": "NOSUCHOP"})
    [outcome] = outcome_of(results, message_id)
    assert status == 200
    assert (outcome["status"], outcome["code"], outcome["httpStatus"]) == ("NOT_FOUND", 5, 404)
    assert outcome["message"] and "response" not in outcome


def test_unimplemented_is_reported_and_acked(
    stack: Stack, function: FunctionProcess, results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    stack.admin.set_faults(unimplemented=True)
    status, message_id = function.post_event(op_id)
    [outcome] = outcome_of(results, message_id)
    assert status == 200
    assert (outcome["status"], outcome["code"], outcome["httpStatus"]) == ("UNIMPLEMENTED", 12, 501)
    assert results.attributes[message_id][0]["status"] == "UNIMPLEMENTED"
    assert state(stack, NAME + op_id) == "RUNNING"


def test_cancelling_a_finished_operation_reports_its_state(
    stack: Stack, function: FunctionProcess, results: Results
) -> None:
    stack.admin.add_operations([{"name": NAME + "FINISHED1", "state": "SUCCEEDED"}])
    _, message_id = function.post_event("FINISHED1")
    [outcome] = outcome_of(results, message_id)
    assert (outcome["status"], outcome["state"], outcome["httpStatus"]) == (
        "FAILED_PRECONDITION",
        "SUCCEEDED",
        400,
    )


def test_redelivered_cancel_says_cancelled(
    stack: Stack, function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    first = function_factory()
    second = function_factory(CANCEL_CONCURRENCY="4")  # another instance: no shared memory
    _, message_id = first.post_event(op_id, message_id="redelivered-1")
    time.sleep(0.4)  # the emulator settles CANCELLING -> CANCELLED after 0.2 s
    second.post_event(op_id, message_id="redelivered-1")
    outcomes = outcome_of(results, message_id, 2)
    assert outcomes[0]["status"] == "OK"
    assert (outcomes[1]["status"], outcomes[1]["state"]) == ("FAILED_PRECONDITION", "CANCELLED")


def test_other_project_and_refused_project(
    stack: Stack, function: FunctionProcess, results: Results, ops: Seed
) -> None:
    [op_id] = ops(1, project=OTHER)
    since = time.time()
    _, message_id = function.post_event(
        {"names": [f"projects/{OTHER}/operations/{op_id}", "projects/stranger-proj/operations/X1"]}
    )
    outcomes = {o["operation"]: o for o in outcome_of(results, message_id, 2)}
    assert outcomes[f"projects/{OTHER}/operations/{op_id}"]["status"] == "OK"
    denied = outcomes["projects/stranger-proj/operations/X1"]
    assert (denied["status"], denied["code"]) == (
        "PERMISSION_DENIED",
        7,
    ) and "httpStatus" not in denied
    assert all("stranger" not in r["path"] for r in stack.admin.requests(since=since))


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        '{"name": ',
        {"name": "projects/demo-project/operations/../../v1/projects/x"},
        {"name": "X?alt=json"},
        {"names": ["A", {"nested": 1}]},
        [1, 2],
        "null",
        {"select": {"descriptionRegex": "(["}},
        {"name": "x" * 200},
        "https://evil.example.com/v1beta/projects/demo-project/operations/X",
    ],
)
def test_malformed_messages_get_invalid_argument_and_reach_no_url(
    stack: Stack, function: FunctionProcess, results: Results, data: Any
) -> None:
    since = time.time()
    status, message_id = function.post_event(data)
    [outcome] = outcome_of(results, message_id)
    assert status == 200
    assert (outcome["operation"], outcome["status"], outcome["code"]) == (
        None,
        "INVALID_ARGUMENT",
        3,
    )
    assert outcome["message"] and "httpStatus" not in outcome
    assert stack.admin.requests(since=since) == []


def test_missing_data_and_attribute_is_invalid(function: FunctionProcess, results: Results) -> None:
    _, message_id = function.post_event(None)
    [outcome] = outcome_of(results, message_id)
    assert outcome["status"] == "INVALID_ARGUMENT" and "nothing to cancel" in outcome["message"]


def test_429_with_retry_after_is_retried(
    stack: Stack, function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    function = function_factory(RETRY_DEADLINE_SECONDS="10")
    stack.admin.set_faults(
        [{"methods": ["cancel"], "kind": "status", "httpStatus": 429, "retryAfter": 1, "times": 2}]
    )
    since = time.time()
    started = time.monotonic()
    status, message_id = function.post_event(op_id)
    elapsed = time.monotonic() - started
    [outcome] = outcome_of(results, message_id)
    assert status == 200 and outcome["status"] == "OK"
    calls = cancel_calls(stack, since)
    assert [c["status"] for c in calls] == [429, 429, 200]
    assert elapsed >= 2.0  # two Retry-After: 1 waits were honoured


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "httpStatus": 503},
        {"kind": "status", "httpStatus": 500},
        {"kind": "reset"},
    ],
)
def test_transient_faults_are_retried(
    stack: Stack, function: FunctionProcess, results: Results, ops: Seed, fault: dict[str, Any]
) -> None:
    [op_id] = ops(1)
    stack.admin.set_faults([{"methods": ["cancel"], "times": 2, **fault}])
    since = time.time()
    status, message_id = function.post_event(op_id)
    [outcome] = outcome_of(results, message_id)
    assert status == 200 and outcome["status"] == "OK"
    assert len(cancel_calls(stack, since)) == 3


def test_outlasting_the_deadline_publishes_others_then_redelivers(
    stack: Stack, function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    good, bad = ops(2)
    function = function_factory(RETRY_DEADLINE_SECONDS="1")
    stack.admin.set_faults(
        [{"methods": ["cancel"], "pathRegex": bad, "kind": "status", "httpStatus": 503}]
    )
    status, message_id = function.post_event({"names": [good, bad]}, message_id="partial-1")
    assert status == 500  # raised: Pub/Sub would redeliver
    [first] = outcome_of(results, message_id)
    assert first["operation"] == NAME + good and first["status"] == "OK"
    assert "redelivery" in logs_of(function)
    stack.admin.set_faults([])
    status, _ = function.post_event({"names": [good, bad]}, message_id="partial-1")
    assert status == 200
    outcomes = outcome_of(results, message_id, 2)
    assert outcomes[1]["operation"] == NAME + bad and outcomes[1]["status"] == "OK"


def test_stale_event_gets_a_final_outcome(
    stack: Stack, function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    function = function_factory(RETRY_DEADLINE_SECONDS="1", MAX_EVENT_AGE_SECONDS="60")
    stack.admin.set_faults([{"methods": ["cancel"], "kind": "status", "httpStatus": 503}])
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    status, message_id = function.post_event(op_id, publish_time=old)
    [outcome] = outcome_of(results, message_id)
    assert status == 200  # acked
    assert (outcome["status"], outcome["code"], outcome["httpStatus"]) == ("UNAVAILABLE", 14, 503)
    assert "MAX_EVENT_AGE_SECONDS" in outcome["message"]


def test_publish_failure_raises(stack: Stack, ops: Seed) -> None:
    [op_id] = ops(1)
    env = stack.function_env(f"projects/{PROJECT}/topics/does-not-exist")
    function = stack.function(env)
    status, _ = function.post_event(op_id)
    assert status == 500
    assert "not published" in logs_of(function)


def test_verify_reports_the_final_state(
    function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    [op_id] = ops(1)
    function = function_factory(VERIFY_SECONDS="3")
    _, message_id = function.post_event(op_id)
    [outcome] = outcome_of(results, message_id)
    assert (outcome["status"], outcome["state"], outcome["message"]) == (
        "OK",
        "CANCELLED",
        "cancelled",
    )


def test_dry_run_cancels_nothing(
    stack: Stack, function_factory: Callable[..., FunctionProcess], results: Results, ops: Seed
) -> None:
    ids = ops(2)
    _, message_id = function_factory().post_event({"names": ids, "dryRun": True})
    outcomes = outcome_of(results, message_id, 2)
    assert all(o["dryRun"] and o["status"] == "OK" and o["state"] == "RUNNING" for o in outcomes)
    _, env_id = function_factory(DRY_RUN="true").post_event(ids[0])
    [env_outcome] = outcome_of(results, env_id)
    assert env_outcome["dryRun"] is True
    assert {state(stack, NAME + i) for i in ids} == {"RUNNING"}


def test_logs_are_structured_json_without_bodies(
    function: FunctionProcess, results: Results
) -> None:
    import json

    _, message_id = function.post_event({"name": "NOSUCH2"})
    outcome_of(results, message_id)
    lines = [json.loads(line) for line in logs_of(function).splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("messageId") == message_id]
    assert mine and all({"severity", "message"} <= set(line) for line in mine)
    assert any(
        line.get("operation") == NAME + "NOSUCH2" and line.get("status") == "NOT_FOUND"
        for line in mine
    )


def test_bad_configuration_fails_start_up_naming_the_variable(
    stack: Stack, results_topic: str, tmp_path: Any
) -> None:
    env = stack.function_env(results_topic, CANCEL_CONCURRENCY="lots")
    function = FunctionProcess(env, log_path=tmp_path / "bad.log")
    with pytest.raises(RuntimeError, match="exited"):
        function.start(timeout=20)
    assert "CANCEL_CONCURRENCY" in (tmp_path / "bad.log").read_text()
