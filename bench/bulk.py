"""Bulk cancellation: concurrency speed-up, the EE_MAX_QPS cap, and a 3,000-operation run.

(a) 300 active operations behind 50 ms of injected latency: ee-cancel handling
    ``{"select": {}}`` (CANCEL_CONCURRENCY=16, EE_MAX_QPS=1000), timed until the POST returns
    (the function returns once every outcome publish is confirmed), against a sequential
    list-then-cancel loop with one ``requests.Session`` on freshly seeded operations.
(b) 600 operations, no latency, EE_MAX_QPS=50: the most API requests the emulator saw in any
    sliding one-second window, against 110% of the cap.
(c) 3,000 operations at 100 ms latency, EE_MAX_QPS=100, CANCEL_CONCURRENCY=16: total time
    against the quota-bound ideal (operations / EE_MAX_QPS) and the worker's peak RSS.

    python bench/bulk.py [--quick] [--json]
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import (  # noqa: E402
    ACTIVE,
    PROJECT,
    RESULTS_TOPIC,
    FunctionProcess,
    Results,
    RssSampler,
    Stack,
    arguments,
    max_in_window,
    mib,
    now,
    open_stack,
    ours_env,
    post_ok,
    report,
    seed,
    start_function,
    verdict,
)

TARGET_SPEEDUP = 10.0
CAP_SLACK = 1.1
TARGET_IDEAL_FACTOR = 1.2
TARGET_PEAK_MIB = 150.0
POST_TIMEOUT = 600.0


def bulk_function(stack: Stack, topic: str, label: str, **overrides: str) -> FunctionProcess:
    """A warm ee-cancel process: started, and one message handled so its clients exist."""
    env = ours_env(
        stack, topic, MAX_OPERATIONS_PER_MESSAGE="5000", RETRY_DEADLINE_SECONDS="60", **overrides
    )
    function = start_function(stack, env, log_name=label)
    (warm_id,) = seed(stack, f"W{label}X", 1)
    post_ok(function, {"name": warm_id})
    return function


def fresh(stack: Stack, prefix: str, count: int, latency_ms: float) -> None:
    """Forget every operation and request, then seed ``count`` RUNNING ones."""
    stack.admin.reset()
    seed(stack, prefix, count)
    stack.admin.set_faults(latency_ms=latency_ms)


def select_all(function: FunctionProcess, results: Results, expected: int) -> dict[str, Any]:
    """POST ``{"select": {}}``; time it and count the outcomes published for it."""
    message_id = uuid.uuid4().hex
    began = now()
    post_ok(function, {"select": {}}, message_id=message_id, timeout=POST_TIMEOUT)
    seconds = now() - began
    outcomes = results.wait_for(message_id, expected, timeout=120)
    return {
        "seconds": seconds,
        "outcomes": len(outcomes),
        "ok": sum(1 for outcome in outcomes if outcome.get("status") == "OK"),
    }


def sequential(base_url: str) -> dict[str, Any]:
    """List every page, then cancel the active operations one by one."""
    session = requests.Session()
    session.trust_env = False
    listing = f"{base_url}/v1beta/projects/{PROJECT}/operations"
    began = now()
    names: list[str] = []
    token = ""
    while True:
        params: dict[str, str | int] = {"pageSize": 500}
        if token:
            params["pageToken"] = token
        response = session.get(listing, params=params, timeout=30)
        response.raise_for_status()
        body = response.json()
        names.extend(
            op["name"] for op in body.get("operations", []) if op["metadata"]["state"] in ACTIVE
        )
        token = body.get("nextPageToken", "")
        if not token:
            break
    for name in names:
        session.post(f"{base_url}/v1beta/{name}:cancel", timeout=30).raise_for_status()
    seconds = now() - began
    session.close()
    return {"seconds": seconds, "cancelled": len(names)}


def concurrency(stack: Stack, topic: str, results: Results, count: int) -> dict[str, Any]:
    function = bulk_function(stack, topic, "a", CANCEL_CONCURRENCY="16", EE_MAX_QPS="1000")
    fresh(stack, "BA", count, 50)
    ours = select_all(function, results, count)
    ours_stats = stack.admin.stats()
    fresh(stack, "BS", count, 50)
    loop = sequential(stack.ee.url)
    speedup = loop["seconds"] / ours["seconds"]
    return {
        "operations": count,
        "latency_ms": 50,
        "ours": ours,
        "ours_max_in_flight": ours_stats["maxInFlight"],
        "sequential": loop,
        "speedup": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "pass": speedup >= TARGET_SPEEDUP and ours["outcomes"] == count,
    }


def rate_cap(stack: Stack, topic: str, results: Results, count: int) -> dict[str, Any]:
    qps = 50
    function = bulk_function(stack, topic, "b", CANCEL_CONCURRENCY="16", EE_MAX_QPS=str(qps))
    fresh(stack, "BQ", count, 0)
    ours = select_all(function, results, count)
    times = [record["time"] for record in stack.admin.requests()]
    stats = stack.admin.stats()
    peak = max_in_window(times)
    limit = round(CAP_SLACK * qps, 6)
    span = max(times) - min(times)
    return {
        "operations": count,
        "ee_max_qps": qps,
        "ours": ours,
        "api_requests": len(times),
        "mean_rate": (len(times) - 1) / span if span else 0.0,
        "max_in_any_1s_window": peak,
        "emulator_max_per_second": stats["maxPerSecond"],
        "limit": limit,
        "pass": peak <= limit and ours["outcomes"] == count,
    }


def large(stack: Stack, topic: str, results: Results, count: int) -> dict[str, Any]:
    qps, latency_ms = 100, 100
    function = bulk_function(stack, topic, "c", CANCEL_CONCURRENCY="16", EE_MAX_QPS=str(qps))
    fresh(stack, "BL", count, latency_ms)
    with RssSampler(function.pid) as sampler:
        ours = select_all(function, results, count)
    ideal = count / qps
    stats = stack.admin.stats()
    factor = ours["seconds"] / ideal
    peak_mib = mib(sampler.peak_worker)
    return {
        "operations": count,
        "ee_max_qps": qps,
        "latency_ms": latency_ms,
        "ours": ours,
        "ideal_seconds": ideal,
        "factor": factor,
        "target_factor": TARGET_IDEAL_FACTOR,
        "api_requests": stats["requests"],
        "max_in_flight": stats["maxInFlight"],
        "peak_worker_rss_mib": peak_mib,
        "peak_tree_rss_mib": mib(sampler.peak_tree),
        "rss_samples": sampler.samples,
        "target_peak_mib": TARGET_PEAK_MIB,
        "pass": factor <= TARGET_IDEAL_FACTOR
        and peak_mib < TARGET_PEAK_MIB
        and ours["outcomes"] == count,
    }


def main() -> int:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else "bulk")
    parser.add_argument("--concurrency-ops", type=int, default=300, help="operations in (a)")
    parser.add_argument("--cap-ops", type=int, default=600, help="operations in (b)")
    parser.add_argument("--large-ops", type=int, default=3000, help="operations in (c)")
    args = parser.parse_args()
    counts = (100, 200, 600) if args.quick else (args.concurrency_ops, args.cap_ops, args.large_ops)

    with open_stack(args.log_dir) as stack:
        topic = stack.topic(RESULTS_TOPIC)
        results = stack.results(topic)
        a = concurrency(stack, topic, results, counts[0])
        print(f"(a) done: ours {a['ours']['seconds']:.2f} s", flush=True)
        b = rate_cap(stack, topic, results, counts[1])
        print(f"(b) done: {b['ours']['seconds']:.2f} s", flush=True)
        c = large(stack, topic, results, counts[2])
        print(f"(c) done: {c['ours']['seconds']:.2f} s", flush=True)

    figures = {"concurrency": a, "rate_cap": b, "large": c}
    report(
        "bulk",
        [
            f"(a) {a['operations']} ops at 50 ms: ours {a['ours']['seconds']:.2f} s "
            f"({a['ours']['outcomes']} outcomes, {a['ours']['ok']} OK, "
            f"max {a['ours_max_in_flight']} in flight), sequential "
            f"{a['sequential']['seconds']:.2f} s ({a['sequential']['cancelled']} cancelled), "
            f"speedup {a['speedup']:.1f}x (target >= {TARGET_SPEEDUP:g}x) {verdict(a['pass'])}",
            f"(b) {b['operations']} ops, EE_MAX_QPS={b['ee_max_qps']}: {b['api_requests']} "
            f"requests in {b['ours']['seconds']:.2f} s (mean {b['mean_rate']:.1f}/s), "
            f"max in any 1 s window {b['max_in_any_1s_window']} "
            f"(emulator maxPerSecond {b['emulator_max_per_second']}) vs limit "
            f"{b['limit']:g} (110% of cap) {verdict(b['pass'])}",
            f"(c) {c['operations']} ops at {c['latency_ms']} ms, EE_MAX_QPS={c['ee_max_qps']}: "
            f"{c['ours']['seconds']:.2f} s vs ideal {c['ideal_seconds']:.1f} s, "
            f"{c['factor']:.2f}x (target <= {TARGET_IDEAL_FACTOR}x) "
            f"{verdict(c['factor'] <= TARGET_IDEAL_FACTOR)}; "
            f"{c['ours']['outcomes']} outcomes ({c['ours']['ok']} OK)",
            f"(c) peak worker RSS {c['peak_worker_rss_mib']:.1f} MiB "
            f"(arbiter + worker {c['peak_tree_rss_mib']:.1f} MiB; {c['rss_samples']} samples "
            f"every 50 ms) (target < {TARGET_PEAK_MIB:g} MB) "
            f"{verdict(c['peak_worker_rss_mib'] < TARGET_PEAK_MIB)}",
        ],
        figures,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
