"""Bulk cancellation through the function: selections and budget notifications."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from deploy.local.stack import FunctionProcess, Results, Stack
from tests.integration.conftest import OTHER, PROJECT

pytestmark = pytest.mark.integration

BUDGET_ATTRIBUTES = {
    "billingAccountId": "01D4EE-079462-DFD6EC",
    "budgetId": "budget-1",
    "schemaVersion": "1.0",
}


def active(stack: Stack, project: str | None = None) -> set[str]:
    return {
        op["name"]
        for op in stack.admin.operations()
        if op["metadata"]["state"] in {"PENDING", "RUNNING"}
        and (project is None or op["name"].startswith(f"projects/{project}/"))
    }


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """An emulator holding only what the test seeds."""
    stack.admin.reset()
    return stack


def test_select_filters_and_pages(
    fresh: Stack, function: FunctionProcess, results: Results
) -> None:
    fresh.admin.add_operations(
        generate=[
            {
                "project": PROJECT,
                "count": 620,
                "state": "RUNNING",
                "prefix": "NIGHT",
                "description": "nightly",
                "ageSeconds": 30000,
            },
            {
                "project": PROJECT,
                "count": 5,
                "state": "RUNNING",
                "prefix": "YOUNG",
                "description": "nightly",
            },
            {
                "project": PROJECT,
                "count": 5,
                "state": "RUNNING",
                "prefix": "MANUAL",
                "description": "manual",
                "ageSeconds": 30000,
            },
            {
                "project": PROJECT,
                "count": 5,
                "state": "SUCCEEDED",
                "prefix": "DONE",
                "description": "nightly",
                "ageSeconds": 30000,
            },
        ]
    )
    since = time.time()
    status, message_id = function.post_event(
        {"select": {"project": PROJECT, "descriptionRegex": "^nightly", "olderThanSeconds": 21600}}
    )
    assert status == 200
    outcomes = results.wait_for(message_id, 620, timeout=60)
    assert len({o["operation"] for o in outcomes}) == 620
    assert all(o["status"] == "OK" and o["trigger"]["kind"] == "select" for o in outcomes)
    assert all("/NIGHT" in o["operation"] for o in outcomes)
    lists = [r for r in fresh.admin.requests(since=since) if "operations?" in r["path"]]
    assert len(lists) == 2 and all("pageSize=500" in r["path"] for r in lists)
    assert {n.rsplit("/", 1)[1][:4] for n in active(fresh)} == {"YOUN", "MANU"}


def test_select_dry_run_and_cap(
    fresh: Stack, function_factory: Callable[..., FunctionProcess], results: Results
) -> None:
    fresh.admin.add_operations(
        generate={"project": PROJECT, "count": 12, "state": "PENDING", "type": "INGEST_IMAGE"}
    )
    _, dry_id = function_factory().post_event(
        {"select": {"types": ["INGEST_IMAGE"]}, "dryRun": True}
    )
    dry = results.wait_for(dry_id, 12)
    assert all(o["dryRun"] and o["state"] == "PENDING" for o in dry)
    capped = function_factory(MAX_OPERATIONS_PER_MESSAGE="10")
    _, cap_id = capped.post_event({"select": {}})
    [outcome] = results.wait_for(cap_id)
    assert outcome["status"] == "INVALID_ARGUMENT" and "12 operations match" in outcome["message"]
    assert len(active(fresh)) == 12


def test_select_refuses_unlisted_project(
    fresh: Stack, function: FunctionProcess, results: Results
) -> None:
    since = time.time()
    _, message_id = function.post_event({"select": {"project": "stranger-proj"}})
    [outcome] = results.wait_for(message_id)
    assert (outcome["status"], outcome["operation"]) == ("PERMISSION_DENIED", None)
    assert outcome["trigger"]["kind"] == "select"
    assert fresh.admin.requests(since=since) == []


def test_budget_below_threshold_does_nothing(
    fresh: Stack, function: FunctionProcess, results: Results
) -> None:
    fresh.admin.add_operations(generate={"project": PROJECT, "count": 3})
    since = time.time()
    body = {
        "budgetDisplayName": "EE",
        "costAmount": 40.0,
        "budgetAmount": 100.0,
        "alertThresholdExceeded": 0.3,
        "currencyCode": "USD",
    }
    status, message_id = function.post_event(body, BUDGET_ATTRIBUTES)
    assert status == 200
    results.quiet(1.0)
    assert message_id not in results.by_source
    assert fresh.admin.requests(since=since) == []
    assert len(active(fresh)) == 3


def test_budget_over_threshold_cancels_every_active_operation(
    fresh: Stack, function: FunctionProcess, results: Results
) -> None:
    fresh.admin.add_operations(
        generate=[
            {"project": PROJECT, "count": 30, "state": "RUNNING", "prefix": "R"},
            {"project": PROJECT, "count": 10, "state": "PENDING", "prefix": "P"},
            {"project": OTHER, "count": 10, "state": "RUNNING", "prefix": "O"},
            {"project": PROJECT, "count": 5, "state": "SUCCEEDED", "prefix": "S"},
        ]
    )
    body = {
        "budgetDisplayName": "EE",
        "costAmount": 101.0,
        "budgetAmount": 100.0,
        "alertThresholdExceeded": 1.0,
        "currencyCode": "USD",
    }
    status, message_id = function.post_event(body, BUDGET_ATTRIBUTES)
    assert status == 200
    outcomes = results.wait_for(message_id, 50)
    assert active(fresh) == set()
    trigger: dict[str, Any] = outcomes[0]["trigger"]
    assert trigger["kind"] == "budget"
    assert trigger["budget"]["budgetId"] == "budget-1" and trigger["budget"]["costAmount"] == 101.0
    # A later notification acts on whatever is active then: here, only the late ones. (It
    # would also report operations whose cancellation completed after it was published, so
    # let the emulator's CANCELLING -> CANCELLED transitions (0.2 s) finish first.)
    time.sleep(0.5)
    fresh.admin.add_operations(generate={"project": PROJECT, "count": 2, "prefix": "LATE"})
    _, again = function.post_event(body, BUDGET_ATTRIBUTES)
    late = results.wait_for(again, 2)
    assert {o["operation"].rsplit("/", 1)[1][:4] for o in late} == {"LATE"}


def test_quota_guards_hold_under_bulk_work(
    fresh: Stack, function_factory: Callable[..., FunctionProcess], results: Results
) -> None:
    fresh.admin.add_operations(generate={"project": PROJECT, "count": 40})
    fresh.admin.set_faults(latency_ms=20)
    function = function_factory(EE_MAX_QPS="20", CANCEL_CONCURRENCY="4")
    since = time.time()
    _, message_id = function.post_event({"select": {}})
    results.wait_for(message_id, 40)
    stats = fresh.admin.stats()
    assert stats["maxInFlight"] <= 4
    times = sorted(r["time"] for r in fresh.admin.requests(since=since))
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 22  # 110% of EE_MAX_QPS


def test_transient_listing_failure_redelivers(
    fresh: Stack, function: FunctionProcess, results: Results
) -> None:
    fresh.admin.add_operations(generate={"project": PROJECT, "count": 2})
    fresh.admin.set_faults([{"methods": ["list"], "kind": "status", "httpStatus": 503}])
    status, message_id = function.post_event(
        {"select": {"project": PROJECT}}, message_id="list-fail-1"
    )
    assert status == 500
    fresh.admin.set_faults([])
    status, _ = function.post_event({"select": {"project": PROJECT}}, message_id="list-fail-1")
    assert status == 200
    assert len(results.wait_for(message_id, 2)) == 2


def test_selection_cancelled_but_unpublished_is_reported_on_redelivery(fresh: Stack) -> None:
    fresh.admin.add_operations(generate={"project": PROJECT, "count": 4, "prefix": "OUTAGE"})
    topic_name = f"results-late-{int(time.time() * 1000)}"
    function = fresh.function(fresh.function_env(f"projects/{PROJECT}/topics/{topic_name}"))
    sent = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 1))
    # The results topic does not exist yet: the cancels happen, the publishes fail.
    status, message_id = function.post_event({"select": {}}, publish_time=sent)
    assert status == 500
    assert active(fresh) == set()
    late = fresh.results(fresh.topic(topic_name))
    status, _ = function.post_event({"select": {}}, message_id=message_id, publish_time=sent)
    assert status == 200
    outcomes = late.wait_for(message_id, 4)
    assert {o["operation"].rsplit("/", 1)[1] for o in outcomes} == {
        f"OUTAGE{i:04d}" for i in range(4)
    }
    assert all(o["state"] in {"CANCELLING", "CANCELLED"} for o in outcomes)
