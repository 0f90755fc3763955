"""Cold start: from starting a function process to its first answered message.

ee-cancel (cancelling one operation in the EE emulator and publishing its outcome) against a
bare functions-framework function that only publishes one message with the same client to the
same results topic. Rounds alternate ours/bare; each round starts a fresh process and times
from just before ``Popen`` to the first 2xx answer to a POSTed CloudEvent.

    python bench/cold_start.py [--rounds 7] [--quick] [--json]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS_TOPIC,
    FunctionProcess,
    Stack,
    arguments,
    bare_env,
    function_process,
    median,
    now,
    ours_env,
    report,
    seed,
    verdict,
)

TARGET_RATIO = 1.5
POLL_SECONDS = 0.005


def first_answer(function: FunctionProcess, data: dict[str, str], timeout: float = 60.0) -> float:
    """Start ``function`` and POST ``data`` until it answers; seconds from before Popen.

    ``FunctionProcess.start`` (which launches the process, then waits for the port) runs in a
    thread while this one keeps trying the POST, so the figure is end to end and not rounded
    up to the port poll's interval.
    """
    failures: list[BaseException] = []

    def start() -> None:
        try:
            function.start(timeout=timeout)
        except BaseException as exc:  # reported by the polling loop
            failures.append(exc)

    starter = threading.Thread(target=start, name="start-function", daemon=True)
    began = now()
    starter.start()
    try:
        while True:
            try:
                status, _ = function.post_event(data, timeout=timeout)
            except OSError:  # refused or reset: not listening yet
                if failures:
                    raise failures[0] from None
                if now() - began > timeout:
                    raise TimeoutError(f"{function.target} did not answer in {timeout}s") from None
                time.sleep(POLL_SECONDS)
                continue
            elapsed = now() - began
            if not 200 <= status < 300:
                raise RuntimeError(f"{function.target} answered HTTP {status}")
            return elapsed
    finally:
        starter.join()


def run_round(stack: Stack, env: dict[str, str], data: dict[str, str], *, bare: bool) -> float:
    function = function_process(stack, env, bare=bare)
    try:
        return first_answer(function, data)
    finally:
        function.stop()


def main() -> int:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else "cold start")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each (default 7)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed rounds of each first (default 1)"
    )
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds

    from bench.common import open_stack

    with open_stack(args.log_dir) as stack:
        topic = stack.topic(RESULTS_TOPIC)
        results = stack.results(topic)
        ids = seed(stack, "CS", args.warmup + rounds)
        ours = ours_env(stack, topic)
        bare = bare_env(stack, topic)
        samples: dict[str, list[float]] = {"ours": [], "bare": []}
        for index, op_id in enumerate(ids):
            timed = index >= args.warmup
            label = f"round {index - args.warmup + 1}" if timed else "warm-up"
            data = {"name": op_id}
            ours_s = run_round(stack, ours, data, bare=False)
            bare_s = run_round(stack, bare, data, bare=True)
            print(f"{label}: ours {ours_s:.3f} s, bare {bare_s:.3f} s", flush=True)
            if timed:
                samples["ours"].append(ours_s)
                samples["bare"].append(bare_s)
        results.quiet(2.0)
        published = sum(len(outcomes) for outcomes in results.by_source.values())
        cancelled = sum(
            1 for op in stack.admin.operations() if op["metadata"]["state"] != "RUNNING"
        )

    ours_median, bare_median = median(samples["ours"]), median(samples["bare"])
    ratio = ours_median / bare_median
    figures = {
        "rounds": rounds,
        "ours_seconds": samples["ours"],
        "bare_seconds": samples["bare"],
        "ours_median_seconds": ours_median,
        "bare_median_seconds": bare_median,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
        "messages_published": published,
        "operations_cancelled": cancelled,
    }
    report(
        "cold start",
        [
            f"rounds: {rounds} of each, alternating, after {args.warmup} untimed warm-up round(s)",
            "ours samples: " + ", ".join(f"{s:.3f}" for s in samples["ours"]),
            "bare samples: " + ", ".join(f"{s:.3f}" for s in samples["bare"]),
            f"cold start median: ours {ours_median:.2f} s, bare {bare_median:.2f} s, "
            f"ratio {ratio:.2f} (target <= {TARGET_RATIO}) {verdict(ratio <= TARGET_RATIO)}",
            f"published on the results topic: {published} (expected {2 * len(ids)}); "
            f"operations cancelled: {cancelled} of {len(ids)}",
        ],
        figures,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
