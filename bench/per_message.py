"""Warm per-message cost: CPU time and memory of ee-cancel against a bare publishing function.

One process of each; after a warm-up, single-cancel messages (``{"name": "PMxxxx"}``, one per
seeded RUNNING operation; the bare function gets the same bodies) are POSTed sequentially,
alternating ours/bare in blocks so both share the machine's noise. CPU is user + system time
of the function's processes (gunicorn arbiter and worker); RSS is the worker's.

    python bench/per_message.py [--messages 1000] [--block 100] [--quick] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS_TOPIC,
    FunctionProcess,
    arguments,
    bare_env,
    cpu_seconds,
    mib,
    now,
    open_stack,
    ours_env,
    post_ok,
    report,
    seed,
    start_function,
    tree_rss,
    verdict,
    worker_rss,
)

TARGET_RATIO = 2.5
TARGET_GROWTH = 10.0


class Side:
    """One function process and what it cost so far."""

    def __init__(self, label: str, function: FunctionProcess) -> None:
        self.label = label
        self.function = function
        self.cpu = 0.0
        self.wall = 0.0
        self.sent = 0
        self.message_ids: list[str] = []
        self.rss: dict[int, int] = {}
        self.tree_rss: dict[int, int] = {}

    def send(self, bodies: list[dict[str, str]], *, measure: bool) -> None:
        pid = self.function.pid
        cpu_before, began = cpu_seconds(pid), now()
        for body in bodies:
            self.message_ids.append(post_ok(self.function, body))
        if measure:
            self.wall += now() - began
            self.cpu += cpu_seconds(pid) - cpu_before
            self.sent += len(bodies)

    def sample_rss(self) -> None:
        self.rss[self.sent] = worker_rss(self.function.pid)
        self.tree_rss[self.sent] = tree_rss(self.function.pid)


def main() -> int:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else "per message")
    parser.add_argument("--messages", type=int, default=1000, help="timed messages of each")
    parser.add_argument("--block", type=int, default=100, help="messages per alternating block")
    parser.add_argument("--warmup", type=int, default=20, help="untimed messages of each first")
    parser.add_argument(
        "--rss-at", type=int, default=100, help="first RSS sample after this many messages"
    )
    args = parser.parse_args()
    messages, block = (300, 50) if args.quick else (args.messages, args.block)
    if messages % block or args.rss_at % block or args.rss_at > messages:
        parser.error("--messages and --rss-at must be multiples of --block, --rss-at <= messages")

    with open_stack(args.log_dir) as stack:
        topic = stack.topic(RESULTS_TOPIC)
        results = stack.results(topic)
        ids = seed(stack, "PM", args.warmup + messages)
        ours = Side("ours", start_function(stack, ours_env(stack, topic), log_name="ours"))
        bare = Side("bare", start_function(stack, bare_env(stack, topic), bare=True))
        warmup = [{"name": op_id} for op_id in ids[: args.warmup]]
        for side in (ours, bare):
            side.send(warmup, measure=False)
        timed = [{"name": op_id} for op_id in ids[args.warmup :]]
        for start in range(0, messages, block):
            bodies = timed[start : start + block]
            # Alternate which side goes first, so neither always follows the other.
            order = (ours, bare) if (start // block) % 2 == 0 else (bare, ours)
            for side in order:
                side.send(bodies, measure=True)
                if side.sent in (args.rss_at, messages):
                    side.sample_rss()
            print(
                f"{start + block:5d} messages: ours {1000 * ours.cpu / ours.sent:.2f} CPU ms/msg, "
                f"bare {1000 * bare.cpu / bare.sent:.2f} CPU ms/msg",
                flush=True,
            )
        results.quiet(2.0)
        published = {
            side.label: sum(len(results.by_source.get(m, [])) for m in side.message_ids)
            for side in (ours, bare)
        }
        ok = sum(
            1
            for m in ours.message_ids
            for outcome in results.by_source.get(m, [])
            if outcome.get("status") == "OK"
        )
        stats = stack.admin.stats()

    ours_ms, bare_ms = 1000 * ours.cpu / ours.sent, 1000 * bare.cpu / bare.sent
    ratio = ours_ms / bare_ms
    first, last = ours.rss[args.rss_at], ours.rss[messages]
    growth = 100.0 * (last - first) / first
    bare_growth = 100.0 * (bare.rss[messages] - bare.rss[args.rss_at]) / bare.rss[args.rss_at]
    sent_total = args.warmup + messages
    figures = {
        "messages": messages,
        "block": block,
        "ours_cpu_ms_per_message": ours_ms,
        "bare_cpu_ms_per_message": bare_ms,
        "cpu_ratio": ratio,
        "target_cpu_ratio": TARGET_RATIO,
        "ours_wall_ms_per_message": 1000 * ours.wall / ours.sent,
        "bare_wall_ms_per_message": 1000 * bare.wall / bare.sent,
        "ours_worker_rss_bytes": ours.rss,
        "ours_tree_rss_bytes": ours.tree_rss,
        "bare_worker_rss_bytes": bare.rss,
        "ours_rss_growth_percent": growth,
        "bare_rss_growth_percent": bare_growth,
        "target_growth_percent": TARGET_GROWTH,
        "published": published,
        "ours_published_ok": ok,
        "expected_published_each": sent_total,
        "ee_cancel_requests": stats["byRoute"].get("cancel", 0),
        "pass": ratio <= TARGET_RATIO and growth <= TARGET_GROWTH,
    }
    report(
        "per message (warm)",
        [
            f"messages: {messages} of each after {args.warmup} warm-up, "
            f"alternating blocks of {block}",
            f"CPU per message: ours {ours_ms:.2f} ms, bare {bare_ms:.2f} ms, ratio {ratio:.2f} "
            f"(target <= {TARGET_RATIO}) {verdict(ratio <= TARGET_RATIO)}",
            f"wall per message: ours {figures['ours_wall_ms_per_message']:.2f} ms, "
            f"bare {figures['bare_wall_ms_per_message']:.2f} ms",
            f"ours worker RSS: {mib(first):.1f} MiB at message {args.rss_at}, "
            f"{mib(last):.1f} MiB at message {messages}, growth {growth:+.1f}% "
            f"(target <= {TARGET_GROWTH:g}%) {verdict(growth <= TARGET_GROWTH)}",
            f"bare worker RSS: {mib(bare.rss[args.rss_at]):.1f} MiB -> "
            f"{mib(bare.rss[messages]):.1f} MiB ({bare_growth:+.1f}%)",
            f"outcomes on the results subscription: ours {published['ours']} "
            f"({ok} OK), bare {published['bare']} (expected {sent_total} each); "
            f"EE cancel calls: {figures['ee_cancel_requests']}",
        ],
        figures,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
