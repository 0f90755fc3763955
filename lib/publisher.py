"""Publishing outcomes to the results topic, and knowing every one was confirmed.

The engine sends outcomes as they are decided; ``confirm`` blocks until Pub/Sub has
acknowledged each of them and raises ``PublishError`` if any failed, so the caller can leave
the message to redelivery instead of acking outcomes that were never delivered.
"""

from __future__ import annotations

from concurrent import futures
from typing import TYPE_CHECKING, Final, Protocol

from lib.outcomes import Outcome

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient

# How long to wait for confirmations: past the client's own 60 s of publish retries.
CONFIRM_TIMEOUT: Final = 90.0


class PublishError(RuntimeError):
    """At least one outcome could not be published."""


class Batch(Protocol):
    """The outcomes of one message, on their way to the results topic."""

    def send(self, outcome: Outcome) -> None:
        """Start publishing one outcome; does not wait."""
        ...

    def confirm(self) -> int:
        """Wait until every sent outcome is published; returns how many. Raises PublishError."""
        ...


class Publisher(Protocol):
    """Where outcomes go."""

    def batch(self) -> Batch:
        """A new batch for one message's outcomes."""
        ...


class PubSubPublisher:
    """Publishes to ``topic`` with one google-cloud-pubsub client reused by every invocation."""

    def __init__(self, topic: str, client: PublisherClient | None = None) -> None:
        self.topic = topic
        self._client = client or make_client()

    def batch(self) -> Batch:
        """A new batch for one message's outcomes."""
        return _PubSubBatch(self._client, self.topic)


class _PubSubBatch:
    def __init__(self, client: PublisherClient, topic: str) -> None:
        self._client = client
        self._topic = topic
        self._pending: list[futures.Future[str]] = []

    def send(self, outcome: Outcome) -> None:
        self._pending.append(
            self._client.publish(self._topic, outcome.data(), **outcome.attributes())
        )

    def confirm(self) -> int:
        pending, self._pending = self._pending, []
        done, not_done = futures.wait(pending, timeout=CONFIRM_TIMEOUT)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors or not_done:
            first = errors[0] if errors else TimeoutError("publish not confirmed in time")
            raise PublishError(
                f"{len(errors) + len(not_done)} of {len(pending)} outcome(s) not published "
                f"to {self._topic}: {first}"
            ) from first
        return len(pending)


def make_client() -> PublisherClient:
    """A publisher client that batches up to 1,000 outcomes or 10 ms, whichever comes first.

    Its default publish retry (transient gRPC codes, 60 s) is kept: a topic that is missing or
    forbidden fails at once, and the message is redelivered.
    """
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=1000, max_bytes=5_000_000, max_latency=0.01
        )
    )
