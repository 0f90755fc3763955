"""Retrying transient Earth Engine failures within a deadline.

The backoff is google-api-core's truncated exponential generator with full jitter; a
``Retry-After`` from the server overrides it. Clock, sleep and backoff are injectable so tests
never really sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.api_core.retry import exponential_sleep_generator

from lib.earthengine import ApiResult

INITIAL_DELAY = 0.25
MAX_DELAY = 16.0


def default_backoff() -> Iterator[float]:
    """Full-jitter exponential backoff: uniform(0, min(16, 0.25 * 2**n)) seconds."""
    delays: Iterator[float] = exponential_sleep_generator(INITIAL_DELAY, MAX_DELAY, multiplier=2.0)
    return delays


@dataclass(frozen=True)
class Retrier:
    """Repeats a call while it fails transiently and the deadline allows another attempt."""

    deadline: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    backoff: Callable[[], Iterator[float]] = field(default=default_backoff)

    def call(self, attempt: Callable[[], ApiResult], until: float | None = None) -> ApiResult:
        """The first non-transient result, or the last transient one once time is up.

        Time is up ``deadline`` seconds after the first attempt, or at ``until`` (on this
        retrier's clock) if that comes first.
        """
        give_up_at = self.clock() + self.deadline
        if until is not None:
            give_up_at = min(give_up_at, until)
        delays = self.backoff()
        while True:
            result = attempt()
            if not result.transient:
                return result
            delay = next(delays)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            if self.clock() + delay > give_up_at:
                return result
            self.sleep(delay)
