"""`make demo`: the whole system on this machine, with real outcomes.

Starts the Pub/Sub emulator, the local Earth Engine emulator (seeded with running exports)
and the function under functions-framework; wires a trigger topic to the function with a push
subscription (the real delivery path) and a results topic; publishes a handful of requests;
prints the outcomes pulled from the results topic; and stops everything it started.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.local.stack import PROJECT, Stack  # noqa: E402

OP = f"projects/{PROJECT}/operations/"
BUDGET_ATTRIBUTES = {
    "billingAccountId": "01D4EE-079462-DFD6EC",
    "budgetId": "de72f49d-779b-4945-a127-4d6ce8def0bb",
    "schemaVersion": "1.0",
}


def budget(cost: float) -> dict[str, Any]:
    """A Cloud Billing budget notification for a 100 USD budget."""
    fraction = cost / 100.0
    body: dict[str, Any] = {
        "budgetDisplayName": "earth-engine-batch",
        "costAmount": cost,
        "costIntervalStart": "2026-12-01T08:00:00Z",
        "budgetAmount": 100.0,
        "budgetAmountType": "SPECIFIED_AMOUNT",
        "currencyCode": "USD",
    }
    crossed = [t for t in (0.5, 0.9, 1.0) if fraction >= t]
    if crossed:
        body["alertThresholdExceeded"] = crossed[-1]
    return body


# (label, data, attributes, expected number of outcomes, emulator answers UNIMPLEMENTED)
STEPS: list[tuple[str, Any, dict[str, str], int, bool]] = [
    ("full name", {"name": OP + "EXPORT0000"}, {}, 1, False),
    ("bare task ID (plain text)", "EXPORT0001", {}, 1, False),
    ("operation attribute, empty data", "", {"operation": "EXPORT0002"}, 1, False),
    ("unknown operation", {"name": OP + "NO_SUCH_TASK"}, {}, 1, False),
    ("emulator answers UNIMPLEMENTED", {"name": OP + "EXPORT0003"}, {}, 1, True),
    ("malformed: path traversal", {"name": OP + "../../v1/projects/x"}, {}, 1, False),
    ("malformed: not JSON", "{oops", {}, 1, False),
    (
        "dry run of a selection",
        {"select": {"types": ["INGEST_IMAGE"]}, "dryRun": True},
        {},
        3,
        False,
    ),
    ("budget at 40%: below threshold", budget(40.0), BUDGET_ATTRIBUTES, 0, False),
    ("budget at 104%: cancel everything", budget(104.0), BUDGET_ATTRIBUTES, 8, False),
]


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when every step produced the outcomes it should."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep-logs", action="store_true", help="keep and show the log folder")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="ee-cancel-demo-"))
    print("Starting the Pub/Sub emulator, the Earth Engine emulator and the function...")
    with Stack(log_dir=log_dir) as stack:
        stack.admin.add_operations(
            generate=[
                {"project": PROJECT, "count": 8, "state": "RUNNING", "prefix": "EXPORT"},
                {
                    "project": PROJECT,
                    "count": 3,
                    "state": "PENDING",
                    "type": "INGEST_IMAGE",
                    "prefix": "INGEST",
                },
            ]
        )
        results_topic = stack.topic("ee-cancel-results")
        results = stack.results(results_topic, "ee-cancel-results-demo")
        function = stack.function(stack.function_env(results_topic))
        trigger = stack.topic("ee-cancel-requests")
        stack.subscription(trigger, "ee-cancel-push", push_endpoint=function.url)
        print(
            f"  Pub/Sub emulator {stack.pubsub.host_port}, Earth Engine emulator "
            f"{stack.ee.host_port}, function {function.url}"
        )
        print(f"  {trigger} --push--> function --> {results_topic}\n")
        rows: list[tuple[str, dict[str, Any] | None]] = []
        failures = 0
        for label, data, attributes, expected, unimplemented in STEPS:
            stack.admin.set_faults(unimplemented=unimplemented)
            message_id = stack.publish(trigger, data, **attributes)
            if expected == 0:
                results.quiet(2.0)
                got = results.by_source.get(message_id, [])
                rows.append((label, None))
                failures += bool(got)
                continue
            try:
                outcomes = results.wait_for(message_id, expected, timeout=60)
            except TimeoutError as exc:
                print(f"  !! {label}: {exc}")
                failures += 1
                continue
            rows.extend((label, outcome) for outcome in outcomes)
        stack.admin.set_faults()
        print_table(rows)
        still_active = [
            op["name"]
            for op in stack.admin.operations()
            if op["metadata"]["state"] in ("PENDING", "RUNNING")
        ]
        print(f"\nOperations still active in the Earth Engine emulator: {len(still_active)}")
        failures += bool(still_active)
    if args.keep_logs:
        print(f"Logs: {log_dir}")
    print("Stopped everything the demo started.")
    return 1 if failures else 0


def print_table(rows: list[tuple[str, dict[str, Any] | None]]) -> None:
    """The outcomes as a readable table."""
    header = ("request", "status", "operation", "state", "message")
    table = [header]
    for label, outcome in rows:
        if outcome is None:
            table.append((label, "-", "(no outcome: below threshold)", "", ""))
            continue
        operation = outcome["operation"] or "null"
        table.append(
            (
                label,
                outcome["status"] + (" (dry run)" if outcome["dryRun"] else ""),
                operation.replace(OP, "…/"),
                outcome.get("state", ""),
                _clip(outcome["message"], 72),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
