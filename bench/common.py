"""Shared helpers of the benchmarks: the loopback stack, function processes, measuring, output."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from deploy.local.stack import PROJECT, FunctionProcess, Results, Stack  # noqa: E402

OURS_SOURCE = ROOT / "main.py"
OURS_TARGET = "cancel_operations"
BARE_SOURCE = ROOT / "bench" / "bare_function.py"
BARE_TARGET = "publish_only"
RESULTS_TOPIC = "results"
ACTIVE = frozenset({"PENDING", "RUNNING"})

__all__ = [
    "ACTIVE",
    "BARE_SOURCE",
    "BARE_TARGET",
    "OURS_SOURCE",
    "OURS_TARGET",
    "PROJECT",
    "ROOT",
    "FunctionProcess",
    "Results",
    "RssSampler",
    "Stack",
]


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--log-dir", type=Path, help="keep emulator and function logs here")
    return parser


@contextmanager
def open_stack(log_dir: Path | None = None) -> Iterator[Stack]:
    """Both emulators on loopback; everything started is stopped on the way out."""
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    with Stack(ee_projects=(PROJECT,), log_dir=log_dir) as stack:
        yield stack


def ours_env(stack: Stack, topic: str, **overrides: str) -> dict[str, str]:
    """ee-cancel's environment against ``stack``."""
    return stack.function_env(topic, **{"RETRY_DEADLINE_SECONDS": "60", **overrides})


def bare_env(stack: Stack, topic: str) -> dict[str, str]:
    """The bare function's environment: the results topic and the Pub/Sub emulator."""
    return {
        "RESULTS_TOPIC": topic,
        "GOOGLE_CLOUD_PROJECT": stack.project,
        "PUBSUB_EMULATOR_HOST": stack.pubsub.host_port,
    }


def function_process(
    stack: Stack, env: Mapping[str, str], *, bare: bool = False, log_name: str | None = None
) -> FunctionProcess:
    """A function process that is not started yet (the caller starts and stops it)."""
    log_path = stack.log_dir / f"{log_name}.log" if stack.log_dir and log_name else None
    if bare:
        return FunctionProcess(env, source=BARE_SOURCE, target=BARE_TARGET, log_path=log_path)
    return FunctionProcess(env, source=OURS_SOURCE, target=OURS_TARGET, log_path=log_path)


def start_function(
    stack: Stack, env: Mapping[str, str], *, bare: bool = False, log_name: str | None = None
) -> FunctionProcess:
    """A started function process that the stack stops."""
    function = function_process(stack, env, bare=bare, log_name=log_name).start()
    stack.functions.append(function)
    return function


def seed(stack: Stack, prefix: str, count: int, **fields: Any) -> list[str]:
    """Add ``count`` RUNNING operations named ``{prefix}0000``...; returns their IDs."""
    stack.admin.add_operations(
        generate={
            "project": PROJECT,
            "count": count,
            "state": "RUNNING",
            "prefix": prefix,
            **fields,
        }
    )
    width = max(4, len(str(count - 1)))
    return [f"{prefix}{index:0{width}d}" for index in range(count)]


def post_ok(
    function: FunctionProcess,
    data: Mapping[str, Any],
    *,
    message_id: str | None = None,
    timeout: float = 120.0,
) -> str:
    """POST one event; raise unless the function answered 2xx. Returns the message ID."""
    status, sent_id = function.post_event(data, message_id=message_id, timeout=timeout)
    if not 200 <= status < 300:
        raise RuntimeError(f"{function.target} answered HTTP {status} to {data!r}")
    return sent_id


def tree(pid: int) -> list[psutil.Process]:
    """The function's processes: the gunicorn arbiter and its worker(s)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its children so far."""
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def worker_rss(pid: int) -> int:
    """Resident memory of the process serving requests (gunicorn's worker), in bytes."""
    processes = tree(pid)
    worker = processes[-1]
    return int(worker.memory_info().rss)


def tree_rss(pid: int) -> int:
    """Resident memory of the arbiter plus its workers, in bytes (shared pages counted twice)."""
    return sum(int(process.memory_info().rss) for process in tree(pid))


class RssSampler:
    """Samples the worker's RSS every ``period`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.pid = pid
        self.period = period
        self.peak_worker = 0
        self.peak_tree = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_worker = max(self.peak_worker, worker_rss(self.pid))
                self.peak_tree = max(self.peak_tree, tree_rss(self.pid))
                self.samples += 1
            except psutil.Error:
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The largest number of timestamps in any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def mib(size: float) -> float:
    """Bytes as MiB."""
    return size / (1024 * 1024)


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def report(title: str, lines: Sequence[str], figures: Mapping[str, Any], as_json: bool) -> None:
    """Print the summary block, and the figures as JSON when asked."""
    print()
    print(f"== {title} ==")
    for line in lines:
        print(line)
    if as_json:
        print(json.dumps(figures, indent=2, sort_keys=True))


def now() -> float:
    """A monotonic clock for durations."""
    return time.perf_counter()
