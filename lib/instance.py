"""The instance: configuration read at start-up, clients made once and reused.

Clients are created lazily on the first message (keeping cold start short) and then shared
by every invocation on this instance, concurrent ones included.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from lib.cancel import Engine
from lib.config import Config
from lib.earthengine import RestEarthEngine, open_session
from lib.publisher import PubSubPublisher
from lib.ratelimit import Gate
from lib.retry import Retrier


class Instance:
    """One function instance's configuration and its lazily built engine."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Instance:
        """Validate the configuration now: a bad value fails start-up (ConfigError)."""
        return cls(Config.from_env(env))

    @property
    def engine(self) -> Engine:
        """The engine, built on first use."""
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = build_engine(self.config)
                engine = self._engine
        return engine


def build_engine(config: Config) -> Engine:
    """The real engine: Earth Engine over HTTP and Pub/Sub publishing."""
    gate = Gate(config.max_qps, config.cancel_concurrency)
    return Engine(
        config=config,
        ee=RestEarthEngine(config, open_session(config), gate),
        publisher=PubSubPublisher(config.results_topic),
        retrier=Retrier(deadline=config.retry_deadline),
        executor=ThreadPoolExecutor(
            max_workers=config.cancel_concurrency, thread_name_prefix="ee-cancel"
        ),
    )
