"""The operator command line against the real emulators: Pub/Sub, the EE emulator, a function.

Commands run in-process through click's CliRunner, except where the real ``python main.py``
process matters (credentials read at import time, Ctrl-C of ``results --follow``).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import lib.cli
from deploy.local.stack import ROOT, Stack
from lib.cli import cli, main
from lib.config import Config
from lib.messages import Ignored, Message, Request, parse
from lib.outcomes import Outcome, Trigger, now_rfc3339
from lib.publisher import PubSubPublisher

pytestmark = pytest.mark.integration

PROJECT = "cli-project"
OP = f"projects/{PROJECT}/operations/"


@pytest.fixture(autouse=True)
def no_faults() -> None:
    """Overrides the package's fixture: this module runs its own stack, not the session one."""


@pytest.fixture(scope="module")
def cli_stack() -> Iterator[Stack]:
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    try:
        with Stack(project=PROJECT, ee_projects=(PROJECT,)) as started:
            yield started
    finally:
        # Stack.start() points PUBSUB_EMULATOR_HOST at this module's emulator; undo that.
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, cli_stack: Stack) -> pytest.MonkeyPatch:
    """A fresh EE emulator and the environment an operator would have against the stack."""
    cli_stack.admin.reset()
    clean_env.setenv("EE_EMULATOR_HOST", cli_stack.ee.host_port)
    clean_env.setenv("PUBSUB_EMULATOR_HOST", cli_stack.pubsub.host_port)
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    clean_env.setenv("EE_PROJECTS", PROJECT)
    clean_env.setenv("RETRY_DEADLINE_SECONDS", "5")
    return clean_env


