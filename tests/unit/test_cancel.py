"""The cancel engine with in-memory fakes: outcomes, retries, redelivery, publishing."""

from __future__ import annotations

import base64
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lib.cancel import Engine, Redeliver
from lib.earthengine import ApiResult
from lib.logs import Log
from lib.messages import Message
from lib.publisher import PublishError
from lib.retry import Retrier
from tests.unit.fakes import FakeClock, FakeEarthEngine, FakePublisher, config, error

P = "projects/ee-project/operations/"
NOW_ISO = "2027-01-15T08:00:00Z"  # FakeClock() starts at 1_800_000_000 = 2027-01-15T08:00:00Z


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, text: str) -> None:
        self.lines.extend(json.loads(line) for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


@pytest.fixture
def world() -> tuple[Engine, FakeEarthEngine, FakePublisher, FakeClock, Lines]:
    return make_world()


def make_world(
    executor: bool = False, **overrides: Any
) -> tuple[Engine, FakeEarthEngine, FakePublisher, FakeClock, Lines]:
    ee = FakeEarthEngine()
    for i in range(3):
        ee.add(f"{P}A{i}")
    publisher = FakePublisher()
    clock = FakeClock()
    lines = Lines()
    cfg = config(**overrides)
    engine = Engine(
        config=cfg,
        ee=ee,
        publisher=publisher,
        retrier=Retrier(
            cfg.retry_deadline,
            clock=clock,
            sleep=clock.sleep,
            backoff=lambda: itertools.repeat(1.0),
        ),
        executor=ThreadPoolExecutor(4) if executor else None,
        clock=clock,
        sleep=clock.sleep,
        logger=Log(lines),  # type: ignore[arg-type]
    )
    return engine, ee, publisher, clock, lines


def msg(
    data: Any, message_id: str = "m-1", publish_time: str = NOW_ISO, **attributes: str
) -> Message:
    raw = data if isinstance(data, str) else json.dumps(data)
    return Message(base64.b64encode(raw.encode()).decode(), attributes, message_id, publish_time)


def test_one_name_is_cancelled_and_reported(world: Any) -> None:
    engine, ee, publisher, _, lines = world
    report = engine.handle(msg({"name": f"{P}A0"}))
    assert ee.cancels() == [f"{P}A0"]
    [outcome] = publisher.published
    assert (outcome.operation, outcome.status, outcome.http_status) == (f"{P}A0", "OK", 200)
    assert outcome.as_json()["response"] == {} and report.errors == 0
    assert any(
        line.get("operation") == f"{P}A0" and line["severity"] == "INFO" for line in lines.lines
    )


def test_many_names_concurrently_each_get_an_outcome() -> None:
    engine, ee, publisher, _, _ = make_world(executor=True)
    engine.handle(msg({"names": ["A0", "A1", "A2", "MISSING", "projects/stranger-1/operations/Z"]}))
    got = {o.operation: o.status for o in publisher.published}
    assert got == {
        f"{P}A0": "OK",
        f"{P}A1": "OK",
        f"{P}A2": "OK",
        f"{P}MISSING": "NOT_FOUND",
        "projects/stranger-1/operations/Z": "PERMISSION_DENIED",
    }
    assert "projects/stranger-1/operations/Z" not in ee.cancels()


def test_failed_precondition_reports_the_state(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.add(f"{P}DONE", "SUCCEEDED")
    engine.handle(msg("DONE"))
    [outcome] = publisher.published
    assert outcome.status == "FAILED_PRECONDITION" and outcome.state == "SUCCEEDED"
    assert "SUCCEEDED" in outcome.message


def test_redelivered_cancel_of_a_cancelled_operation_says_cancelled(world: Any) -> None:
    engine, _, publisher, _, _ = world
    engine.handle(msg("A0", message_id="first"))
    engine.handle(msg("A0", message_id="second"))
    assert publisher.published[1].state == "CANCELLED"


def test_unimplemented_is_final_and_acked(world: Any) -> None:
    engine, ee, publisher, clock, _ = world
    ee.script[f"{P}A0"] = [error(501, "UNIMPLEMENTED", "cancel not supported")]
    engine.handle(msg("A0"))
    assert publisher.published[0].status == "UNIMPLEMENTED" and clock.slept == []


def test_transient_failures_are_retried_in_process(world: Any) -> None:
    engine, ee, publisher, clock, _ = world
    ee.script[f"{P}A0"] = [
        error(429, "RESOURCE_EXHAUSTED", retry_after=2),
        error(503, "UNAVAILABLE"),
    ]
    engine.handle(msg("A0"))
    assert publisher.published[0].status == "OK"
    assert clock.slept == [2, 1.0]


def test_outlasting_the_deadline_publishes_the_others_then_raises(world: Any) -> None:
    engine, ee, publisher, _, lines = world
    ee.script[f"{P}A1"] = [error(503, "UNAVAILABLE")] * 1000
    with pytest.raises(Redeliver):
        engine.handle(msg({"names": ["A0", "A1", "A2"]}))
    assert sorted(o.operation for o in publisher.published) == [f"{P}A0", f"{P}A2"]
    assert any("redelivery" in line["message"] for line in lines.lines)
    # The redelivery retries only what is pending on this instance, and then succeeds.
    ee.script[f"{P}A1"] = []
    before = len(ee.cancels())
    engine.handle(msg({"names": ["A0", "A1", "A2"]}))
    assert ee.cancels()[before:] == [f"{P}A1"]
    assert sorted(o.operation for o in publisher.published) == [f"{P}A0", f"{P}A1", f"{P}A2"]


def test_an_old_event_gets_a_final_outcome_instead_of_redelivery(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.script[f"{P}A0"] = [error(503, "UNAVAILABLE", "backend down")] * 1000
    engine.handle(msg("A0", publish_time="2027-01-15T06:00:00Z"))
    [outcome] = publisher.published
    assert outcome.status == "UNAVAILABLE" and outcome.http_status == 503
    assert "MAX_EVENT_AGE_SECONDS" in outcome.message and "backend down" in outcome.message


def test_a_publish_failure_raises(world: Any) -> None:
    engine, _, publisher, _, lines = world
    publisher.fail = True
    with pytest.raises(PublishError):
        engine.handle(msg("A0"))
    assert lines.lines[-1]["severity"] == "ERROR" and "redelivery" in lines.lines[-1]["message"]
    publisher.fail = False
    engine.handle(msg("A0"))  # redelivered: nothing was remembered as delivered
    assert publisher.published[0].state == "CANCELLED"


def test_invalid_request_gets_one_outcome_and_no_ee_call(world: Any) -> None:
    engine, ee, publisher, _, lines = world
    engine.handle(msg({"names": ["A0", "../../etc"]}))
    [outcome] = publisher.published
    assert outcome.operation is None and outcome.status == "INVALID_ARGUMENT"
    assert "entry 1" in outcome.message and ee.calls == []
    assert lines.lines[-1]["severity"] == "WARNING"


def test_dry_run_names_only_look(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.add(f"{P}OLD", "SUCCEEDED")
    engine.handle(msg({"names": ["A0", "OLD", "NOPE"], "dryRun": True}))
    got = {o.operation: (o.status, o.state, o.dry_run) for o in publisher.published}
    assert got == {
        f"{P}A0": ("OK", "RUNNING", True),
        f"{P}OLD": ("FAILED_PRECONDITION", "SUCCEEDED", True),
        f"{P}NOPE": ("NOT_FOUND", None, True),
    }
    assert ee.cancels() == []


def test_verify_polls_until_cancelled() -> None:
    engine, _, publisher, _, _ = make_world(VERIFY_SECONDS=5)
    engine.handle(msg("A0"))
    [outcome] = publisher.published
    assert (outcome.status, outcome.state, outcome.message) == ("OK", "CANCELLED", "cancelled")


def test_select_cancels_matching_active_operations_across_pages(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.add(f"{P}B0", "SUCCEEDED")
    ee.add(f"{P}C0", "CANCELLING")
    ee.add("projects/ee-other/operations/O1", "PENDING", type="EXPORT_TABLE")
    engine.handle(msg({"select": {}}))
    assert sorted(ee.cancels()) == sorted(
        [f"{P}A0", f"{P}A1", f"{P}A2", "projects/ee-other/operations/O1"]
    )
    assert {o.trigger.kind for o in publisher.published} == {"select"}


def test_select_over_the_cap_cancels_nothing() -> None:
    engine, ee, publisher, _, _ = make_world(MAX_OPERATIONS_PER_MESSAGE=2)
    engine.handle(msg({"select": {"project": "ee-project"}}))
    [outcome] = publisher.published
    assert outcome.status == "INVALID_ARGUMENT" and "3 operations match" in outcome.message
    assert ee.cancels() == []


def test_select_dry_run_reports_states_without_cancelling(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    engine.handle(msg({"select": {"project": "ee-project"}, "dryRun": True}))
    assert len(publisher.published) == 3 and ee.cancels() == []
    assert all(o.dry_run and o.state == "RUNNING" for o in publisher.published)


def test_listing_failures(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.list_script["ee-other"] = [error(403, "PERMISSION_DENIED", "no access")]
    engine.handle(msg({"select": {}}))
    denied = [o for o in publisher.published if o.operation is None]
    assert len(denied) == 1 and "ee-other" in denied[0].message
    assert len(ee.cancels()) == 3
    ee.list_script["ee-project"] = [error(503, "UNAVAILABLE")] * 1000
    with pytest.raises(Redeliver):
        engine.handle(msg({"select": {"project": "ee-project"}}, message_id="m-2"))


def test_budget_over_threshold_cancels_everything_with_budget_trigger(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    engine.handle(msg({"costAmount": 200, "budgetAmount": 100}, budgetId="b-1"))
    assert len(ee.cancels()) == 3
    trigger = publisher.published[0].as_json()["trigger"]
    assert trigger["kind"] == "budget" and trigger["budget"]["budgetId"] == "b-1"


def test_budget_below_threshold_does_nothing_but_log(world: Any) -> None:
    engine, ee, publisher, _, lines = world
    report = engine.handle(msg({"costAmount": 20, "budgetAmount": 100}))
    assert ee.calls == [] and publisher.published == [] and report.ignored
    assert len(lines.lines) == 1 and "below BUDGET_THRESHOLD" in lines.lines[0]["message"]


def test_ok_result_body_is_the_response(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.script[f"{P}A0"] = [ApiResult("OK", 200, {})]
    engine.handle(msg("A0"))
    assert publisher.published[0].as_json()["response"] == {}


def test_an_outage_bounds_the_whole_message_not_each_operation() -> None:
    engine, ee, publisher, clock, _ = make_world(RETRY_DEADLINE_SECONDS=10, EE_MAX_QPS=1)
    for i in range(3):
        ee.script[f"{P}A{i}"] = [error(503, "UNAVAILABLE")] * 1000
    started = clock.now
    with pytest.raises(Redeliver, match="3 operation"):
        engine.handle(msg({"names": ["A0", "A1", "A2"]}))
    # Sequentially, three full windows would take 30 s; the message gets 10 s + 3 calls at 1/s.
    assert clock.now - started <= 13
    assert ee.cancels().count(f"{P}A2") == 1 and publisher.published == []


def test_verification_waits_once_for_the_whole_batch() -> None:
    engine, ee, publisher, clock, _ = make_world(executor=True, VERIFY_SECONDS=4)
    for i in range(6):
        ee.add(f"{P}SLOW{i}", "CANCELLING")  # accepted, but never settles
    started = clock.now
    engine.handle(msg({"names": [f"SLOW{i}" for i in range(6)] + ["A0"]}))
    assert clock.now - started <= 4.5  # one window for all, not 4 s per operation
    got = {o.operation: (o.status, o.state, o.message) for o in publisher.published}
    assert got[f"{P}A0"] == ("OK", "CANCELLED", "cancelled")
    assert got[f"{P}SLOW0"] == (
        "OK",
        "CANCELLING",
        "cancellation requested; operation still CANCELLING after 4s",
    )
    assert len(got) == 7


def test_a_selection_redelivered_after_a_publish_failure_still_reports_every_cancel(
    world: Any,
) -> None:
    engine, ee, publisher, _, _ = world
    publisher.fail = True
    with pytest.raises(PublishError):
        engine.handle(msg({"select": {"project": "ee-project"}}))
    assert len(ee.cancels()) == 3 and publisher.published == []
    # The operations are CANCELLED now; the redelivery reports them rather than losing them,
    # from the listing alone.
    publisher.fail = False
    engine.handle(msg({"select": {"project": "ee-project"}}))
    assert len(ee.cancels()) == 3
    got = {o.operation: (o.status, o.state) for o in publisher.published}
    assert got == {f"{P}A{i}": ("FAILED_PRECONDITION", "CANCELLED") for i in range(3)}


def test_operations_cancelled_before_the_message_are_not_reported(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.now = "2027-01-15T07:00:00Z"
    engine.handle(msg({"select": {"project": "ee-project"}}, message_id="earlier"))
    engine.handle(msg({"select": {"project": "ee-project"}}, message_id="later"))
    assert [o.trigger.message_id for o in publisher.published] == ["earlier"] * 3


def test_a_selection_redelivered_for_one_failure_reports_only_that_one(world: Any) -> None:
    engine, ee, publisher, _, _ = world
    ee.script[f"{P}A1"] = [error(503, "UNAVAILABLE")] * 1000
    with pytest.raises(Redeliver):
        engine.handle(msg({"select": {"project": "ee-project"}}))
    assert sorted(o.operation for o in publisher.published) == [f"{P}A0", f"{P}A2"]
    ee.script[f"{P}A1"] = []
    engine.handle(msg({"select": {"project": "ee-project"}}))
    assert sorted(o.operation for o in publisher.published) == [f"{P}A0", f"{P}A1", f"{P}A2"]
