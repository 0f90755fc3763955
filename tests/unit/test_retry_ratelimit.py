"""Retries stay within their deadline and honour Retry-After; the token bucket holds its rate."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

from lib.earthengine import ApiResult
from lib.ratelimit import Gate, TokenBucket
from lib.retry import Retrier, default_backoff
from tests.unit.fakes import FakeClock, error

OK = ApiResult("OK", 200, {})


def fixed(delay: float) -> Iterator[float]:
    return itertools.repeat(delay)


def scripted(results: list[ApiResult]) -> tuple[list[int], object]:
    calls: list[int] = []

    def attempt() -> ApiResult:
        calls.append(1)
        return results.pop(0) if results else OK

    return calls, attempt


def test_transient_failures_are_retried_until_success() -> None:
    clock = FakeClock()
    retrier = Retrier(deadline=60, clock=clock, sleep=clock.sleep, backoff=lambda: fixed(1.0))
    calls, attempt = scripted([error(503, "UNAVAILABLE"), error(500, "INTERNAL")])
    assert retrier.call(attempt).ok  # type: ignore[arg-type]
    assert len(calls) == 3 and clock.slept == [1.0, 1.0]


def test_retry_after_overrides_a_shorter_backoff() -> None:
    clock = FakeClock()
    retrier = Retrier(deadline=60, clock=clock, sleep=clock.sleep, backoff=lambda: fixed(0.1))
    _, attempt = scripted([error(429, "RESOURCE_EXHAUSTED", retry_after=7)])
    assert retrier.call(attempt).ok  # type: ignore[arg-type]
    assert clock.slept == [7]


def test_permanent_failures_are_not_retried() -> None:
    clock = FakeClock()
    retrier = Retrier(deadline=60, clock=clock, sleep=clock.sleep)
    for failure in (
        error(404, "NOT_FOUND"),
        error(501, "UNIMPLEMENTED"),
        error(400, "FAILED_PRECONDITION"),
    ):
        calls, attempt = scripted([failure])
        assert retrier.call(attempt).status == failure.status  # type: ignore[arg-type]
        assert len(calls) == 1
    assert clock.slept == []


def test_the_deadline_bounds_the_time_spent() -> None:
    clock = FakeClock()
    retrier = Retrier(deadline=10, clock=clock, sleep=clock.sleep, backoff=lambda: fixed(3.0))
    calls, attempt = scripted([error(503, "UNAVAILABLE")] * 100)
    result = retrier.call(attempt)  # type: ignore[arg-type]
    assert result.status == "UNAVAILABLE" and result.transient
    assert sum(clock.slept) <= 10 and len(calls) == 4


def test_default_backoff_is_full_jitter_and_capped() -> None:
    delays = list(itertools.islice(default_backoff(), 12))
    assert all(0 <= d <= 16 for d in delays)
    assert delays[0] <= 0.25


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(10, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(21):
        bucket.acquire()
    assert clock.now == __import__("pytest").approx(2.0)


def test_token_bucket_under_threads_never_exceeds_rate_in_any_window() -> None:
    bucket = TokenBucket(200)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    worst = max(sum(1 for t in stamps if s <= t < s + 0.5) for s in stamps)
    assert worst <= 200 * 0.5 * 1.1 + 1


def test_gate_bounds_concurrency() -> None:
    gate = Gate(rate=10_000, concurrency=3)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal inside, peak
        with gate.admit():
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.01)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 3