def run(*args: str) -> Result:
    """Invoke the CLI; a crash (anything but an exit) fails the test with its traceback."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def seed(stack: Stack, prefix: str, count: int, **fields: Any) -> list[str]:
    stack.admin.add_operations(
        generate={"project": PROJECT, "count": count, "prefix": prefix, **fields}
    )
    return [f"{prefix}{i:04d}" for i in range(count)]


def states(stack: Stack) -> dict[str, str]:
    return {op["name"]: op["metadata"]["state"] for op in stack.admin.operations()}


def routes(stack: Stack) -> list[str]:
    return [request["route"] for request in stack.admin.requests()]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def pull_all(stack: Stack, subscription: str) -> list[Any]:
    """Every message waiting on ``subscription`` (acked)."""
    messages: list[Any] = []
    while True:
        response = stack.subscriber.pull(
            request={"subscription": subscription, "max_messages": 100}, timeout=2
        )
        if not response.received_messages:
            return messages
        messages.extend(item.message for item in response.received_messages)
        stack.subscriber.acknowledge(
            request={
                "subscription": subscription,
                "ack_ids": [item.ack_id for item in response.received_messages],
            }
        )


def topic_with_subscription(stack: Stack) -> tuple[str, str, str]:
    """A new topic ID, its full path, and a pull subscription on it."""
    topic_id = unique("cli-topic")
    topic = stack.topic(topic_id)
    return topic_id, topic, stack.subscription(topic, unique("cli-sub"))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# Help and exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["list", "cancel", "publish", "results"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert f"python main.py {command} " in result.stdout


def test_main_returns_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("list", "cancel", "publish", "results"))
    assert main(["cancel"]) == 2
    assert "give operation names or --select" in capsys.readouterr().err
    assert main(["list", "--state", "BOGUS"]) == 2


def test_bad_configuration_names_the_variable(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    env.setenv("CANCEL_CONCURRENCY", "lots")
    result = run("cancel", "ABC")
    assert result.exit_code == 2
    assert "CANCEL_CONCURRENCY='lots' is not a number" in result.stderr
    env.delenv("CANCEL_CONCURRENCY")
    env.delenv("EE_PROJECTS")
    env.delenv("GOOGLE_CLOUD_PROJECT")
    result = run("list")
    assert result.exit_code == 2
    assert "EE_PROJECTS is empty" in result.stderr
    assert routes(cli_stack) == []


# list ----------------------------------------------------------------------------------------


def test_list_follows_every_page(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    seed(cli_stack, "RUN", 600, state="RUNNING")
    seed(cli_stack, "DONE", 5, state="SUCCEEDED")
    result = run("list")
    assert result.exit_code == 0
    rows = lines(result.stdout)
    assert rows[0].split() == ["NAME", "STATE", "TYPE", "DESCRIPTION", "AGE", "EECU-S"]
    assert len(rows) == 601
    assert {row.split()[0] for row in rows[1:]} == {f"{OP}RUN{i:04d}" for i in range(600)}
    assert "600 PENDING/RUNNING operation(s)" in result.stderr
    assert routes(cli_stack) == ["list", "list"]  # 500 a page

    result = run("list", "--state", "succeeded", "--json")
    assert result.exit_code == 0
    listed = [json.loads(line) for line in lines(result.stdout)]
    assert [op["name"] for op in listed] == [f"{OP}DONE{i:04d}" for i in range(5)]
    assert {op["metadata"]["state"] for op in listed} == {"SUCCEEDED"}


def test_list_shows_age_type_description_and_eecu(
    env: pytest.MonkeyPatch, cli_stack: Stack
) -> None:
    cli_stack.admin.add_operations(
        operations=[
            {
                "name": f"{OP}NIGHTLY",
                "state": "PENDING",
                "type": "EXPORT_TABLE",
                "description": "nightly zonal stats",
                "ageSeconds": 3 * 3600 + 12 * 60 + 5,
                "batchEecuUsageSeconds": 5321.4,
            }
        ]
    )
    [header, row] = lines(run("list").stdout)
    assert header.index("AGE") == row.index("3h12m")
    assert row.split("  ")[0] == f"{OP}NIGHTLY"
    for cell in ("PENDING", "EXPORT_TABLE", "nightly zonal stats", "5321.4"):
        assert cell in row


def test_list_project_option_adds_a_project(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    seed(cli_stack, "HERE", 2)
    cli_stack.admin.add_operations(
        generate={"project": "second-project", "count": 3, "prefix": "THERE"}
    )
    result = run("list", "--project", "second-project", "--json")
    assert result.exit_code == 0
    names = [json.loads(line)["name"] for line in lines(result.stdout)]
    assert names == [f"projects/second-project/operations/THERE{i:04d}" for i in range(3)]
    assert run("list", "--project", "Not_A_Project").exit_code == 2


# cancel --------------------------------------------------------------------------------------


def test_cancel_names_cancels_them(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    first, second, untouched = seed(cli_stack, "C", 3)
    result = run("cancel", first, OP + second)
    assert result.exit_code == 0
    printed = lines(result.stdout)
    assert len(printed) == 2
    assert all(line.startswith("OK ") and "cancellation requested" in line for line in printed)
    assert {line.split()[1] for line in printed} == {OP + first, OP + second}
    assert "2 outcome(s): 2 OK" in result.stderr
    after = states(cli_stack)
    assert after[OP + first] in {"CANCELLING", "CANCELLED"}
    assert after[OP + second] in {"CANCELLING", "CANCELLED"}
    assert after[OP + untouched] == "RUNNING"


def test_cancel_exits_1_when_an_outcome_is_not_ok(
    env: pytest.MonkeyPatch, cli_stack: Stack
) -> None:
    [op_id] = seed(cli_stack, "NF", 1)
    result = run("cancel", op_id, "MISSING", "--json")
    assert result.exit_code == 1
    outcomes = {o["operation"]: o for o in map(json.loads, lines(result.stdout))}
    assert outcomes[OP + op_id]["status"] == "OK"
    assert outcomes[OP + "MISSING"]["status"] == "NOT_FOUND"
    assert outcomes[OP + "MISSING"]["httpStatus"] == 404
    assert outcomes[OP + "MISSING"]["trigger"]["messageId"].startswith("cli-")


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", f"{OP}A/../B", f"{OP}A:cancel", "has space", "projects/X_Y/operations/A"],
)
def test_cancel_bad_name_exits_2_before_any_request(
    env: pytest.MonkeyPatch, cli_stack: Stack, name: str
) -> None:
    result = run("cancel", "GOOD", name)
    assert result.exit_code == 2
    assert "Invalid value for NAME" in result.stderr
    assert cli_stack.admin.requests() == []


def test_cancel_outside_ee_projects_exits_2(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    result = run("cancel", "projects/elsewhere/operations/A")
    assert result.exit_code == 2
    assert "not in EE_PROJECTS" in result.stderr and "--project" in result.stderr
    assert cli_stack.admin.requests() == []


def test_cancel_select_cancels_only_matches(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    images = seed(cli_stack, "IMG", 3, type="EXPORT_IMAGE")
    tables = seed(cli_stack, "TBL", 2, type="EXPORT_TABLE")
    result = run("cancel", "--select", '{"types": ["EXPORT_TABLE"]}', "--json")
    assert result.exit_code == 0
    outcomes = [json.loads(line) for line in lines(result.stdout)]
    assert sorted(o["operation"] for o in outcomes) == [OP + t for t in tables]
    assert all(o["status"] == "OK" and o["trigger"]["kind"] == "select" for o in outcomes)
    after = states(cli_stack)
    assert {after[OP + t] for t in tables} <= {"CANCELLING", "CANCELLED"}
    assert {after[OP + i] for i in images} == {"RUNNING"}


def test_cancel_select_with_project(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    seed(cli_stack, "MINE", 1)
    cli_stack.admin.add_operations(generate={"project": "second-project", "count": 2})
    result = run("cancel", "--select", "{}", "--project", "second-project", "--json")
    assert result.exit_code == 0
    names = sorted(json.loads(line)["operation"] for line in lines(result.stdout))
    assert names == [f"projects/second-project/operations/OP{i:04d}" for i in range(2)]
    assert states(cli_stack)[OP + "MINE0000"] == "RUNNING"


def test_cancel_dry_run_changes_nothing(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    ids = seed(cli_stack, "DRY", 3)
    result = run("cancel", "--select", "{}", "--dry-run")
    assert result.exit_code == 0
    printed = lines(result.stdout)
    assert len(printed) == 3
    assert all("dry run: would cancel this RUNNING operation" in line for line in printed)
    assert "(dry run)" in result.stderr

    result = run("cancel", ids[0], "--dry-run", "--json")
    [outcome] = [json.loads(line) for line in lines(result.stdout)]
    assert (outcome["dryRun"], outcome["state"], outcome["status"]) == (True, "RUNNING", "OK")
    assert set(states(cli_stack).values()) == {"RUNNING"}
    assert "cancel" not in routes(cli_stack)


@pytest.mark.parametrize(
    ("select", "error"),
    [
        ('{"states": ["NOPE"]}', "unknown state"),
        ("[1]", "must be a JSON object"),
        ("{nope", "not valid JSON"),
        ('{"descriptionRegex": "("}', "not a valid regex"),
    ],
)
def test_cancel_bad_select_exits_2(
    env: pytest.MonkeyPatch, cli_stack: Stack, select: str, error: str
) -> None:
    result = run("cancel", "--select", select)
    assert result.exit_code == 2
    assert error in result.stderr
    assert cli_stack.admin.requests() == []


def test_cancel_reports_transient_failures_past_the_deadline(
    env: pytest.MonkeyPatch, cli_stack: Stack
) -> None:
    env.setenv("RETRY_DEADLINE_SECONDS", "0.5")
    healthy, failing = seed(cli_stack, "TR", 2)
    cli_stack.admin.set_faults([{"methods": ["cancel"], "pathRegex": failing, "httpStatus": 503}])
    result = run("cancel", healthy, failing)
    assert result.exit_code == 1
    [line] = lines(result.stdout)
    assert line.startswith("OK ") and OP + healthy in line
    assert "still failing transiently" in result.stderr
    assert "RETRY_DEADLINE_SECONDS (0.5s)" in result.stderr
    assert routes(cli_stack).count("cancel") >= 3  # the failing one was retried


def test_progress_counter_only_on_a_terminal(
    env: pytest.MonkeyPatch, cli_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed(cli_stack, "PR", 12)
    quiet = run("cancel", *ids[:6], "--dry-run")
    assert quiet.exit_code == 0 and "\r" not in quiet.stderr
    monkeypatch.setattr(lib.cli, "_stderr_is_tty", lambda: True)
    shown = run("cancel", *ids)
    assert shown.exit_code == 0
    assert "\r12/12 operation(s)" in shown.stderr and "\x1b[K" in shown.stderr
    assert len(lines(shown.stdout)) == 12


def test_verbose_logs_the_engine_decisions(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    [op_id] = seed(cli_stack, "V", 1)
    result = run("-v", "cancel", op_id)
    entries = [json.loads(line) for line in lines(result.stderr) if line.startswith("{")]
    assert any(e.get("operation") == OP + op_id and e["status"] == "OK" for e in entries)
    assert not any(line.startswith("{") for line in lines(run("cancel", op_id).stderr))


# credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["list"], ["cancel", "ABC"]])
def test_missing_credentials_exit_2_with_advice(
    env: pytest.MonkeyPatch, cli_stack: Stack, tmp_path: Path, args: list[str]
) -> None:
    env.delenv("EE_EMULATOR_HOST")
    env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    started = time.monotonic()
    result = run(*args)
    assert result.exit_code == 2
    assert "gcloud auth application-default login" in result.stderr
    assert "EE_EMULATOR_HOST" in result.stderr
    assert "missing.json" in result.stderr
    assert time.monotonic() - started < 5
    assert cli_stack.admin.requests() == []


def test_no_adc_at_all_fails_fast_offline(tmp_path: Path) -> None:
    """The real process, with no key file, no gcloud login and no metadata server."""
    drop = {"EE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"}
    child_env = {k: v for k, v in os.environ.items() if k not in drop}
    child_env.update(
        GOOGLE_CLOUD_PROJECT=PROJECT,
        EE_PROJECTS=PROJECT,
        CLOUDSDK_CONFIG=str(tmp_path),  # an empty gcloud config: no ADC file
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST="127.0.0.1:1",
        GCE_METADATA_IP="127.0.0.1:1",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "main.py", "cancel", "ABC"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "no Application Default Credentials found" in done.stderr
    assert "gcloud auth application-default login" in done.stderr
    assert done.stdout == ""
    assert time.monotonic() - started < 20


# publish -------------------------------------------------------------------------------------


def test_publish_names_to_the_trigger_topic(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    topic_id, _, subscription = topic_with_subscription(cli_stack)
    result = run("publish", "--topic", topic_id, "ABC", OP + "DEF", "--dry-run")
    assert result.exit_code == 0
    [message_id] = lines(result.stdout)
    [message] = pull_all(cli_stack, subscription)
    assert message.message_id == message_id
    assert json.loads(message.data) == {"names": ["ABC", OP + "DEF"], "dryRun": True}

    result = run("publish", "--topic", topic_id, "ABC", "--project", "second-project")
    [message] = pull_all(cli_stack, subscription)
    assert json.loads(message.data) == {"names": ["projects/second-project/operations/ABC"]}


def test_publish_select_merges_the_project(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    _, topic, subscription = topic_with_subscription(cli_stack)
    select = '{"types": ["EXPORT_IMAGE"], "olderThanSeconds": 60}'
    result = run("publish", "--topic", topic, "--select", select, "--project", "second-project")
    assert result.exit_code == 0
    [message] = pull_all(cli_stack, subscription)
    assert json.loads(message.data) == {
        "select": {
            "types": ["EXPORT_IMAGE"],
            "olderThanSeconds": 60,
            "project": "second-project",
        }
    }


@pytest.mark.parametrize(("fraction", "acts"), [(1.2, True), (0.5, False)])
def test_publish_budget_test_is_a_budget_notification(
    env: pytest.MonkeyPatch, cli_stack: Stack, fraction: float, acts: bool
) -> None:
    topic_id, _, subscription = topic_with_subscription(cli_stack)
    result = run("publish", "--topic", topic_id, "--budget-test", str(fraction))
    assert result.exit_code == 0
    [message] = pull_all(cli_stack, subscription)
    body = json.loads(message.data)
    assert body["costAmount"] == fraction * 100 and body["budgetAmount"] == 100.0
    assert body["currencyCode"] == "USD" and body["budgetDisplayName"] == "ee-cancel test"
    assert ("alertThresholdExceeded" in body) is acts
    attributes = dict(message.attributes)
    assert attributes["schemaVersion"] == "1.0"
    assert attributes["billingAccountId"] and attributes["budgetId"]
    # The function reads it as a budget alert: acting at or over the threshold only.
    parsed = parse(
        Message(base64.b64encode(message.data).decode(), attributes, "m", now_rfc3339()),
        Config.from_env({"RESULTS_TOPIC": "results", "GOOGLE_CLOUD_PROJECT": PROJECT}),
    )
    if acts:
        assert isinstance(parsed, Request) and parsed.kind == "budget"
    else:
        assert isinstance(parsed, Ignored)


def test_publish_to_an_unknown_topic_exits_1(env: pytest.MonkeyPatch) -> None:
    result = run("publish", "--topic", "no-such-topic", "ABC")
    assert result.exit_code == 1
    assert f"topic projects/{PROJECT}/topics/no-such-topic not found" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["bad/name"],
        ["ABC", "--select", "{}"],
        [],
        ["--budget-test", "-1"],
        ["--budget-test", "1", "--project", "second-project"],
        ["--select", '{"states": ["NOPE"]}'],
    ],
)
def test_publish_usage_errors_exit_2_and_publish_nothing(
    env: pytest.MonkeyPatch, cli_stack: Stack, args: list[str]
) -> None:
    topic_id, _, subscription = topic_with_subscription(cli_stack)
    result = run("publish", "--topic", topic_id, *args)
    assert result.exit_code == 2
    assert pull_all(cli_stack, subscription) == []


# results -------------------------------------------------------------------------------------


def publish_outcomes(stack: Stack, topic: str, *statuses: str) -> str:
    """Publish outcomes as the function does (same data and attributes); returns their source."""
    trigger = Trigger("request", unique("src"), now_rfc3339())
    batch = PubSubPublisher(topic, client=stack.publisher).batch()
    for index, status in enumerate(statuses):
        batch.send(Outcome(f"{OP}R{index}", status, f"outcome {index}", trigger))
    batch.confirm()
    return trigger.message_id


def test_results_round_trip_through_the_function(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    """publish -> Pub/Sub push -> the function cancels in the EE emulator -> results prints."""
    results_topic = cli_stack.topic(unique("results"))
    subscription = cli_stack.subscription(results_topic, unique("results-sub"))
    function = cli_stack.function(cli_stack.function_env(results_topic))
    trigger_id = unique("requests")
    trigger = cli_stack.topic(trigger_id)
    cli_stack.subscription(trigger, unique("push"), push_endpoint=function.url)
    [op_id] = seed(cli_stack, "RT", 1)

    [message_id] = lines(run("publish", "--topic", trigger_id, op_id).stdout)
    printed: list[str] = []
    deadline = time.monotonic() + 30
    while not printed and time.monotonic() < deadline:
        printed = lines(run("results", "--subscription", subscription).stdout)
    [line] = printed
    assert f"OK                  {OP}{op_id}  cancellation requested" in line
    assert line.endswith(f"[request {message_id}]")
    assert states(cli_stack)[OP + op_id] in {"CANCELLING", "CANCELLED"}
    again = run("results", "--subscription", subscription)
    assert lines(again.stdout) == [] and "0 message(s)" in again.stderr  # acked


def test_results_filters_and_leaves_the_rest(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    _, topic, subscription = topic_with_subscription(cli_stack)
    source = publish_outcomes(cli_stack, topic, "OK", "NOT_FOUND", "OK")

    result = run("results", "--subscription", subscription, "--status", "not_found", "--json")
    assert result.exit_code == 0
    [shown] = [json.loads(line) for line in lines(result.stdout)]
    assert shown["data"]["status"] == "NOT_FOUND" and shown["data"]["operation"] == OP + "R1"
    assert shown["attributes"] == {
        "status": "NOT_FOUND",
        "operation": OP + "R1",
        "trigger": "request",
        "sourceMessageId": source,
    }
    # The two OK outcomes were released, not acked: the next reader gets them at once.
    result = run("results", "--subscription", subscription, "--max", "1")
    assert len(lines(result.stdout)) == 1
    result = run("results", "--subscription", subscription)
    [line] = lines(result.stdout)
    assert " OK " in line and f"[request {source}]" in line
    assert lines(run("results", "--subscription", subscription).stdout) == []


def test_bare_ids_need_google_cloud_project(env: pytest.MonkeyPatch) -> None:
    env.delenv("GOOGLE_CLOUD_PROJECT")
    result = run("results", "--subscription", "ee-cancel-results")
    assert result.exit_code == 2
    assert "GOOGLE_CLOUD_PROJECT is unset" in result.stderr and "--subscription" in result.stderr
    result = run("publish", "--topic", "projects/x/topics/requests", "ABC")
    assert result.exit_code == 2 and "--topic" in result.stderr


def test_results_shows_messages_that_are_not_outcomes(
    env: pytest.MonkeyPatch, cli_stack: Stack
) -> None:
    _, topic, subscription = topic_with_subscription(cli_stack)
    cli_stack.publish(topic, "plain text request")
    [line] = lines(run("results", "--subscription", subscription).stdout)
    assert "(not an outcome" in line and "plain text request" in line


def test_results_from_an_unknown_subscription_exits_1(env: pytest.MonkeyPatch) -> None:
    result = run("results", "--subscription", "no-such-subscription")
    assert result.exit_code == 1
    assert "subscription projects/cli-project/subscriptions/no-such-subscription" in result.stderr


def test_results_follow_until_ctrl_c(env: pytest.MonkeyPatch, cli_stack: Stack) -> None:
    """The real process: it waits for outcomes, and Ctrl-C ends it cleanly, releasing the rest."""
    _, topic, subscription = topic_with_subscription(cli_stack)
    process = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "results",
            "--subscription",
            subscription,
            "--follow",
            "--status",
            "NOT_FOUND",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for printed in process.stdout or []:
            output.put(printed)

    try:
        threading.Thread(target=read, daemon=True).start()
        time.sleep(2.5)  # long enough for empty pulls: --follow must keep going
        assert process.poll() is None
        publish_outcomes(cli_stack, topic, "OK", "NOT_FOUND")
        line = output.get(timeout=20)
        assert " NOT_FOUND " in line and f"{OP}R1" in line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [released] = lines(run("results", "--subscription", subscription).stdout)
    assert " OK " in released and f"{OP}R0" in released
