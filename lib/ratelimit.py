"""Quota guards shared by every thread and invocation of one instance.

Earth Engine allows 100 requests/s and 40 concurrent requests per project; an instance keeps
below ``EE_MAX_QPS`` with a token bucket and below ``CANCEL_CONCURRENCY`` with a semaphore.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens a second, holding at most ``burst``.

    The burst is small (5% of a second's worth by default) so that no one-second window sees
    much more than ``rate`` requests, even right after an idle spell.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 0.05) if burst is None else burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting for it if need be; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            # A negative balance is a reservation: this caller waits until it is paid back.
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class Gate:
    """Both guards: a request passes once it has a rate token and a concurrency slot."""

    def __init__(self, rate: float, concurrency: int) -> None:
        self.bucket = TokenBucket(rate)
        self._slots = threading.BoundedSemaphore(concurrency)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot for the duration of one HTTP request."""
        with self._slots:
            self.bucket.acquire()
            yield
